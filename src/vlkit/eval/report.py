"""Evaluation results as files: `result.json` (machine-readable) and `report.md` (for people)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import vlkit


def write_report(
    folder: str | Path,
    title: str,
    metrics: dict[str, float],
    details: dict | None = None,
    plots: list[Path] = (),
) -> Path:
    """Writes result.json and report.md into `folder`; returns the markdown path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    details = dict(details or {})
    result = {
        "metrics": metrics,
        **details,
        "vlkit_version": vlkit.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in details.items()]
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    for plot in plots:
        rel = os.path.relpath(plot, folder)  # markdown links are relative to report.md
        lines += ["", f"![{Path(plot).stem}]({rel})"]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
