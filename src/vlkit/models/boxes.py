"""Box arithmetic for the detector: format conversion, IoU and generalised IoU, and OWL-ViT's
box bias. Boxes are float[..., 4], either (cx, cy, w, h) or (x1, y1, x2, y2), in [0, 1] image
units unless a caller says pixels.

GIoU (Rezatofighi et al. 2019): IoU - (|C| - |A ∪ B|) / |C|, C the smallest box holding both;
in [-1, 1], and unlike IoU it has a gradient when the boxes do not overlap.
"""

from __future__ import annotations

import math

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a: float[N, 4], b: float[M, 4] (x1, y1, x2, y2) → GIoU float[N, M]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)  # (N,)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # (M,)
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (
        torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])
    ).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def box_bias(side: int) -> torch.Tensor:
    """OWL-ViT's box bias for a side×side patch grid: float[side², 4], the inverse sigmoid of each
    patch's centre and of a patch-sized box, so an untrained box head predicts its own patch."""
    centre = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    ys, xs = torch.meshgrid(centre, centre, indexing="ij")
    xy = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (P, 2), row-major like the tokens
    wh = torch.full_like(xy, 1.0 / side)
    inverse_sigmoid = lambda p: torch.log(p) - torch.log1p(-p)  # noqa: E731
    return torch.cat([inverse_sigmoid(xy), inverse_sigmoid(wh)], dim=-1)


def grid_side(tokens: int) -> int:
    """The side of a square patch grid of `tokens` tokens (a ValueError for a non-square count)."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"the detector needs a square patch grid; got {tokens} patch tokens")
    return side
