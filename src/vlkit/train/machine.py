"""How fast this machine multiplies: the fp32 `torch.mm` peak that training minutes are scaled by.

vlkit's speed goals are minutes on a machine whose fp32 `torch.mm` peak is 250 GFLOP/s; the shared
machines it is measured on differ 2x between days, so the tour and the time-to-accuracy benchmark
measure the peak in the same run and report minutes scaled to the reference too."""

from __future__ import annotations

import time

import torch

REFERENCE_GFLOPS = 250.0  # the reference machine minutes are scaled to


def matmul_peak(n: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """torch.mm GFLOP per wall second and per CPU second (at torch's thread count), best of
    `reps` each; fp32 unless `dtype` says otherwise."""
    a, b, c = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype), torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)
    wall, cpu = float("inf"), float("inf")
    for _ in range(reps):
        w, t = time.perf_counter(), time.process_time()
        torch.mm(a, b, out=c)
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - t)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / max(cpu, 1e-9) / 1e9


def scaled_minutes(minutes: float, peak: float) -> float:
    """Minutes measured at `peak` GFLOP/s → minutes on the reference machine (compute-bound)."""
    return minutes * peak / REFERENCE_GFLOPS
