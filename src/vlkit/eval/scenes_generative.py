"""Evaluation of generative VLMs on held-out scenes: short-answer VQA and captions.

VQA: every QA pair of `eval.num_images` held-out scenes, answered greedily and scored by the
evaluation harness (`vlkit.eval.generative.vqa`: the official VQA v2 answer processing, so "Two."
matches "2"), overall and per question type (count, color, shape, existence, relation), beside
the question-only prior (the majority answer per question template, no image) and the same questions in
held-out wordings (`vlkit.eval.paraphrase`). Captions: does the caption name every object by its
colour and shape ("a red circle", "the small red circle")? Scored per object and per scene.
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from vlkit.config import Config
from vlkit.data.scenes import Scenes, ScenesConfig, question_template
from vlkit.eval.generative import vqa
from vlkit.eval.loaders import Benchmark
from vlkit.eval.paraphrase import paraphrase
from vlkit.metrics import vqa_normalize


@lru_cache(maxsize=4)
def held_out_scenes(image_size: int, min_objects: int, max_objects: int, seed: int, n: int) -> list:
    world = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 2))
    return [world.scene(i) for i in range(n)]


def names_object(caption: str, color: str, shape: str) -> bool:
    """The caption mentions a `color` `shape` (a size word may stand between them)."""
    return re.search(rf"\b{color} (?:small |large )?{shape}", caption.lower()) is not None


def _vqa_examples(scenes: list) -> list[dict]:
    """The scenes' questions in the harness' VQA form (answers normalised, 10 annotators)."""
    return [
        {
            "id": f"{s.key}/q{q}",
            "image": s.image,
            "question": qa.question,
            "question_template": question_template(qa.question),
            "answers": [vqa_normalize(qa.answer)] * 10,
            "question_type": qa.type,
        }
        for s in scenes
        for q, qa in enumerate(s.qa)
    ]


def evaluate_generative(model, cfg: Config, n_caption_scenes: int = 64) -> dict[str, float]:
    """Held-out scenes VQA accuracy (overall and by type) and caption coverage."""
    from vlkit.generation import GenerativeModel

    gm = model if isinstance(model, GenerativeModel) else GenerativeModel(model, cfg)
    d = cfg.data
    scenes = held_out_scenes(d.image_size, d.min_objects, d.max_objects, cfg.eval.seed, cfg.eval.num_images)
    bench = Benchmark("scenes", "vqa", _vqa_examples(scenes))
    reworded = [e | {"question": paraphrase(e["question"])} for e in bench.examples]
    was_training = gm.model.training
    gm.model.eval()
    with torch.inference_mode():
        vqa_result = vqa(gm, bench, batch_size=len(bench.examples) or 1)
        reworded_result = vqa(gm, Benchmark("scenes", "vqa", reworded), batch_size=len(reworded) or 1)
        captions = gm.caption([s.image for s in scenes[:n_caption_scenes]])
    gm.model.train(was_training)
    by_type = vqa_result.breakdowns["vqa_accuracy by question_type"]
    prior = dict(vqa_result.breakdowns["question-only prior by question_type"])
    scores = vqa_result.metrics | {f"vqa_{kind}": v for kind, v in by_type.items()}
    scores["prior_accuracy"] = prior.pop("all")  # the blind baseline, overall and per type
    scores |= {f"prior_{kind}": v for kind, v in prior.items()}
    # the same questions in wordings no training source uses (vlkit.eval.paraphrase)
    scores["paraphrase_accuracy"] = reworded_result.metrics["vqa_accuracy"]
    by_type = reworded_result.breakdowns["vqa_accuracy by question_type"]
    scores |= {f"paraphrase_{kind}": v for kind, v in by_type.items()}
    named = [[names_object(c, o.color, o.shape) for o in s.objects] for s, c in zip(scenes, captions)]
    scores["caption_objects_named"] = sum(map(sum, named)) / max(1, sum(map(len, named)))
    scores["caption_all_named"] = sum(all(n) for n in named) / max(1, len(named))
    return scores
