"""The contrastive dual encoder: image tower + text tower + linear projections into one space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlkit.config import ModelConfig


class DualEncoder(nn.Module):
    """CLIP / SigLIP / LiT share this model; they differ in the loss and in what is locked.

    The layout matches transformers' CLIPModel (bias-free `visual_projection`/`text_projection`,
    a log-space `logit_scale`), which is what makes the transformers export a plain copy.
    """

    def __init__(self, cfg: ModelConfig, image_tower: nn.Module, text_tower: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.embed_dim = cfg.embed_dim  # the shared space's size (what `vlkit.api` indexes)
        self.visual_projection = nn.Linear(image_tower.out_dim, cfg.embed_dim, bias=False)
        self.text_projection = nn.Linear(text_tower.out_dim, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        if cfg.loss == "siglip":
            self.logit_bias = nn.Parameter(torch.tensor(cfg.init_logit_bias))
        self.apply_locks()

    def apply_locks(self) -> None:
        """LiT: a locked tower gets no gradients (optionally all but its last N blocks)."""
        if self.cfg.lock_image:
            self.image_tower.requires_grad_(False)
            n = self.cfg.unlock_image_blocks
            for block in self.image_tower.blocks()[-n:] if n else []:
                block.requires_grad_(True)
        if self.cfg.lock_text:
            self.text_tower.requires_grad_(False)

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        # A locked tower stays in eval mode: its dropout and batch-norm statistics are frozen too;
        # only its unlocked last blocks (if any) follow `mode`.
        if self.cfg.lock_image:
            self.image_tower.eval()
            n = self.cfg.unlock_image_blocks
            for block in self.image_tower.blocks()[-n:] if n else []:
                block.train(mode)
        if self.cfg.lock_text:
            self.text_tower.eval()
        return self

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped as in CLIP so the temperature never collapses."""
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → unit vectors float[B, E]."""
        return F.normalize(self.visual_projection(self.image_tower(pixel_values)), dim=-1)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: int64[B, T] → unit vectors float[B, E]."""
        return F.normalize(self.text_projection(self.text_tower(input_ids, attention_mask)), dim=-1)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_images(pixel_values), self.encode_texts(input_ids, attention_mask)
