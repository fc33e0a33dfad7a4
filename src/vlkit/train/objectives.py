"""Training objectives: how a list of samples becomes a batch, and a batch a loss.

The training loop knows only this small interface, so later objectives (captioning, instruction
tuning, ...) plug into the same loop:
    collate(samples: list[(position, sample)]) -> dict of tensors
    loss(model, batch) -> scalar tensor
    batch_size(batch) -> int (images, for throughput)
    log_extras() -> dict of floats for the training log
The generative objective lives in `generative.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.losses import clip_loss, siglip_loss
from vlkit.models.towers import tokenize


@dataclass
class ContrastiveObjective:
    """CLIP / SigLIP on image-caption pairs; one caption per image, drawn by sample position."""

    model: DualEncoder
    seed: int = 0

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        images, texts, negatives = [], [], []
        for position, sample in samples:
            captions = sample["captions"]
            pick = np.random.default_rng([self.seed, position]).integers(len(captions))
            images.append(sample["image"])
            texts.append(captions[pick])
            # "negative_captions": hard negatives for the sample, or per caption (same wording)
            negs = sample.get("negative_captions") or []
            negatives.append(negs[pick] if negs and isinstance(negs[0], list) else negs)
        # Hard negatives only when every sample has the same number (scenes have 2). They are
        # encoded in the same forward as the captions (rows B.., negative j of every sample in
        # turn), so the model runs once per step (DDP-friendly).
        k = len(negatives[0]) if negatives else 0
        if self.model.cfg.hard_negatives and k and all(len(n) == k for n in negatives):
            texts = texts + [n[j] for j in range(k) for n in negatives]
        batch = {"pixel_values": self.model.image_tower.preprocess(images)}  # (B, 3, H, W)
        return batch | tokenize(self.model.text_tower, texts)  # input_ids: ((1 + k) * B, T)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image_emb, text_emb = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        b = image_emb.shape[0]
        text_emb, negative_emb = text_emb[:b], (text_emb[b:] if text_emb.shape[0] > b else None)  # (k*B, E)
        core = self.model  # parameters read outside forward must come from the unwrapped model
        if core.cfg.loss == "siglip":
            return siglip_loss(image_emb, text_emb, core.logit_scale.exp(), core.logit_bias, negative_emb)
        return clip_loss(image_emb, text_emb, core.scale(), negative_emb)

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["pixel_values"].shape[0]

    def log_extras(self) -> dict[str, float]:
        return {"logit_scale": self.model.logit_scale.exp().item()}
