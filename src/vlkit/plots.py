"""Training curves and evaluation figures for reports, written straight to PNG files.

Figures are built as `matplotlib.figure.Figure` objects and rendered by the Agg canvas, without
pyplot: nothing needs a display, and importing this module leaves the caller's matplotlib backend
(for example a notebook's) untouched.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vlkit.jsonl import read_jsonl

_RECALL_KEY = re.compile(r"^(?:(?P<name>.*?)_)?R@(?P<k>\d+)$")  # "t2i_R@5", "eval/i2t_R@10", "R@1"


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every record holding a step and a number under `key`."""
    steps, values = [], []
    for record in records:
        step, value = record.get("step"), record.get(key)
        if _is_number(step) and _is_number(value):
            steps.append(float(step))
            values.append(float(value))
    return steps, values


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_metrics_log(jsonl_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Plot a training metrics log; returns the PNG files written (possibly none).

    Every line of `jsonl_path` is a JSON object; records without a numeric "step" (a header, say)
    are skipped. Writes into `out_dir`:
    - loss.png: "loss" against step, with "lr" on a second y axis when the log has it;
    - eval.png: one panel per "eval/..." key against step.
    A figure with nothing to draw is not written.
    """
    records = read_jsonl(jsonl_path, torn_tail=True)  # a crash may cut the last line
    out_dir = Path(out_dir)
    written = []

    steps, losses = _series(records, "loss")
    if steps:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        ax.plot(steps, losses, color="tab:blue", label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss", color="tab:blue")
        lr_steps, lrs = _series(records, "lr")
        if lr_steps:
            lr_ax = ax.twinx()
            lr_ax.plot(lr_steps, lrs, color="tab:orange", linewidth=1)
            lr_ax.set_ylabel("learning rate", color="tab:orange")
        ax.set_title("training loss")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "loss.png"))

    eval_keys = sorted({key for record in records for key in record if key.startswith("eval/")})
    panels = [(key, *_series(records, key)) for key in eval_keys]
    panels = [panel for panel in panels if panel[1]]
    if panels:
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(4 * cols, 3 * rows))
        for i, (key, eval_steps, values) in enumerate(panels, start=1):
            ax = fig.add_subplot(rows, cols, i)
            ax.plot(eval_steps, values, marker="o")  # markers: eval points are sparse
            ax.set_title(key.removeprefix("eval/"))
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "eval.png"))
    return written


def plot_confusion(matrix: Any, class_names: list[str], path: str | os.PathLike[str]) -> Path:
    """Draw a confusion matrix int[C, C] (rows: true class, columns: predicted class) to `path`.

    Cells are coloured by the fraction of each true class (row-normalised) so rare classes stay
    visible, and labelled with the raw counts when C <= 20.
    """
    counts = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix: expected a square [C, C] array, got shape {counts.shape}")
    num_classes = counts.shape[0]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names: got {len(class_names)} names for a {num_classes}x{num_classes} matrix"
        )
    row_totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)

    side = max(4.0, 0.4 * num_classes + 2)
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, labels=class_names, rotation=90)
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if num_classes <= 20:
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if fractions[row, col] > 0.5 else "black"
            ax.text(col, row, f"{count:g}", ha="center", va="center", color=colour, fontsize=8)
    return _save(fig, Path(path))


def _recall_curves(results: dict[str, float]) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, float]] = {}
    for key, value in results.items():
        match = _RECALL_KEY.match(key)
        if match and _is_number(value):
            curves.setdefault(match["name"] or "recall", {})[int(match["k"])] = float(value)
    return curves


def plot_recall_at_k(
    results: dict[str, float], path: str | os.PathLike[str], chance: dict[str, float] | None = None
) -> Path:
    """Draw recall against k, one line per direction, from keys like "t2i_R@5" (as returned by
    `vlkit.metrics.retrieval_recall`, optionally prefixed, e.g. "eval/i2t_R@10"). Other keys are ignored.
    chance: the same keys for a random ranking (`vlkit.metrics.retrieval_chance`), drawn dashed.
    """
    curves = _recall_curves(results)
    if not curves:
        raise ValueError(f"results: no keys of the form '<name>_R@<k>' to plot, got {sorted(results)}")

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    for n, (name, by_k) in enumerate(sorted(curves.items())):
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k] for k in ks], marker="o", label=name, color=f"C{n}")
        base = _recall_curves(chance or {}).get(name, {})
        if base:
            ax.plot(
                sorted(base), [base[k] for k in sorted(base)], ls="--", color=f"C{n}", label=f"{name} chance"
            )
    all_ks = sorted({k for by_k in curves.values() for k in by_k})
    ax.set_xscale("log")  # k is usually 1, 5, 10: a log axis spaces them evenly
    ax.set_xticks(all_ks, labels=[str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, Path(path))


def draw_boxes(
    image: Any, boxes: Any, labels: list[str], scores: Any, path: str | os.PathLike[str], scale: int = 4
) -> Path:
    """The image (uint8[H, W, 3]) enlarged `scale` times with each box (x1, y1, x2, y2 pixels of
    the image) drawn and labelled "label 0.93", written as a PNG."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    for box, label, score in zip(boxes, labels, scores):
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=(255, 255, 0), width=2)
        draw.text((x1 + 2, max(0.0, y1 - 11)), f"{label} {float(score):.2f}", fill=(255, 255, 0))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    return out


def overlay_mask(
    image: Any, mask: Any, color: tuple[int, int, int] = (255, 0, 255), alpha: float = 0.5
) -> np.ndarray:
    """The image (uint8[H, W, 3]) with the mask's pixels (bool[H, W]) tinted `color`; uint8[H, W, 3]."""
    picture = np.asarray(image, dtype=np.uint8)[..., :3].astype(np.float32)
    inside = np.asarray(mask, dtype=bool)
    picture[inside] = (1 - alpha) * picture[inside] + alpha * np.asarray(color, dtype=np.float32)
    return picture.round().astype(np.uint8)


def draw_mask(image: Any, mask: Any, label: str, path: str | os.PathLike[str], scale: int = 4) -> Path:
    """The image enlarged `scale` times with the mask tinted over it and `label` written in the
    corner, as a PNG."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(overlay_mask(image, mask))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    ImageDraw.Draw(picture).text((3, 2), label, fill=(255, 255, 0))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    return out


def _edges(mask: np.ndarray) -> np.ndarray:
    """The pixels of a bool[H, W] mask that touch a pixel outside it (its outline)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def plot_gallery(examples: list[dict[str, Any]], path: str | os.PathLike[str], columns: int = 4) -> Path:
    """Held-out images with what the model found: a predicted mask tinted magenta with the true
    mask's outline in green, or predicted boxes in yellow (labelled), each titled. examples:
    {"image": uint8[H, W, 3], "title": str, "mask"/"true_mask": bool[H, W] | "boxes": float[K, 4]
    (x1, y1, x2, y2 pixels), "labels": [str]}."""
    from matplotlib.patches import Rectangle

    rows = math.ceil(len(examples) / columns)
    fig = Figure(figsize=(2.6 * min(columns, len(examples)), 2.8 * rows))
    for i, ex in enumerate(examples):
        ax = fig.add_subplot(rows, min(columns, len(examples)), i + 1)
        picture = np.asarray(ex["image"], dtype=np.uint8)
        if ex.get("mask") is not None:
            picture = overlay_mask(picture, ex["mask"])
        if ex.get("true_mask") is not None:
            picture = overlay_mask(picture, _edges(np.asarray(ex["true_mask"], bool)), (0, 255, 0), 1.0)
        ax.imshow(picture, interpolation="nearest")
        for box, label in zip(ex.get("boxes", []), ex.get("labels", [])):
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=1.5))
            ax.text(x1, y1, label, color="yellow", fontsize=6, va="bottom")
        ax.set_title(ex["title"], fontsize=7)
        ax.axis("off")
    return _save(fig, Path(path))
