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
