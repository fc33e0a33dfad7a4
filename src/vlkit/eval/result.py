"""What one task on one benchmark produced: metrics, breakdowns, per-sample predictions, plot data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
