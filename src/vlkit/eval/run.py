"""`vlkit eval`: score a trained dual encoder on a named or user data set, write a report."""

from __future__ import annotations

from pathlib import Path

import vlkit
from vlkit.eval.contrastive import evaluate
from vlkit.eval.report import write_report


def run_eval(
    model_path: str, data: str = "scenes", limit: int | None = None, out_dir: str | None = None
) -> dict:
    """scenes: zero-shot + retrieval + colour-swap binding on held-out scenes; a data set with
    class labels: zero-shot over its classes; any data set with captions: retrieval R@k."""
    model = vlkit.load(model_path)
    cfg = model.cfg
    cfg.eval.data = data
    if limit:
        cfg.eval.num_images = limit
    metrics = evaluate(model, cfg)
    name = data if data in ("scenes", "photos", "fashion-mnist") else Path(data).name
    out = Path(out_dir) if out_dir else model.path / f"eval-{name}"
    details = {"model": str(model.path), "data": data, "limit": limit, "templates": cfg.eval.templates}
    report = write_report(out, f"vlkit eval: {name}", metrics, details)
    return {"metrics": metrics, "report": str(report), **details}
