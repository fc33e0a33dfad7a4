"""The grounding head: from a model's hidden state at a word that names an object ("circle" of
"red circle"), which 3 x 3 cell of the picture the object lies in (`scenes_text.REGIONS`).

A training-only auxiliary head (exports leave it out): `vlm.grounding_weight` puts it on one of a
generative VLM's LM hidden states (`vlm.grounding_layer`), `model.grounding_weight` on a fusion encoder's text tokens. The
targets come from `vlkit.train.grounding`.
"""

from __future__ import annotations

import torch
from torch import nn

from vlkit.data.scenes_text import REGIONS


class GroundingHead(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.cells = nn.Linear(width, len(REGIONS))

    def forward(
        self, hidden: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden: float[B, T, D]; positions, labels: int64[B, K] (label -100: none) → (mean
        cross-entropy over the labelled positions, a zero that keeps the graph when none is;
        the share of cells named right, detached)."""
        picked = hidden.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.cells(picked).float()  # (B, K, cells)
        valid = labels != -100
        if not valid.any():
            return logits.sum() * 0.0, torch.zeros(())
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        hits = (logits.argmax(-1) == labels) & valid
        return loss, (hits.sum().float() / valid.sum()).detach()
