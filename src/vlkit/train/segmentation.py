"""The segmenter's objective (CLIPSeg on scenes): per image one prompt, naming one of its objects
("red circle", "the large green triangle", ...) whose mask is the target, or now and then an
object the scene lacks (`segmenter.absent_prompts`), whose target is the empty mask; per-pixel
binary cross-entropy plus a soft dice loss over each mask.

Batches (`collate`): pixel_values float[B, 3, H, W]; input_ids, attention_mask int64[B, T];
masks float[B, H, W] (1 = the prompted object), at the image tower's input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vlkit.config import SegmenterConfig
from vlkit.data.scenes import COLOR_NAMES, SHAPES, SIZES
from vlkit.models.segmenter import TextPromptedSegmenter
from vlkit.models.towers import tokenize

ARTICLES = ("", "a ", "the ")


def prompt(color: str, shape: str, size: str | None, article: str) -> str:
    """ "red circle", "a large red circle", "the small red circle" ... (`article` from ARTICLES)."""
    words = f"{size} {color} {shape}" if size else f"{color} {shape}"
    if article == "a " and words[0] in "aeiou":
        article = "an "
    return article + words


def pick_prompt(objects: list[dict], absent: float, rng: np.random.Generator) -> tuple[str, int]:
    """A prompt and the index of the object it names (-1: an object the scene lacks). An object
    named without its size must be the only one of its colour and shape: the size is always said
    when another object shares them."""
    if rng.random() < absent or not objects:
        present = {(o["color"], o["shape"]) for o in objects}
        while True:
            color, shape = (
                COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
                SHAPES[int(rng.integers(len(SHAPES)))],
            )
            if (color, shape) not in present:
                size = SIZES[int(rng.integers(len(SIZES)))] if rng.random() < 0.5 else None
                return prompt(color, shape, size, ARTICLES[int(rng.integers(len(ARTICLES)))]), -1
    k = int(rng.integers(len(objects)))
    o = objects[k]
    twins = sum((p["color"], p["shape"]) == (o["color"], o["shape"]) for p in objects)
    size = o["size"] if twins > 1 or rng.random() < 0.5 else None
    return prompt(o["color"], o["shape"], size, ARTICLES[int(rng.integers(len(ARTICLES)))]), k


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits, targets: float[B, H, W] → mean over masks of 1 - soft dice (1 = an empty target hit)."""
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


@dataclass
class SegmentationObjective:
    model: TextPromptedSegmenter
    cfg: SegmenterConfig
    seed: int = 0

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        unmasked = next(
            (s.get("key", p) for p, s in samples if not all("mask" in o for o in s.get("objects", [None]))),
            None,
        )
        if unmasked is not None:
            raise ValueError(
                f"sample {unmasked}: no objects with masks; a segmenter trains on `scenes-masks` sources"
            )
        size = self.model.clip.image_tower.model.config.image_size
        texts, masks = [], []
        for position, sample in samples:
            rng = np.random.default_rng([self.seed, position])
            text, k = pick_prompt(sample["objects"], self.cfg.absent_prompts, rng)
            texts.append(text)
            h, w = sample["image"].shape[:2]
            mask = (
                torch.from_numpy(sample["objects"][k]["mask"])
                if k >= 0
                else torch.zeros(h, w, dtype=torch.bool)
            )
            masks.append(mask)
        target = F.interpolate(torch.stack(masks)[:, None].float(), size=(size, size), mode="nearest")[:, 0]
        pixel_values = self.model.clip.image_tower.preprocess([s["image"] for _, s in samples])
        return {"pixel_values": pixel_values, "masks": target} | tokenize(self.model.clip.text_tower, texts)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE + dice of the mask; with a refinement, of the decoder's own mask too (deep
        supervision: the decoder keeps learning which object, the refinement where its edges are)."""
        refined, coarse = model(
            batch["pixel_values"], batch["input_ids"], batch["attention_mask"], with_coarse=True
        )
        loss = self._mask_loss(refined.float(), batch["masks"])
        if self.cfg.refine != "none":
            loss = loss + self._mask_loss(coarse.float(), batch["masks"])
        return loss

    def _mask_loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """logits, masks: float[B, H, W] → BCE + dice_weight * dice."""
        bce = F.binary_cross_entropy_with_logits(logits, masks)
        return bce + self.cfg.dice_weight * dice_loss(logits, masks)

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["pixel_values"].shape[0]

    def log_extras(self) -> dict[str, float]:
        return {}
