"""The harness: which model can do which task, and one call that runs tasks over benchmarks.

Models are told apart by what they can do, not by class (`vlkit.models.kinds.kind_of`, from
each kind's `abilities`):
- contrastive: embed_images, embed_texts, label_embeddings (vlkit ContrastiveModel, HF CLIP/SigLIP,
  BLIP's retrieval model); plus segmentation with `segment` (HF CLIPSeg)
- training-free: the same and `method` (ASIF, ConSE): it runs the contrastive tasks
- generative: answer (vlkit VLMs, HF image-text-to-text models, GIT, BLIP's and ViLT's VQA models);
  plus captioning with `caption` (not ViLT's or BLIP's VQA models), segmentation with `segment`,
  grounding with `ground` (`EXTRAS`).
- detector: detect, ground (vlkit `DetectorModel`, HF OWL-ViT): detection (COCO mAP), grounding.
- segmenter: segment, mask_probabilities (vlkit `SegmenterModel`): segmentation (mIoU beside the
  CLIP alone).
- fusion: match, fill_mask (vlkit `FusionModel`): Winoground and retrieval by image-text matching
  (retrieval scores every pair: opt-in); Hateful Memes by a fine-tuned classifier (`classify`).
The tables below are per model kind (checked by `per_kind` to name every kind).
"""

from __future__ import annotations

from collections.abc import Sequence

from vlkit.config import DEFAULT_TEMPLATES
from vlkit.eval import contrastive, detection, fusion, generative, segmentation
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import TaskResult
from vlkit.eval.tasks import TASKS
from vlkit.models.kinds import kind_of, per_kind

# Tasks a contrastive model runs only when asked: grounding by scoring crops is a heuristic, not
# something the model was trained for, so it stays out of the default "every task" set.
OPT_IN = per_kind(
    "opt-in tasks",
    {
        "contrastive": ("grounding",),
        "generative": (),
        "detector": (),
        "segmenter": (),
        "training-free": ("grounding",),
        "fusion": ("retrieval",),  # N images × M captions forward passes
    },
)

# What a model with a dual encoder's abilities runs: a training-free model's too.
EMBEDDING_RUNNERS = {
    "zero-shot": lambda m, b, f, s: contrastive.zero_shot(m, b, f, s["templates"]),
    "retrieval": lambda m, b, f, s: contrastive.retrieval(m, b, f),
    "winoground": lambda m, b, f, s: contrastive.winoground(m, b, f),
    "grounding": lambda m, b, f, s: contrastive.grounding(m, b, f),
    "hateful-memes": lambda m, b, f, s: contrastive.hateful_memes(m, b, f),
    # a dual encoder with a mask decoder (transformers' CLIPSeg; `EXTRAS`)
    "segmentation": lambda m, b, f, s: generative.segmentation(m, b, s["batch_size"], s["progress"]),
}
# task → runner, per model kind: the one table of what runs what.
RUNNERS = per_kind(
    "task runners",
    {
        "contrastive": EMBEDDING_RUNNERS,
        "training-free": EMBEDDING_RUNNERS,
        "generative": {
            "vqa": lambda m, b, f, s: generative.vqa(m, b, s["batch_size"], s["progress"]),
            "caption": lambda m, b, f, s: generative.caption(
                m, b, s["batch_size"], s["progress"], s.get("prompt")
            ),
            "caption-coverage": lambda m, b, f, s: generative.caption_coverage(
                m, b, s["batch_size"], s["progress"], s.get("prompt")
            ),
            "snli-ve": lambda m, b, f, s: generative.snli_ve(m, b, s["batch_size"], s["progress"]),
            "nlvr2": lambda m, b, f, s: generative.nlvr2(m, b, s["batch_size"], s["progress"]),
            "hateful-memes": lambda m, b, f, s: generative.hateful_memes(
                m, b, s["batch_size"], s["progress"]
            ),
            "segmentation": lambda m, b, f, s: generative.segmentation(m, b, s["batch_size"], s["progress"]),
            "grounding": lambda m, b, f, s: generative.grounding(m, b, s["batch_size"], s["progress"]),
        },
        "detector": {
            "detection": lambda m, b, f, s: detection.detection(m, b, s["batch_size"], s["progress"]),
            "grounding": lambda m, b, f, s: detection.grounding(m, b, s["batch_size"], s["progress"]),
        },
        "segmenter": {
            "segmentation": lambda m, b, f, s: segmentation.segmentation(
                m, b, s["batch_size"], s["progress"]
            ),
        },
        "fusion": {
            "winoground": lambda m, b, f, s: fusion.winoground(m, b, s["batch_size"]),
            "retrieval": lambda m, b, f, s: fusion.retrieval(m, b, s["batch_size"]),
            "hateful-memes": lambda m, b, f, s: fusion.hateful_memes(m, b, s["batch_size"]),  # fine-tuned
        },
    },
)
# task → the method it needs beyond the kind's abilities (not every generative model segments)
EXTRAS = per_kind(
    "task extras",
    {
        "contrastive": {"segmentation": "segment"},
        "generative": {
            "segmentation": "segment",
            "grounding": "ground",
            "caption": "caption",
            "caption-coverage": "caption",
        },
        "detector": {},
        "segmenter": {},
        "training-free": {"segmentation": "segment"},
        "fusion": {},
    },
)
# (model, batch_size, progress) → what a kind's runners share across tasks (`f` above), or None
SHARED = per_kind(
    "shared features",
    {
        "contrastive": contrastive.ImageFeatures,
        "generative": lambda m, batch_size, progress: None,
        "detector": lambda m, batch_size, progress: None,
        "segmenter": lambda m, batch_size, progress: None,
        "training-free": contrastive.ImageFeatures,
        "fusion": lambda m, batch_size, progress: None,
    },
)


def supported_tasks(model) -> tuple[str, ...]:
    kind = kind_of(model)
    extras = EXTRAS[kind]
    return tuple(t for t in RUNNERS[kind] if t not in extras or hasattr(model, extras[t]))


def check_task(model, task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"--task {task!r}: unknown task; valid tasks: {', '.join(TASKS)}")
    can = supported_tasks(model)
    if task not in can:
        raise ValueError(
            f"task {task!r}: a {kind_of(model)} model ({type(model).__name__}) cannot do it; "
            f"it can do: {', '.join(can)}"
        )


def select(model, benchmarks: Sequence[Benchmark], task: str | Sequence[str] | None) -> list[Benchmark]:
    """The benchmarks to run: those of `task` (one name or several), or (None) every one the
    model can do, leaving out the opt-in tasks."""
    if task:
        tasks = [task] if isinstance(task, str) else list(task)
        chosen = []
        for t in tasks:
            check_task(model, t)
            mine = [b for b in benchmarks if b.task == t]
            if not mine:
                have = sorted({b.task for b in benchmarks})
                raise ValueError(f"task {t!r}: the data has no {t} set; it has: {', '.join(have) or 'none'}")
            chosen += mine
        return chosen
    kind = kind_of(model)
    can = set(supported_tasks(model)) - set(OPT_IN[kind])
    chosen = [b for b in benchmarks if b.task in can]
    if not chosen:
        have = sorted({b.task for b in benchmarks})
        raise ValueError(
            f"a {kind} model can do {', '.join(supported_tasks(model))}; the data offers {', '.join(have)}: nothing to run"
        )
    return chosen


def evaluate_benchmarks(
    model,
    benchmarks: Sequence[Benchmark],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 32,
    progress: bool = False,
    prompt: str | None = None,
) -> list[TaskResult]:
    """Runs each benchmark's task; image features are computed once per image across tasks."""
    kind = kind_of(model)
    features = SHARED[kind](model, batch_size, progress)
    settings = {
        "templates": list(templates),
        "batch_size": batch_size,
        "progress": progress,
        "prompt": prompt,
    }
    results = []
    for bench in benchmarks:
        check_task(model, bench.task)
        if not bench.examples:
            raise ValueError(f"{bench.name} ({bench.task}): no examples")
        results.append(RUNNERS[kind][bench.task](model, bench, features, settings))
    return results
