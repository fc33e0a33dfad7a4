"""Tests that fail when learning breaks: tiny models trained for seconds must beat chance by far.

Each trains a tiny model with the real loop on generated scenes and scores it on held-out
scenes of another world seed; the thresholds sit far above chance and far below what the runs
reach, so they catch a broken loss, tower, tokenizer, data path or optimizer, not noise.
"""

import numpy as np
import pytest

import vlkit
from vlkit.config import SourceConfig
from vlkit.data.scenes import ZERO_SHOT_CLASSES, ScenesConfig, SingleObjectScenes
from vlkit.data.scenes_text import with_article
from vlkit.train.loop import train

STEPS_VLM = 200


def _held_out(image_size: int, per_class: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    ds = SingleObjectScenes(ScenesConfig(image_size, 1, 1, seed=1_000_003), per_class=per_class)
    samples = [ds[i] for i in range(len(ds))]
    return [s["image"] for s in samples], np.array([s["label"] for s in samples])


def _train_tiny_clip(tiny_cfg, stem: str, steps: int):
    cfg = tiny_cfg
    m = cfg.model
    m.vision_stem, m.vision_width, m.vision_layers, m.vision_heads = stem, 32, 2, 2
    m.text_width, m.text_layers, m.text_heads, m.embed_dim = 32, 1, 2, 32
    cfg.data.sources = [SourceConfig(kind="scenes", max_objects=1, caption_styles=1)]
    t = cfg.train
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every, t.log_every = steps, 64, 3e-3, 10, 0, 50
    return vlkit.load(train(cfg, progress=False))


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_tiny_clip_learns_colour(tiny_cfg, stem):
    """~15 s: 8-way colour, read off the 32-way zero-shot prediction, far above chance (1/8)."""
    model = _train_tiny_clip(tiny_cfg, stem, steps=120)
    images, labels = _held_out(tiny_cfg.data.image_size)
    pred = model.classify(
        images, [with_article(c) for c in ZERO_SHOT_CLASSES], templates=["{}"]
    ).probs.argmax(-1)
    colour_acc = float((pred // 4 == labels // 4).mean())
    assert colour_acc >= 0.9, f"{stem} stem: colour zero-shot {colour_acc:.2f} (chance 0.125)"


def test_tiny_vlm_answers_colour_questions_from_the_image(tiny_vlm_cfg):
    """A tiny LLaVA-style model (conv-stem ViT → MLP → 2-layer Llama) trained for ~30 s on VQA
    answers held-out colour questions far above the question-only prior (the majority colour
    per question wording, fitted on the held-out questions themselves)."""
    from vlkit.data.scenes import Scenes, question_template
    from vlkit.metrics import question_only_prior

    cfg = tiny_vlm_cfg
    cfg.model.vision_stem, cfg.model.vision_width, cfg.model.vision_layers = "conv", 32, 2
    cfg.vlm.lm_width, cfg.vlm.tasks = 32, ["vqa"]
    cfg.data.sources = [SourceConfig(kind="scenes", max_objects=1)]
    t = cfg.train
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every, t.log_every = STEPS_VLM, 32, 3e-3, 10, 0, 50
    model = vlkit.load(train(cfg, progress=False))
    world = Scenes(ScenesConfig(cfg.data.image_size, 1, 1, seed=1_000_003))
    qa = [(s.image, q) for s in (world.scene(i) for i in range(96)) for q in s.qa if q.type == "color"]
    answers = model.answer([image for image, _ in qa], [q.question for _, q in qa])
    accuracy = float(np.mean([a.strip().lower() == q.answer for a, (_, q) in zip(answers, qa)]))
    prior = float(
        np.mean(
            question_only_prior([question_template(q.question) for _, q in qa], [[q.answer] for _, q in qa])
        )
    )
    assert accuracy >= prior + 0.4, f"colour VQA {accuracy:.2f} vs question-only prior {prior:.2f}"
