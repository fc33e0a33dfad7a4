"""What a new matrix shape costs a CPU matmul, fp32 against bf16: why `vlm.fixed_shapes` pads a
generative step's passes to repeating shapes.

    python benchmarks/matmul_shapes.py --threads 2
    python benchmarks/matmul_shapes.py --smoke

`torch.mm` of [M, 128] x [128, 512] (the staged VLM's MLP, 128 wide; M = rows x tokens of a pass),
timed call by call: `--calls` calls each at an M this process has not multiplied before (from
`--first-m` up, in steps of 1; the bf16 arm's range follows the fp32 arm's), the way a training
step's passes change shape when their widths and row counts vary; then as many calls at one M, the
middle of that range (built by then). fp32 runs on MKL; bf16 on oneDNN, which builds a kernel for
each new shape (where the CPU has AMX). Medians. Writes benchmarks/results/matmul_shapes.json (not
with --smoke).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from common import run_info, write_results

K, N = 128, 512


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200, help="timed calls per arm")
    p.add_argument("--first-m", type=int, default=2000, help="the first of the new shapes' Ms")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true")
    return p.parse_args(argv)


def time_calls(ms: list[int], dtype: torch.dtype) -> list[float]:
    """Seconds of each `torch.mm` call, one per M in `ms`."""
    a = torch.randn(max(ms), K).to(dtype)
    b = torch.randn(K, N).to(dtype)
    seconds = []
    for m in ms:
        start = time.perf_counter()
        torch.mm(a[:m], b)
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.calls, args.first_m = 5, 32
    load_before = os.getloadavg()[0]
    arms = {}
    for k, (name, dtype) in enumerate((("fp32", torch.float32), ("bf16", torch.bfloat16))):
        first = args.first_m + k * args.calls  # neither arm meets a shape the other built
        new = statistics.median(time_calls(list(range(first, first + args.calls)), dtype))
        same = statistics.median(time_calls([first + args.calls // 2] * args.calls, dtype))
        arms[name] = {"same_shape_ms": same * 1e3, "new_shape_ms": new * 1e3, "new_over_same": new / same}
        print(
            f"{name}: one shape {same * 1e3:.3f} ms/call, a new shape each call {new * 1e3:.3f} ms/call "
            f"(x{new / same:.1f})"
        )
    if args.smoke:
        return 0
    result = run_info(load_before, torch.get_num_threads()) | {
        "matmul": f"[M, {K}] x [{K}, {N}]",
        "calls": args.calls,
        "new_ms_from": args.first_m,
        "same_m": "the middle of each arm's new Ms",
        "arms": arms,
    }
    write_results("matmul_shapes", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
