"""Tests that fail when learning breaks: tiny models trained for seconds must beat chance by far.

Each trains a tiny model with the real loop on generated scenes and scores it on held-out
scenes of another world seed; the thresholds sit far above chance and far below what the runs
reach, so they catch a broken loss, tower, tokenizer, data path or optimizer, not noise.
"""

import re

import numpy as np
import pytest

import vlkit
from vlkit.config import SourceConfig
from vlkit.data.scenes import COLOR_NAMES, ZERO_SHOT_CLASSES, Scenes, ScenesConfig, SingleObjectScenes
from vlkit.data.scenes_text import with_article
from vlkit.train.loop import train


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


def _train_tiny_vlm(tiny_vlm_cfg, steps: int):
    """A from-scratch ViT → MLP connector → 2-layer Llama, trained on single-object captions."""
    cfg = tiny_vlm_cfg
    m, v, t = cfg.model, cfg.vlm, cfg.train
    m.vision_width, m.vision_layers, m.vision_heads = 32, 2, 2
    # a 1024-token BPE keeps colour words whole; at 300 they are spelled in pieces
    v.lm_width, v.lm_layers, v.lm_heads, v.lm_vocab_size, v.max_length = 64, 2, 2, 1024, 100
    v.tasks = ["caption"]
    cfg.data.sources = [SourceConfig(kind="scenes", max_objects=1, caption_styles=1)]
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every, t.log_every = steps, 32, 3e-3, 10, 0, 100
    return vlkit.load(train(cfg, progress=False))


def test_tiny_vlm_learns_to_name_the_colour(tiny_vlm_cfg):
    """~30 s: the caption of a held-out single-object scene names its colour, far above chance (1/8).

    Captions, not short answers, for speed: a from-scratch LM answers colour questions from the
    question alone for ~250 steps before it reads the image (benchmarks/vlm_plateau.py); captions
    start climbing about as soon, and their sequences are ~5x shorter than six question turns.
    """
    model = _train_tiny_vlm(tiny_vlm_cfg, steps=600)
    world = Scenes(ScenesConfig(tiny_vlm_cfg.data.image_size, 1, 1, seed=1_000_003))
    scenes = [world.scene(i) for i in range(64)]
    captions = model.caption([s.image for s in scenes])
    named = [re.search(rf"\b{s.objects[0].color}\b", c) is not None for s, c in zip(scenes, captions)]
    colour_acc = sum(named) / len(named)
    other = [sum(re.search(rf"\b{c}\b", cap) is not None for c in COLOR_NAMES) for cap in captions]
    assert all(n == 1 for n in other), f"captions should name exactly one colour: {captions[:8]}"
    assert colour_acc >= 0.5, f"colour named in {colour_acc:.2f} of captions (chance 0.125): {captions[:8]}"


def test_tiny_vlm_learns_where_the_named_object_is(tiny_vlm_cfg):
    """~25 s: `vlm.grounding_weight`'s head, read at the word that names the object in a held-out
    caption ("a red circle"), names the 3 x 3 cell it lies in far above the most common cell
    (0.23 of these 256; the run reaches ~0.52)."""
    import torch

    from vlkit.train.generative import IGNORE, GenerativeObjective

    tiny_vlm_cfg.vlm.grounding_weight = 1.0
    model = _train_tiny_vlm(tiny_vlm_cfg, steps=300).model.eval()
    world = Scenes(ScenesConfig(tiny_vlm_cfg.data.image_size, 1, 1, seed=1_000_003, caption_styles=1))
    batch = GenerativeObjective(model).collate([(i, world[i]) for i in range(256)])
    with torch.no_grad():
        accuracy = float(model(**batch).grounding_accuracy)
    cells = batch["grounding_labels"][batch["grounding_labels"] != IGNORE]
    majority = float(cells.bincount().max() / len(cells))
    assert len(cells) >= 256 and accuracy >= majority + 0.15, (
        f"cell named {accuracy:.2f}, majority {majority:.2f}"
    )


def test_tiny_fusion_encoder_learns_to_fill_in_the_colour(tmp_path):
    """~30 s: a from-scratch ViLT (ITM + MLM) on single-object scenes fills "a [MASK] circle" of a
    held-out scene with its colour far above chance (1/8; the run reaches ~0.45). MLM, not ITM:
    ITM's loss sits at ln 2 for the first few hundred steps at any size (benchmarks/README.md,
    "fusion.py"), MLM reads the image from the start."""
    from tests.conftest import make_tiny_fusion_cfg
    from vlkit.data.scenes import SHAPES
    from vlkit.eval.fusion import fill_in_the_blank

    cfg = make_tiny_fusion_cfg()
    cfg.train.out_dir = str(tmp_path / "fusion-run")
    m, t = cfg.model, cfg.train
    m.width, m.layers, m.heads = 32, 2, 2
    cfg.data.sources = [SourceConfig(kind="scenes", max_objects=1, caption_styles=1)]
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every, t.log_every = 300, 32, 1e-3, 10, 0, 100
    model = vlkit.load(train(cfg, progress=False))
    world = Scenes(ScenesConfig(cfg.data.image_size, 1, 1, seed=1_000_003, caption_styles=1))
    # every colour with every shape, twice
    singles = [world.single(i, COLOR_NAMES[i % 8], SHAPES[(i + i // 8) % 4]) for i in range(64)]
    colour = fill_in_the_blank(model, singles)["mlm_colour_accuracy"]
    assert colour >= 0.3, f"masked colour filled in right {colour:.2f} of the time (chance 0.125)"


def test_tiny_reader_vlm_answers_reworded_questions_with_the_kind_asked(tiny_vlm_cfg):
    """~50 s: gpt-tiny-reader (questions read by the frozen MiniLM), trained on colour and shape
    questions in the training wordings, answers their hand-written held-out rewordings ("Tell me
    the colour of the star.", "Which kind of shape is coloured red?") with a word of the kind
    asked, and the colour right far above chance (1/8). The run: every answer of the kind asked,
    colour right 0.75."""
    from vlkit.data.scenes import SHAPES
    from vlkit.eval.paraphrase import paraphrase

    cfg = tiny_vlm_cfg
    cfg.vlm.language_model, cfg.vlm.logits_at_answers, cfg.vlm.tasks = "gpt-tiny-reader", True, ["vqa"]
    cfg.data.sources = [
        SourceConfig(
            kind="scenes", max_objects=1, question_wordings="varied", question_types=["color", "shape"]
        )
    ]
    m, v, t = cfg.model, cfg.vlm, cfg.train
    m.vision_width, m.vision_layers, m.vision_heads = 32, 2, 2
    v.lm_width, v.lm_layers, v.lm_heads, v.max_length = 64, 2, 2, 100
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every, t.log_every = 450, 32, 3e-3, 10, 0, 100
    model = vlkit.load(train(cfg, progress=False))
    world = Scenes(ScenesConfig(cfg.data.image_size, 1, 1, seed=1_000_003))
    scenes = [world.scene(i) for i in range(64)]
    objects = [s.objects[0] for s in scenes]
    colour_q = [paraphrase(f"What color is the {o.shape}?") for o in objects]
    shape_q = [paraphrase(f"What shape is the {o.color} object?") for o in objects]
    assert not set(colour_q + shape_q) & {f"What color is the {s}?" for s in SHAPES}  # reworded
    images = [s.image for s in scenes]
    colours = model.answer(images, colour_q)
    shapes = model.answer(images, shape_q)
    kind = [a in COLOR_NAMES for a in colours] + [a in SHAPES for a in shapes]
    right = sum(a == o.color for a, o in zip(colours, objects)) / len(objects)
    assert sum(kind) / len(kind) >= 0.9, f"answers of the kind asked: {colours[:6]} {shapes[:6]}"
    assert right >= 0.4, f"colour right {right:.2f} (chance 0.125): {colours[:8]}"
