"""`vlkit eval`: score a trained dual encoder on a named or user data set, write a report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import vlkit
from vlkit.data import open_named
from vlkit.eval.contrastive import collect, evaluate_scenes, retrieval, zero_shot
from vlkit.eval.report import write_report


def run_eval(
    model_path: str, data: str = "scenes", limit: int | None = None, out_dir: str | None = None
) -> dict:
    """scenes: zero-shot + retrieval + binding on held-out scenes; a data set with class labels:
    zero-shot over its classes; any data set with captions: retrieval R@k."""
    model = vlkit.load(model_path)
    details = {"model": str(model.path), "data": data, "limit": limit}
    if data == "scenes":
        cfg = model.cfg
        if limit:
            cfg.eval.num_images = limit
        metrics = evaluate_scenes(model, cfg)
    else:
        dataset = open_named(data)
        images, captions, labels, unreadable = collect(dataset, limit)
        if not images:
            raise ValueError(f"--data {data}: no readable samples")
        details["samples"], details["unreadable"] = len(images), unreadable
        metrics = {}
        classes = getattr(dataset, "classes", None)
        if classes and all(label is not None for label in labels):
            templates = model.cfg.eval.templates
            scores, _ = zero_shot(model, images, np.array(labels), classes, templates)
            metrics |= scores
        metrics |= retrieval(model, images, captions)
    name = Path(data).name if data not in ("scenes", "photos", "fashion-mnist") else data
    out = Path(out_dir) if out_dir else model.path / f"eval-{name}"
    report = write_report(out, f"vlkit eval: {name}", metrics, details)
    return {"metrics": metrics, "report": str(report), **details}
