"""The embedded sets as benchmarks: held-out scenes for every task, photos, fashion-mnist.

Scenes are generated from a seed never used for training (cfg.eval.seed), so a score measures
generalisation to new layouts, not memory. Every scene carries what each task needs:

    zero-shot     one-object scenes, 32 colour×shape classes ("an orange star")
    retrieval     multi-object scenes with several true captions each; caption: the same
    winoground    colour-swapped twins ("a red circle and a blue square" vs the swap)
    vqa           the questions (colour, shape, count, existence, relation) of scenes from their
                  own seed; one true answer, normalised as VQA v2's released answers are
                  ("two" -> "2") and repeated for 10 annotators, so VQA accuracy is 1 for a right
                  answer, else 0; each also in a held-out wording (vlkit.eval.paraphrase)
    caption-coverage  does the caption name every object by colour and shape? (the VQA scenes)
    grounding     "a small red circle" → its box among all objects' boxes (candidates); objects
                  that another object in the scene shares a description with are left out
    segmentation  the same phrases → the object's mask
    detection     the multi-object scenes' objects, labelled by the 32 colour×shape classes
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from vlkit.data.images import ImageError, as_array
from vlkit.data.scenes import (
    ZERO_SHOT_CLASSES,
    Scenes,
    ScenesConfig,
    SingleObjectScenes,
    class_label,
    question_template,
)
from vlkit.data.scenes_text import noun, with_article
from vlkit.eval.loaders import Benchmark
from vlkit.eval.paraphrase import paraphrase, paraphrase_wording
from vlkit.metrics import vqa_normalize

SMALL_SET = 50  # fewer held-out images than this: scores are a sanity check (the note says so)
SCENE_TASKS = (
    "zero-shot", "retrieval", "winoground", "vqa", "caption", "caption-coverage", "grounding", "segmentation",
    "detection",
)  # fmt: skip
# Captions are long generations: caption coverage reads the first 64 question scenes (the count
# the tour's published caption figure was measured on).
CAPTION_COVERAGE_SCENES = 64


class HeldOut(NamedTuple):
    single: list  # one-object samples (zero-shot)
    scenes: list  # multi-object scenes (retrieval, caption, grounding, segmentation), seed + 1
    pairs: list  # colour-swapped twins of `scenes` (winoground)
    asked: list  # multi-object scenes for the generative tasks (vqa, caption-coverage), seed + 2


@lru_cache(maxsize=4)
def held_out_scenes(image_size: int, min_objects: int, max_objects: int, seed: int, n: int) -> HeldOut:
    """The held-out sets, generated once per setting (a few hundred ms). The generative tasks
    keep their own seed (seed + 2): the scenes the tour's published VQA figures were measured on."""
    cfg = ScenesConfig(image_size=image_size, seed=seed)
    single = SingleObjectScenes(cfg, per_class=max(1, n // len(ZERO_SHOT_CLASSES)))
    zs = [single[i] for i in range(len(single))]
    world = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 1))
    scenes = [world.scene(i) for i in range(n)]
    pairs = [world.swap_pair(i) for i in range(max(1, n // 4))]
    asking = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 2))
    return HeldOut(zs, scenes, pairs, [asking.scene(i) for i in range(n)])


def scene_benchmarks(
    image_size: int,
    min_objects: int,
    max_objects: int,
    seed: int,
    n: int,
    tasks: tuple[str, ...] = SCENE_TASKS,
) -> list[Benchmark]:
    held = held_out_scenes(image_size, min_objects, max_objects, seed, n)
    out = []
    for task in tasks:
        if task == "zero-shot":
            examples = [{"id": s["key"], "image": s["image"], "label": s["label"]} for s in held.single]
            out.append(
                Benchmark("scenes", task, examples, classes=[with_article(c) for c in ZERO_SHOT_CLASSES])
            )
        elif task in ("retrieval", "caption"):
            examples = [{"id": s.key, "image": s.image, "captions": s.captions} for s in held.scenes]
            out.append(Benchmark("scenes", task, examples))
        elif task == "winoground":
            examples = [
                {
                    "id": a.key,
                    "images": [a.image, b.image],
                    "captions": [a.captions[0], b.captions[0]],
                    "tag": "colour swap",
                }
                for a, b in held.pairs
            ]
            out.append(Benchmark("scenes", task, examples))
        elif task == "vqa":
            out.append(Benchmark("scenes", task, _questions(held.asked)))
        elif task == "caption-coverage":
            examples = [
                {"id": s.key, "image": s.image, "objects": [(o.color, o.shape) for o in s.objects]}
                for s in held.asked[:CAPTION_COVERAGE_SCENES]
            ]
            out.append(Benchmark("scenes", task, examples))
        elif task == "detection":
            examples = [{"id": s.key, "image": s.image, "objects": _labelled_boxes(s)} for s in held.scenes]
            out.append(Benchmark("scenes", task, examples, classes=list(ZERO_SHOT_CLASSES)))
        elif task in ("grounding", "segmentation"):
            out.append(Benchmark("scenes", task, _referring(held.scenes, task)))
        else:
            raise ValueError(f"scenes have no {task!r} set; tasks: {', '.join(SCENE_TASKS)}")
    return out


def _questions(scenes) -> list[dict]:
    """Every QA pair of the scenes, also in a held-out wording (`reworded`, vlkit.eval.paraphrase;
    `reworded_wording`: that wording with its slots unfilled)."""
    return [
        {
            "id": f"{s.key}/q{q}",
            "image": s.image,
            "question": qa.question,
            "reworded": paraphrase(qa.question),
            "reworded_wording": paraphrase_wording(qa.question),
            "question_template": question_template(qa.question),
            "answers": [vqa_normalize(qa.answer)] * 10,
            "question_type": qa.type,
            "answer_type": "yes/no" if qa.answer in ("yes", "no") else "other",
        }
        for s in scenes
        for q, qa in enumerate(s.qa)
    ]


def _labelled_boxes(scene) -> list[dict]:
    """The scene's objects as {"label": "red circle", "box": (x1, y1, x2, y2) pixels}."""
    h, w = scene.image.shape[:2]
    return [
        {
            "label": class_label(o.color, o.shape),
            "box": [o.box[0] * w, o.box[1] * h, o.box[2] * w, o.box[3] * h],
        }
        for o in scene.objects
    ]


def _referring(scenes, task: str) -> list[dict]:
    examples = []
    for s in scenes:
        h, w = s.image.shape[:2]
        phrases = [noun(o) for o in s.objects]
        boxes = [[o.box[0] * w, o.box[1] * h, o.box[2] * w, o.box[3] * h] for o in s.objects]
        for k, (obj, phrase) in enumerate(zip(s.objects, phrases)):
            if phrases.count(phrase) > 1:
                continue  # ambiguous: two objects answer to the phrase
            example = {"id": f"{s.key}/o{k}", "image": s.image, "phrase": phrase}
            if task == "grounding":
                example |= {"box": boxes[k], "candidates": boxes}
            else:
                example["mask"] = obj.mask
            examples.append(example)
    return examples


def named_benchmarks(name: str, limit: int | None = None) -> list[Benchmark]:
    """photos (held-out split), fashion-mnist (test split) or any data name (`vlkit.data.names`):
    zero-shot over its classes when it has labels, retrieval and captioning over its captions. Unreadable images
    are skipped and counted in Benchmark.info["unreadable"]; a set under SMALL_SET images says so
    in Benchmark.info["note"]."""
    from vlkit.data import open_named

    dataset = open_named(name, split="test")
    examples, unreadable = [], 0
    for i in range(min(len(dataset), limit or len(dataset))):
        try:
            sample = dataset[i]
        except ImageError:
            unreadable += 1
            continue
        examples.append(
            {
                "id": sample.get("key", str(i)),
                "image": sample["image"],
                "captions": sample["captions"],
                "label": sample.get("label"),
            }
        )
    if not examples:
        raise ValueError(f"eval data {name!r}: no readable samples")
    if not any(e["captions"] for e in examples):
        raise ValueError(f"eval data {name!r}: its samples have no captions to score (a conversation file?)")
    info = {"unreadable": unreadable}
    if len(examples) < SMALL_SET:
        split = getattr(dataset, "split", None)
        info["note"] = (
            f"{name}{f' ({split} split)' if split else ''}: only {len(examples)} images; retrieval "
            f"among {len(examples)} candidates (R@1 chance {1 / len(examples):.0%}) is a sanity check, "
            "not a measurement"
        )
    out = [Benchmark(name, t, examples, source=name, info=info) for t in ("retrieval", "caption")]
    classes = getattr(dataset, "classes", None)
    if classes and all(e["label"] is not None for e in examples):
        out.insert(0, Benchmark(name, "zero-shot", examples, classes=list(classes), source=name, info=info))
    return out


def as_arrays(images: list) -> list[np.ndarray]:
    """Paths / PIL images / arrays → uint8[H, W, 3] arrays (paths are decoded here)."""
    return [as_array(im) for im in images]
