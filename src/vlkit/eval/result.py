"""What one task on one benchmark produced: metrics, breakdowns, per-sample predictions, plot data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlkit import metrics
from vlkit.eval.loaders import Benchmark

RETRIEVAL_CHANCE = "chance (random ranking)"  # the retrieval breakdown with a random ranking's R@k


@dataclass
class TaskResult:
    task: str
    benchmark: str  # Benchmark.name
    metrics: dict[str, float]  # flat, names unique across tasks ("top1", "vqa_accuracy", "CIDEr", ...)
    breakdowns: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # e.g. {"vqa_accuracy by question_type": {...}}
    predictions: list[dict[str, Any]] = field(default_factory=list)  # one JSON-able record per sample
    confusion: Any = None  # int[C, C] (true, predicted) for zero-shot
    classes: list[str] | None = None
    split: str = "test"
    samples: int = 0


def hateful_memes_result(bench: Benchmark, score: np.ndarray) -> TaskResult:
    """Hateful Memes from one score per meme (> 0: hateful), however the model scored it
    (contrastive: two prompts' similarity; generative: its yes / no): AUROC and accuracy."""
    labels = np.array([e["label"] for e in bench.examples])
    scores = {
        "hm_auroc": metrics.binary_auroc(score, labels),
        "hm_accuracy": float(np.mean((score > 0) == labels)),
    }
    preds = [
        {"id": e["id"], "label": int(e["label"]), "score": float(s)} for e, s in zip(bench.examples, score)
    ]
    return TaskResult("hateful-memes", bench.name, scores, {}, preds, split=bench.split, samples=len(labels))
