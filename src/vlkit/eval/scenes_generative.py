"""Evaluation of generative VLMs on held-out scenes: short-answer VQA and captions.

VQA: every QA pair of `eval.num_images` held-out scenes, answered greedily; exact match after
lower-casing and stripping punctuation, overall and per question type (count, color, shape,
existence, relation). Captions: does the caption name every object by its colour and shape
("a red circle", "the small red circle")? Scored per object and per scene.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache

import torch

from vlkit.config import Config
from vlkit.data.scenes import Scenes, ScenesConfig


@lru_cache(maxsize=4)
def held_out_scenes(image_size: int, min_objects: int, max_objects: int, seed: int, n: int) -> list:
    world = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 2))
    return [world.scene(i) for i in range(n)]


def normalise(answer: str) -> str:
    return re.sub(r"[^\w\s]", "", answer.lower()).strip()


def names_object(caption: str, color: str, shape: str) -> bool:
    """The caption mentions a `color` `shape` (a size word may stand between them)."""
    return re.search(rf"\b{color} (?:small |large )?{shape}", caption.lower()) is not None


def evaluate_generative(model, cfg: Config, n_caption_scenes: int = 64) -> dict[str, float]:
    """Held-out scenes VQA accuracy (overall and by type) and caption coverage."""
    from vlkit.generation import GenerativeModel

    gm = model if isinstance(model, GenerativeModel) else GenerativeModel(model, cfg)
    d = cfg.data
    scenes = held_out_scenes(d.image_size, d.min_objects, d.max_objects, cfg.eval.seed, cfg.eval.num_images)
    images = [s.image for s in scenes for _ in s.qa]
    questions = [qa for s in scenes for qa in s.qa]
    was_training = gm.model.training
    gm.model.eval()
    with torch.inference_mode():
        answers = gm.answer(images, [qa.question for qa in questions])
        captions = gm.caption([s.image for s in scenes[:n_caption_scenes]])
    gm.model.train(was_training)
    right: dict[str, list[bool]] = defaultdict(list)
    for qa, answer in zip(questions, answers):
        right[qa.type].append(normalise(answer) == normalise(qa.answer))
    scores = {"vqa_accuracy": sum(map(sum, right.values())) / max(1, len(questions))}
    scores |= {f"vqa_{kind}": sum(hits) / len(hits) for kind, hits in sorted(right.items())}
    named = [[names_object(c, o.color, o.shape) for o in s.objects] for s, c in zip(scenes, captions)]
    scores["caption_objects_named"] = sum(map(sum, named)) / max(1, sum(map(len, named)))
    scores["caption_all_named"] = sum(all(n) for n in named) / max(1, len(named))
    return scores
