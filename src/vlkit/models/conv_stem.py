"""A convolutional stem for a ViT ("Early Convolutions Help Transformers See Better", Xiao et al. 2021).

A plain ViT cuts the image into P×P patches with one strided convolution. Outlines that straddle
patch borders (a 14-px star at 64 px spans two 8-px patches) are then only seen through a linear
map of raw pixels: told the 4-way shape of single scenes objects, such a ViT is at 36.5% after
12.8k images where the same ViT with this stem is at 96.5% (`benchmarks/shape_probe.py`; its
results and what they mean for CLIP are in benchmarks/README.md). A stack of 3×3 stride-2
convolutions gives every token overlapping, local edge detectors instead, at a few percent of
the tower's FLOPs, and the same token grid: it replaces `embeddings.patch_embedding` of a
transformers `CLIPVisionModel` and nothing else changes.

transformers has no ViT with this stem, so it is ours; a model with it has no place in
transformers' CLIP or LLaVA layouts, so `vlkit export` refuses it and says so.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvStem(nn.Module):
    """float[B, 3, H, W] → float[B, D, H/P, W/P]: log2(P) blocks of (3×3 stride-2 conv, BN, ReLU),
    channels doubling up to D/2, then a 1×1 conv to D (the token width)."""

    def __init__(self, width: int, patch_size: int, in_channels: int = 3):
        super().__init__()
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(f"conv stem: patch_size={patch_size} must be a power of two >= 2")
        blocks, channels = [], in_channels
        n = patch_size.bit_length() - 1  # stride-2 blocks
        for k in range(n):
            out = max(8, width // 2 ** (n - k))  # e.g. width 128, P 8: 16, 32, 64
            blocks += [nn.Conv2d(channels, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*blocks)
        self.proj = nn.Conv2d(channels, width, 1)

    @property
    def weight(self) -> torch.Tensor:
        """transformers' embeddings read `patch_embedding.weight.dtype` to cast the pixels."""
        return self.proj.weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(pixel_values))  # (B, D, H/P, W/P)
