"""The embedded sets as benchmarks: held-out scenes for every task, photos, fashion-mnist.

Scenes are generated from a seed never used for training (cfg.eval.seed), so a score measures
generalisation to new layouts, not memory. Every scene carries what each task needs:

    zero-shot     one-object scenes, 32 colour×shape classes ("an orange star")
    retrieval     multi-object scenes with several true captions each; caption: the same
    winoground    colour-swapped twins ("a red circle and a blue square" vs the swap)
    vqa           the scenes' questions (colour, shape, count, existence, relation); one true
                  answer, normalised as VQA v2's released answers are ("two" -> "2") and
                  repeated for 10 annotators, so VQA accuracy is 1 for a right answer, else 0
    grounding     "a small red circle" → its box among all objects' boxes (candidates); objects
                  that another object in the scene shares a description with are left out
    segmentation  the same phrases → the object's mask
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vlkit.data.images import ImageError, as_array
from vlkit.data.scenes import ZERO_SHOT_CLASSES, Scenes, ScenesConfig, SingleObjectScenes, question_template
from vlkit.data.scenes_text import noun, with_article
from vlkit.eval.loaders import Benchmark
from vlkit.metrics import vqa_normalize

SMALL_SET = 50  # fewer held-out images than this: scores are a sanity check (the note says so)
SCENE_TASKS = ("zero-shot", "retrieval", "winoground", "vqa", "caption", "grounding", "segmentation")


@lru_cache(maxsize=4)
def held_out_scenes(image_size: int, min_objects: int, max_objects: int, seed: int, n: int):
    """(single-object samples, scenes, swap pairs), generated once per setting (a few hundred ms)."""
    cfg = ScenesConfig(image_size=image_size, seed=seed)
    single = SingleObjectScenes(cfg, per_class=max(1, n // len(ZERO_SHOT_CLASSES)))
    zs = [single[i] for i in range(len(single))]
    world = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 1))
    scenes = [world.scene(i) for i in range(n)]
    pairs = [world.swap_pair(i) for i in range(max(1, n // 4))]
    return zs, scenes, pairs


def scene_benchmarks(
    image_size: int,
    min_objects: int,
    max_objects: int,
    seed: int,
    n: int,
    tasks: tuple[str, ...] = SCENE_TASKS,
) -> list[Benchmark]:
    zs, scenes, pairs = held_out_scenes(image_size, min_objects, max_objects, seed, n)
    out = []
    for task in tasks:
        if task == "zero-shot":
            examples = [{"id": s["key"], "image": s["image"], "label": s["label"]} for s in zs]
            out.append(
                Benchmark("scenes", task, examples, classes=[with_article(c) for c in ZERO_SHOT_CLASSES])
            )
        elif task in ("retrieval", "caption"):
            examples = [{"id": s.key, "image": s.image, "captions": s.captions} for s in scenes]
            out.append(Benchmark("scenes", task, examples))
        elif task == "winoground":
            examples = [
                {
                    "id": a.key,
                    "images": [a.image, b.image],
                    "captions": [a.captions[0], b.captions[0]],
                    "tag": "colour swap",
                }
                for a, b in pairs
            ]
            out.append(Benchmark("scenes", task, examples))
        elif task == "vqa":
            examples = [
                {
                    "id": f"{s.key}/q{q}",
                    "image": s.image,
                    "question": qa.question,
                    "question_template": question_template(qa.question),
                    "answers": [vqa_normalize(qa.answer)] * 10,
                    "question_type": qa.type,
                    "answer_type": "yes/no" if qa.answer in ("yes", "no") else "other",
                }
                for s in scenes
                for q, qa in enumerate(s.qa)
            ]
            out.append(Benchmark("scenes", task, examples))
        elif task in ("grounding", "segmentation"):
            out.append(Benchmark("scenes", task, _referring(scenes, task)))
        else:
            raise ValueError(f"scenes have no {task!r} set; tasks: {', '.join(SCENE_TASKS)}")
    return out


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
    """photos (held-out split), fashion-mnist (test split) or a vlkit data folder: zero-shot over
    its classes when it has labels, retrieval and captioning over its captions. Unreadable images
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
