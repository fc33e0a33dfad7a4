"""`vlkit eval`: score a model on a benchmark, write result.json, predictions.jsonl, report.md
and plots into `<run or model folder>/eval-<data>`; on request (`model_card`), the model card's
model-index block next to the checkpoint.

MODEL is a vlkit model or run folder, a transformers folder or a cached hub id (CLIP / SigLIP:
contrastive tasks; image-text-to-text models: VQA, captioning, SNLI-VE, NLVR2), or any object
with the contrastive or generative methods (see `vlkit.eval.harness`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlkit.config import DEFAULT_TEMPLATES, DataConfig, EvalConfig
from vlkit.data import EMBEDDED_KINDS
from vlkit.eval.cards import write_model_card
from vlkit.eval.embedded import named_benchmarks, scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks, select
from vlkit.eval.loaders import Benchmark, open_files
from vlkit.eval.report import task_plots, write_predictions, write_report
from vlkit.models.folders import STAGES, checkpoint_dir
from vlkit.models.kinds import kind_of


def open_benchmarks(
    data: str,
    limit: int | None = None,
    data_cfg: DataConfig | None = None,
    eval_cfg: EvalConfig | None = None,
) -> list[Benchmark]:
    """Every benchmark `data` holds: scenes (all tasks), a path in a benchmark's own format (see
    `vlkit.eval.loaders`), or any other data name (`vlkit.data.names`: photos, fashion-mnist, a
    vlkit data folder, shards, a saved HF dataset, COCO captions)."""
    d, e = data_cfg or DataConfig(), eval_cfg or EvalConfig()
    if data == "scenes":
        return scene_benchmarks(d.image_size, d.min_objects, d.max_objects, e.seed, limit or e.num_images)
    path = Path(data)
    found = open_files(path) if data not in EMBEDDED_KINDS and path.exists() else []
    if found:
        return [b.limited(limit) for b in found]
    return named_benchmarks(data, limit)  # any other data name (vlkit.data.names)


def run_eval(
    model_path,
    data: str = "scenes",
    limit: int | None = None,
    out_dir: str | None = None,
    task: str | Sequence[str] | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    progress: bool = False,
    model_card: bool = False,
    title: str | None = None,
    extra_details: dict | None = None,
    extra_plots: Sequence[Path] = (),
    extra_metrics: dict[str, float] | None = None,
    wrap: Callable[[Any], Any] | None = None,
    call_size: int | None = None,
) -> dict:
    """Loads the model (unless given one), runs the task(s) (None: every task the model and the
    data support), writes the outputs; returns metrics, paths and the per-task results.
    `extra_*`: what joins the report from elsewhere (the tour: its generative model's scores).
    `wrap` the model first, hand it `call_size` examples per call (`vlkit.scale`: Ray's actors)."""
    model = _open(model_path, max_new_tokens, wrap)
    cfg = getattr(model, "cfg", None)
    benches = open_benchmarks(data, limit, cfg.data if cfg else None, cfg.eval if cfg else None)
    chosen = select(model, benches, task)
    templates = (
        cfg.eval.templates if cfg else (EvalConfig().templates if data == "scenes" else DEFAULT_TEMPLATES)
    )
    results = evaluate_benchmarks(model, chosen, templates, call_size or batch_size, progress)
    metrics = {k: v for r in results for k, v in r.metrics.items()} | (extra_metrics or {})
    breakdowns = {f"{r.benchmark} {r.task}: {k}": v for r in results for k, v in r.breakdowns.items()}
    model_dir = _model_dir(model, model_path)
    name = data if data in EMBEDDED_KINDS else Path(data.rstrip("/")).name
    out = Path(out_dir) if out_dir else _home(model_path, model_dir) / f"eval-{name}"
    details = {
        "model": str(model_dir or model_path),
        "model_kind": kind_of(model),
        "data": data,
        "tasks": [f"{r.benchmark}/{r.task}" for r in results],
        "samples": {f"{r.benchmark}/{r.task}": r.samples for r in results},
        "limit": limit,
        "templates": list(templates),
        "note": "; ".join(sorted({b.info["note"] for b in chosen if "note" in b.info})),
        "settings": {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "task": task},
        **(extra_details or {}),
    }
    plots = [*extra_plots, *task_plots(out / "plots", results)]
    predictions = write_predictions(out, results)
    report = write_report(out, title or f"vlkit eval: {name}", metrics, details, plots, breakdowns)
    card = write_model_card(model_dir, model_dir.name, results) if model_card and model_dir else None
    return {
        "metrics": metrics,
        "report": str(report),
        "predictions": str(predictions),
        "card": str(card) if card else None,
        "results": results,
        **details,
    }


def _open(model_path, max_new_tokens: int, wrap: Callable[[Any], Any] | None):
    """The model (loaded, unless given one), through `wrap` if given."""
    from vlkit.api import load

    loaded = isinstance(model_path, str | Path)
    model = load(model_path, max_new_tokens=max_new_tokens) if loaded else model_path
    return wrap(model) if wrap else model


def _model_dir(model, model_path) -> Path | None:
    """The local folder the model was loaded from (a run folder resolves to its checkpoint)."""
    path = getattr(model, "path", None) or (model_path if isinstance(model_path, str | Path) else None)
    return Path(path) if path is not None and Path(path).is_dir() else None


def _home(model_path, model_dir: Path | None) -> Path:
    """Where results go by default: the run folder the user named (not its checkpoint, so that
    `<run>/eval-<data>` is where they look; a multi-stage run's folder too), else the model folder,
    else the working directory."""
    if isinstance(model_path, str | Path) and (
        checkpoint_dir(model_path).is_dir() or (Path(model_path) / STAGES).is_file()
    ):
        return Path(model_path)
    return model_dir or Path.cwd()
