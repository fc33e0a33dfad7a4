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
    # a few held-out examples drawn in the report (`vlkit.plots.plot_gallery`): {"image":
    # uint8[H, W, 3], "title", and "mask" / "true_mask" bool[H, W] or "boxes" + "labels"}
    gallery: list[dict[str, Any]] = field(default_factory=list)


def hateful_memes_result(bench: Benchmark, score: np.ndarray) -> TaskResult:
    """Hateful Memes from one score per meme (> 0: hateful), however the model scored it
    (contrastive: two prompts' similarity; generative: its yes / no; fusion: its classifier's
    logit): AUROC and accuracy, beside the majority-class baseline's accuracy (the set's commoner
    label for every meme; its AUROC, as any constant score's, is 0.5)."""
    labels = np.array([e["label"] for e in bench.examples])
    scores = {
        "hm_auroc": metrics.binary_auroc(score, labels),
        "hm_accuracy": float(np.mean((score > 0) == labels)),
        "hm_majority_accuracy": float(max(labels.mean(), 1 - labels.mean())),
    }
    preds = [
        {"id": e["id"], "label": int(e["label"]), "score": float(s)} for e, s in zip(bench.examples, score)
    ]
    return TaskResult("hateful-memes", bench.name, scores, {}, preds, split=bench.split, samples=len(labels))


def flat_scores(results: list[TaskResult]) -> dict[str, float]:
    """The results as one flat dict, what the training log and the tour record: every metric,
    and VQA's per-type accuracies beside their question-only prior and held-out wordings
    (`vqa_color`, `prior_accuracy`, `prior_color`, `paraphrase_color`, ...)."""
    out: dict[str, float] = {}
    for r in results:
        out |= r.metrics
        if r.task != "vqa":
            continue
        out |= {f"vqa_{t}": v for t, v in r.breakdowns["vqa_accuracy by question_type"].items()}
        prior = dict(r.breakdowns["question-only prior by question_type"])
        out["prior_accuracy"] = prior.pop("all")
        out |= {f"prior_{t}": v for t, v in prior.items()}
        reworded = r.breakdowns.get("paraphrase_accuracy by question_type", {})
        out |= {f"paraphrase_{t}": v for t, v in reworded.items()}
    return out
