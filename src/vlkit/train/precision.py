"""bf16 autocast for training, with attention kept in fp32 on the CPU.

Why attention stays fp32: on a CPU whose matmuls are fast in bf16 (AMX), torch's CPU
flash-attention kernel is not — its backward took 3.4 s in bf16 against 0.6 s in fp32 over ten
steps of the staged VLM's mix, which cancelled what the bf16 matmuls gained (benchmarks/README.md,
"bf16 on a CPU with AMX"). So under CPU autocast, transformers' `sdpa` attention runs its inputs
in fp32; outside autocast, and on other devices, it is transformers' own function unchanged.

This replaces the "sdpa" entry of transformers' `AttentionInterface` (its public registry of
attention functions) once, on the first bf16 training; the replacement defers to the original.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward


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


def autocast(device_type: str, bf16: bool) -> contextlib.AbstractContextManager:
    """The training step's precision: bf16 autocast (attention fp32 on the CPU) or nothing."""
    if not bf16:
        return contextlib.nullcontext()
    if device_type == "cpu":
        AttentionInterface.register("sdpa", _sdpa_fp32_on_cpu)
    return torch.autocast(device_type, dtype=torch.bfloat16)
