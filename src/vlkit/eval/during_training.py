"""Training-time evaluation: the harness's tasks (the same code as `vlkit eval`) as the flat
metrics the training log records. Dual encoders: held-out scenes (zero-shot, retrieval,
Winoground) or a named data set; generative models: the scenes' VQA and caption coverage.
`EVALUATORS` is the per-kind table that picks between them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vlkit.api import ContrastiveModel, DetectorModel, FusionModel, SegmenterModel
from vlkit.config import Config
from vlkit.eval.embedded import named_benchmarks, scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.loaders import open_files
from vlkit.eval.result import flat_scores
from vlkit.eval.segmentation import BASELINE
from vlkit.models.kinds import model_kind, per_kind


def evaluate_scenes(model: torch.nn.Module | ContrastiveModel, cfg: Config) -> dict[str, float]:
    """Held-out scenes: 32-way colour×shape zero-shot, retrieval R@k, colour-swap binding."""
    cm = model if isinstance(model, ContrastiveModel) else ContrastiveModel(model, cfg)
    d, e = cfg.data, cfg.eval
    benches = scene_benchmarks(
        d.image_size,
        d.min_objects,
        d.max_objects,
        e.seed,
        e.num_images,
        ("zero-shot", "retrieval", "winoground"),
    )
    return flat_scores(evaluate_benchmarks(cm, benches, templates=e.templates))


def evaluate_named(cm: ContrastiveModel, data: str, limit: int | None, templates: Sequence[str]) -> dict:
    """A named or user data set: zero-shot over its classes when it has labels, and retrieval."""
    benches = [b for b in named_benchmarks(data, limit) if b.task in ("zero-shot", "retrieval")]
    results = evaluate_benchmarks(cm, benches, templates=templates)
    return flat_scores(results) | {
        "samples": len(benches[0].examples),
        "unreadable": benches[0].info["unreadable"],
    }


def evaluate(model: torch.nn.Module | ContrastiveModel, cfg: Config) -> dict[str, float]:
    """What training-time evaluation runs: `cfg.eval.data` decides the set."""
    cm = model if isinstance(model, ContrastiveModel) else ContrastiveModel(model, cfg)
    if cfg.eval.data == "scenes":
        return evaluate_scenes(cm, cfg)
    return evaluate_named(cm, cfg.eval.data, cfg.eval.num_images, cfg.eval.templates)


GENERATIVE_TASKS = ("vqa", "caption-coverage")  # what a generative model is scored on in training


def evaluate_generative(model, cfg: Config) -> dict[str, float]:
    """Held-out scenes VQA (overall, per type, beside its question-only prior and in held-out
    wordings) and caption coverage: `vlkit eval RUN --task vqa --task caption-coverage`'s numbers."""
    from vlkit.generation import GenerativeModel

    gm = model if isinstance(model, GenerativeModel) else GenerativeModel(model, cfg)
    return flat_scores(_held_out_scenes(gm, cfg, GENERATIVE_TASKS))


def _held_out_scenes(wrapped, cfg: Config, tasks: tuple[str, ...]) -> list:
    """The harness's results for `tasks` on held-out scenes, the wrapped model in eval mode (and
    back to training mode after), no gradients."""
    d, e = cfg.data, cfg.eval
    benches = scene_benchmarks(d.image_size, d.min_objects, d.max_objects, e.seed, e.num_images, tasks)
    was_training = wrapped.model.training
    wrapped.model.eval()
    with torch.inference_mode():
        results = evaluate_benchmarks(wrapped, benches)
    wrapped.model.train(was_training)
    return results


DETECTOR_TASKS = ("detection", "grounding")  # what a detector is scored on in training


def evaluate_detector(model, cfg: Config) -> dict[str, float]:
    """Held-out scenes: detection mAP (pycocotools) and grounding Acc@0.5 beside a random pick:
    `vlkit eval RUN --task detection --task grounding`'s numbers."""
    dm = model if isinstance(model, DetectorModel) else DetectorModel(model, cfg)
    results = _held_out_scenes(dm, cfg, DETECTOR_TASKS)
    (grounding,) = [r for r in results if r.task == "grounding"]
    chance = grounding.breakdowns["grounding_acc@0.5 vs a random pick"]["random pick"]
    return flat_scores(results) | {"grounding_random_pick": chance}


def evaluate_segmenter(model, cfg: Config) -> dict[str, float]:
    """Held-out scenes: referring-segmentation mIoU beside the CLIP alone's:
    `vlkit eval RUN --task segmentation`'s numbers."""
    sm = model if isinstance(model, SegmenterModel) else SegmenterModel(model, cfg)
    (result,) = _held_out_scenes(sm, cfg, ("segmentation",))
    baseline = result.breakdowns[f"mIoU vs {BASELINE}"][BASELINE]
    return flat_scores([result]) | {"mIoU_clip_alone": baseline}


def evaluate_fusion(model, cfg: Config) -> dict[str, float]:
    """Held-out scenes' colour-swap Winoground by image-text matching: `vlkit eval RUN --task
    winoground`'s numbers; a classifier being fine-tuned (`model.objective: classify`): Hateful
    Memes AUROC and accuracy on `eval.data` (a Hateful Memes folder: its dev file, or one file),
    its first `eval.num_images` memes, beside the majority class."""
    fm = model if isinstance(model, FusionModel) else FusionModel(model, cfg)
    if cfg.model.objective != "classify":
        return flat_scores(_held_out_scenes(fm, cfg, ("winoground",)))
    path = Path(cfg.eval.data)
    benches = [b for b in open_files(path) if b.task == "hateful-memes"] if path.exists() else []
    if not benches:
        raise ValueError(
            f"eval.data: {cfg.eval.data!r} holds no Hateful Memes file; a classifier is scored on "
            "one (a folder with img/ and dev.jsonl, or a .jsonl file)"
        )
    was_training = fm.model.training
    fm.model.eval()
    with torch.inference_mode():
        results = evaluate_benchmarks(fm, [benches[0].limited(cfg.eval.num_images)])
    fm.model.train(was_training)
    return flat_scores(results)


# model kind → what `vlkit train` evaluates it with (`vlkit.models.kinds` has the models floor's table)
EVALUATORS: dict[str, Callable[[torch.nn.Module, Config], dict[str, float]]] = per_kind(
    "training evaluators",
    {
        "contrastive": evaluate,
        "generative": evaluate_generative,
        "detector": evaluate_detector,
        "segmenter": evaluate_segmenter,
        "training-free": evaluate,
        "fusion": evaluate_fusion,
    },
)


def training_evaluator(kind: str) -> Callable[[torch.nn.Module, Config], dict[str, float]]:
    """What `vlkit train` evaluates a model of this kind (`cfg.kind`) with, during training."""
    return EVALUATORS[model_kind(kind).name]
