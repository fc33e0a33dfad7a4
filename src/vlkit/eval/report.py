"""Evaluation results as files: `result.json` (machine-readable), `predictions.jsonl` (one line
per sample, for inspection), `report.md` with plots (for people), and side-by-side comparison."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import vlkit
from vlkit.eval.result import RETRIEVAL_CHANCE, TaskResult


def write_report(
    folder: str | Path,
    title: str,
    metrics: dict[str, float],
    details: dict | None = None,
    plots: list[Path] = (),
    breakdowns: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Writes result.json and report.md into `folder`; returns the markdown path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    details = dict(details or {})
    result = {
        "metrics": metrics,
        **details,
        "breakdowns": breakdowns or {},
        "vlkit_version": vlkit.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1, default=_jsonable))
    lines = [f"# {title}", ""]
    lines += [
        f"- {k}: {v}" for k, v in details.items() if not isinstance(v, dict | list) or len(str(v)) < 200
    ]
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    for name, table in (breakdowns or {}).items():
        lines += ["", f"## {name}", "", "| group | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" for k, v in table.items()]
    for plot in plots:
        rel = os.path.relpath(plot, folder)  # markdown links are relative to report.md
        lines += ["", f"![{Path(plot).stem}]({rel})"]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_predictions(folder: str | Path, results: list[TaskResult]) -> Path:
    path = Path(folder) / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in results:
            for record in r.predictions:
                f.write(
                    json.dumps({"task": r.task, "benchmark": r.benchmark} | record, default=_jsonable) + "\n"
                )
    return path


def task_plots(folder: str | Path, results: list[TaskResult]) -> list[Path]:
    """Confusion matrix (zero-shot), recall@k curves (retrieval), bars per group (breakdowns),
    predicted masks or boxes drawn on a few held-out images (segmentation, detection)."""
    from vlkit.plots import plot_confusion, plot_gallery, plot_recall_at_k

    folder = Path(folder)
    written = []
    for r in results:
        stem = f"{r.benchmark}-{r.task}".replace("/", "_")
        if r.confusion is not None and r.classes:
            written.append(plot_confusion(r.confusion, r.classes, folder / f"{stem}-confusion.png"))
        if r.task == "retrieval":
            chance = r.breakdowns.get(RETRIEVAL_CHANCE)
            written.append(plot_recall_at_k(r.metrics, folder / f"{stem}-recall.png", chance))
        for name, table in r.breakdowns.items():
            if len(table) > 1 and name != RETRIEVAL_CHANCE:  # chance is drawn on the recall plot
                slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # one file per breakdown
                written.append(plot_bars(table, name, folder / f"{stem}-{slug}.png"))
        if r.gallery:
            written.append(plot_gallery(r.gallery, folder / f"{stem}-examples.png"))
    return written


def plot_bars(values: dict[str, float], title: str, path: Path) -> Path:
    """One horizontal bar per group, e.g. VQA accuracy per question type."""
    names = list(values)
    fig = Figure(figsize=(6, 0.3 * len(names) + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(len(names)), [values[n] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def compare(paths: list[str | Path]) -> str:
    """A markdown table of several results side by side (result.json files or eval folders)."""
    results = []
    for p in paths:
        p = Path(p)
        file = p / "result.json" if p.is_dir() else p
        if not file.is_file():
            raise FileNotFoundError(f"{p}: no result.json (pass result.json files or `vlkit eval` folders)")
        results.append(json.loads(file.read_text()))
    keys = list(dict.fromkeys(k for r in results for k in r.get("metrics", {})))
    names = [f"{Path(str(r.get('model', '?'))).name} / {r.get('data', '?')}" for r in results]
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(results)]
    for k in keys:
        cells = [f"{r['metrics'][k]:.4f}" if k in r.get("metrics", {}) else "-" for r in results]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
