"""The detector's objective (OWL-ViT on scenes): per image, the scene's objects named by phrases
("red circle", "a small blue star") plus negative phrases (objects the scene does not hold);
Hungarian matching of patch predictions to objects; sigmoid focal loss on every (patch, query)
logit, L1 and GIoU on the matched boxes, each normalised by the number of objects (DETR).

Batches (`collate`): pixel_values float[B, 3, H, W]; input_ids, attention_mask int64[B * Q, T]
(Q queries per image in turn); target_boxes float[B, M, 4] (cx, cy, w, h); target_queries
int64[B, M], the query naming each object (-1: padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vlkit.config import DetectorConfig
from vlkit.data.scenes import COLOR_NAMES, SHAPES, SIZES
from vlkit.data.scenes_text import with_article
from vlkit.models.boxes import cxcywh_to_xyxy, pairwise_giou
from vlkit.models.detector import OpenVocabDetector
from vlkit.models.towers import tokenize
from vlkit.train.matching import match


def phrase(obj: dict, form: int) -> str:
    """One of four names of a scene object: "red circle", "small red circle", "a red circle",
    "a small red circle" (the harness's grounding phrases are the last)."""
    words = f"{obj['size']} {obj['color']} {obj['shape']}" if form % 2 else f"{obj['color']} {obj['shape']}"
    return with_article(words) if form >= 2 else words


def scene_queries(objects: list[dict], count: int, rng: np.random.Generator) -> list[str]:
    """`count` phrases: one per object (a random form), then negatives: other colour×shape
    pairs, or a present object at the other size."""
    queries = [phrase(o, int(rng.integers(4))) for o in objects]
    present = {(o["color"], o["shape"]) for o in objects}
    while len(queries) < count:
        o = objects[int(rng.integers(len(objects)))] if objects else None
        if o is not None and rng.random() < 0.25:  # the same object at the other size
            other = {"color": o["color"], "shape": o["shape"], "size": SIZES[1 - SIZES.index(o["size"])]}
            queries.append(phrase(other, 1 + 2 * int(rng.integers(2))))
            continue
        color, shape = (
            COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
        )
        if (color, shape) not in present:
            queries.append(
                phrase({"color": color, "shape": shape, "size": SIZES[0]}, 2 * int(rng.integers(2)))
            )
    return queries


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Summed focal loss (Lin et al. 2017); alpha < 0: no class weighting; gamma = 0: BCE."""
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


@dataclass
class DetectionObjective:
    model: OpenVocabDetector
    cfg: DetectorConfig
    seed: int = 0

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        unboxed = next((s.get("key", p) for p, s in samples if "objects" not in s), None)
        if unboxed is not None:
            raise ValueError(
                f"sample {unboxed}: no objects with boxes; a detector trains on `scenes-boxes` sources"
            )
        most = max(len(s["objects"]) for _, s in samples)
        count = most + self.cfg.negatives
        texts, boxes = [], torch.zeros(len(samples), most, 4)
        queries = torch.full((len(samples), most), -1, dtype=torch.long)
        for b, (position, sample) in enumerate(samples):
            rng = np.random.default_rng([self.seed, position])
            texts += scene_queries(sample["objects"], count, rng)
            for k, o in enumerate(sample["objects"]):
                x1, y1, x2, y2 = o["box"]
                boxes[b, k] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
                queries[b, k] = k  # object k is named by query k
        pixel_values = self.model.clip.image_tower.preprocess([s["image"] for _, s in samples])
        batch = {"pixel_values": pixel_values, "target_boxes": boxes, "target_queries": queries}
        return batch | tokenize(self.model.clip.text_tower, texts)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, boxes = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        c = self.cfg
        targets = torch.zeros_like(logits)  # (B, P, Q)
        pred, gold = [], []
        for b in range(logits.shape[0]):
            valid = batch["target_queries"][b] >= 0
            tq, tb = batch["target_queries"][b][valid], batch["target_boxes"][b][valid]
            if not len(tq):
                continue
            rows, cols = match(logits[b], boxes[b], tb, tq, (c.class_weight, c.box_weight, c.giou_weight))
            targets[b, rows, tq[cols]] = 1.0
            pred.append(boxes[b, rows])
            gold.append(tb[cols])
        n = max(1, sum(len(p) for p in pred))
        focal = sigmoid_focal_loss(logits.float(), targets, c.focal_alpha, c.focal_gamma) / n
        if not pred:
            return c.class_weight * focal
        pred, gold = torch.cat(pred).float(), torch.cat(gold).float()  # (N, 4)
        l1 = (pred - gold).abs().sum() / n
        giou = (1 - pairwise_giou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gold)).diagonal()).sum() / n
        return c.class_weight * focal + c.box_weight * l1 + c.giou_weight * giou

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["pixel_values"].shape[0]

    def log_extras(self) -> dict[str, float]:
        return {}
