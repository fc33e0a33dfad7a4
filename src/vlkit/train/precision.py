"""bf16 autocast for training, with attention kept in fp32 on the CPU; `train.bf16: auto`.

`auto` trains in bf16 where the device multiplies faster in it: a CUDA device that supports bf16,
or a CPU whose bf16 `torch.mm` runs at least `CPU_BF16_SPEEDUP` times its fp32 rate, measured once
per process (a CPU with AMX: 3.7x in the tour's printout; CPUs without it multiply bf16 slower
than fp32, and train in fp32).

Why attention stays fp32: on a CPU whose matmuls are fast in bf16 (AMX), torch's CPU
flash-attention kernel is not — its backward took several times longer in bf16 than in fp32 in a
profile of the staged VLM's steps, which cancelled what the bf16 matmuls gained
(benchmarks/README.md, "bf16 on a CPU with AMX", has the step times this gives). So under CPU
autocast, transformers' `sdpa` attention runs its inputs in fp32; outside autocast, and on other
devices, it is transformers' own function unchanged.

This replaces the "sdpa" entry of transformers' `AttentionInterface` (its public registry of
attention functions) once, on the first bf16 training; the replacement defers to the original.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from vlkit.train.machine import matmul_peak

CPU_BF16_SPEEDUP = 2.0  # `auto` takes bf16 on a CPU whose bf16 matmul is this many times its fp32
log = logging.getLogger(__name__)


@functools.cache
def cpu_bf16_speedup() -> float:
    """This CPU's bf16 `torch.mm` rate over its fp32 rate (1024 x 1024, torch's thread count)."""
    return matmul_peak(1024, dtype=torch.bfloat16)[0] / matmul_peak(1024)[0]


def use_bf16(setting: bool | str, device_type: str) -> bool:
    """`train.bf16` (true, false or "auto") → whether this device trains in bf16."""
    if setting != "auto":
        return bool(setting)
    if device_type == "cuda":
        chosen = torch.cuda.is_bf16_supported()
    else:
        chosen = device_type == "cpu" and cpu_bf16_speedup() >= CPU_BF16_SPEEDUP
    _log_auto(chosen, device_type)
    return chosen


@functools.cache
def _log_auto(chosen: bool, device_type: str) -> None:
    """What `auto` chose, logged once per process (the tour and each stage ask again)."""
    speed = f"; bf16 matmul {cpu_bf16_speedup():.1f}x fp32" if device_type == "cpu" else ""
    log.info("train.bf16=auto: %s on this %s%s", "bf16" if chosen else "fp32", device_type, speed)


def use_fixed_shapes(setting: bool | str, bf16: bool, device_type: str) -> bool:
    """`vlm.fixed_shapes` (true, false or "auto") → whether a generative step pads its passes to
    repeating shapes: "auto" where it runs in bf16 on a CPU, whose matmuls (oneDNN's) build a
    kernel for each new shape; fp32 (MKL's) and CUDA matmuls do not."""
    if setting != "auto":
        return bool(setting)
    return bf16 and device_type == "cpu"


def _sdpa_fp32_on_cpu(module, query, key, value, attention_mask, **kwargs):
    """transformers' sdpa attention; in fp32 when CPU autocast is on."""
    if query.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        return sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )


@functools.cache
def _fp32_attention_on_cpu() -> None:
    AttentionInterface.register("sdpa", _sdpa_fp32_on_cpu)


def autocast(device_type: str, bf16: bool) -> contextlib.AbstractContextManager:
    """The training step's precision: bf16 autocast (attention fp32 on the CPU) or nothing."""
    if not bf16:
        return contextlib.nullcontext()
    if device_type == "cpu":
        _fp32_attention_on_cpu()  # once per process
    return torch.autocast(device_type, dtype=torch.bfloat16)
