"""Bipartite (Hungarian) matching of predictions to ground-truth objects, as in DETR / OWL-ViT:
each object gets the one prediction that minimises class + box L1 + GIoU cost, no prediction
two objects (scipy's `linear_sum_assignment`)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from vlkit.models.boxes import cxcywh_to_xyxy, pairwise_giou


@torch.no_grad()
def match(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    target_queries: torch.Tensor,
    weights: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """One image. logits: float[P, Q]; boxes: float[P, 4] and target_boxes: float[M, 4] (cx, cy,
    w, h); target_queries: int64[M], the query naming each object; weights: (class, L1, GIoU).
    → (prediction indices, object indices), M pairs."""
    class_w, box_w, giou_w = weights
    probs = logits[:, target_queries].float().sigmoid()  # (P, M)
    l1 = torch.cdist(boxes.float(), target_boxes.float(), p=1)  # (P, M)
    giou = pairwise_giou(cxcywh_to_xyxy(boxes.float()), cxcywh_to_xyxy(target_boxes.float()))
    cost = -class_w * probs + box_w * l1 - giou_w * giou
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols
