"""Contrastive losses that see negatives from every process.

Each process scores its local rows against the features gathered from all processes (the
gather keeps gradients), so the mean of the per-process losses equals the single-process loss
on the global batch and — once DDP averages gradients — so do the gradients.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x: float[B, E] on each of W processes → (float[W*B, E], offset of this process's rows)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather  # autograd-aware

    return torch.cat(all_gather(x), dim=0), dist.get_rank() * x.shape[0]


def clip_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    scale: torch.Tensor,
    negative_emb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE. image_emb, text_emb: unit float[B, E], row i of each is a pair.

    negative_emb: optional unit float[k*B, E], hard-negative captions (NegCLIP): extra wrong texts
    every image is contrasted against, e.g. the caption with two objects' colours swapped.
    """
    all_images, offset = gather_with_grad(image_emb)
    all_texts, _ = gather_with_grad(text_emb)
    labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
    if negative_emb is not None:
        all_texts = torch.cat([all_texts, gather_with_grad(negative_emb)[0]])  # (W*B + W*k*B, E)
    logits_i2t = scale * image_emb @ all_texts.T  # (B, W*B [+ W*B negatives])
    logits_t2i = scale * text_emb @ all_images.T  # (B, W*B): hard negatives are not queries
    return (F.cross_entropy(logits_i2t, labels) + F.cross_entropy(logits_t2i, labels)) / 2


def siglip_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    negative_emb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise sigmoid loss (SigLIP): every (image, text) pair is a binary match / no-match.

    Normalised by the global batch size, as in the paper. negative_emb: as in `clip_loss`.
    """
    all_texts, offset = gather_with_grad(text_emb)
    if negative_emb is not None:
        all_texts = torch.cat([all_texts, gather_with_grad(negative_emb)[0]])
    b = image_emb.shape[0]
    logits = scale * image_emb @ all_texts.T + bias  # (B, W*B [+ W*B negatives])
    signs = -torch.ones_like(logits)
    signs[torch.arange(b), torch.arange(b) + offset] = 1.0
    return -F.logsigmoid(signs * logits).sum() / b
