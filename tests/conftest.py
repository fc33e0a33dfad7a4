"""Shared fixtures: a tiny config and one tiny trained run reused across test modules."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import io  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from vlkit.config import Config, FusionConfig, SourceConfig, TrainingFreeConfig  # noqa: E402

_TOWERS = [  # tiny CLIP towers
    "model.vision_width=16",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "model.image_size=32",
    "model.text_width=16",
    "model.text_layers=1",
    "model.text_heads=2",
    "model.embed_dim=8",
    "model.vocab_size=64",
    "data.image_size=32",
]
_LM = ["vlm.lm_width=16", "vlm.lm_layers=1", "vlm.lm_heads=2", "vlm.lm_vocab_size=300"]  # a tiny gpt-tiny
_RUN = ["train.batch_size=8", "train.warmup_steps=1", "train.eval_every=0"]


@dataclass(frozen=True)
class TinyOverrides:
    """`--set` overrides that shrink the tour and the recipes to test size, as the CLI takes them."""

    tour: tuple[str, ...] = (*_TOWERS, *_RUN, "eval.num_images=32", "train.steps=3")  # the tour's CLIP
    tour_generative: tuple[str, ...] = (  # the tour's VLM (its grounding head reads the tiny LM's only layer)
        *_LM,
        "vlm.grounding_layer=-1",
        "train.batch_size=8",
        "train.eval_every=0",
        "eval.num_images=4",
        "train.steps=2",
    )
    train: tuple[str, ...] = (
        *_TOWERS,
        *_LM,
        *_RUN,
        "eval.num_images=32",
        "train.steps=2",
        "train.save_every=2",
    )


@pytest.fixture(scope="session")
def tiny_overrides() -> TinyOverrides:
    """The tiny overrides every test that runs the tour or `vlkit train` on a recipe uses."""
    return TinyOverrides()


@pytest.fixture
def make_unreadable():
    """folder → [a truncated PNG (a download cut short), a text file named .jpg], written there."""

    def write(folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(noise).save(png, format="PNG")
        truncated, text = folder / "truncated.png", folder / "notes.jpg"
        truncated.write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
        text.write_text("not an image, whatever its name says")
        return [truncated, text]

    return write


def make_tiny_cfg() -> Config:
    """A model and a training run small enough for a test: 4 steps in about a second."""
    cfg = Config()
    # The plain ViT patch stem (transformers-exportable) and the whole scenes world, as before the
    # CLIP defaults moved to a conv stem and a single-object mix (both covered in test_learning.py).
    cfg.data.sources = [SourceConfig()]
    m = cfg.model
    m.vision_stem = "patch"
    m.vision_width, m.vision_layers, m.vision_heads = 16, 1, 2
    m.patch_size, m.image_size = 8, 32
    m.text_width, m.text_layers, m.text_heads = 16, 1, 2
    # 32 tokens: the tiny 64-token BPE spells "This is a photo of {}." letter by letter (~21 tokens),
    # and the transformers pipeline never truncates prompts (it drops `tokenizer_kwargs`).
    m.embed_dim, m.vocab_size, m.max_text_length = 8, 64, 32
    cfg.data.image_size = 32
    t = cfg.train
    t.steps, t.batch_size, t.log_every, t.eval_every, t.save_every, t.warmup_steps = 4, 8, 1, 0, 2, 1
    cfg.eval.num_images = 32
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path) -> Config:
    cfg = make_tiny_cfg()
    cfg.train.out_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder trained once per session with the tiny config (checkpoints at steps 2 and 4)."""
    from vlkit.train.loop import train

    cfg = make_tiny_cfg()
    cfg.train.out_dir = str(tmp_path_factory.mktemp("tiny") / "run")
    return train(cfg, progress=False)


def make_tiny_vlm_cfg(connector: str = "mlp2x_gelu") -> Config:
    """A generative VLM small enough for a test: tiny ViT → connector → 2-layer gpt-tiny."""
    cfg = make_tiny_cfg()
    cfg.kind = "generative"
    v = cfg.vlm
    v.lm_width, v.lm_layers, v.lm_heads, v.lm_vocab_size, v.max_length = 16, 2, 2, 300, 160
    v.connector, v.connector_tokens, v.connector_layers, v.virtual_tokens = connector, 4, 1, 4
    return cfg


def make_tiny_detector_cfg() -> Config:
    """An open-vocabulary detector on the tiny dual encoder, trained on scenes with boxes."""
    cfg = make_tiny_cfg()
    cfg.kind = "detector"
    cfg.data.sources = [SourceConfig(kind="scenes-boxes")]
    cfg.detector.negatives = 3
    return cfg


def make_tiny_segmenter_cfg() -> Config:
    """A text-prompted segmenter on the tiny dual encoder (one layer, read by a one-layer
    decoder), trained on scenes with masks."""
    cfg = make_tiny_cfg()
    cfg.kind = "segmenter"
    cfg.data.sources = [SourceConfig(kind="scenes-masks")]
    s = cfg.segmenter
    s.extract_layers, s.reduce_dim, s.decoder_heads, s.decoder_intermediate = [0], 8, 2, 16
    return cfg


def make_tiny_training_free_cfg(method: str = "asif") -> Config:
    """A training-free model over the real pretrained encoders (nothing smaller is pretrained):
    8 anchors, k=4, the tiny run's data and evaluation sizes."""
    cfg = make_tiny_cfg()
    cfg.kind = "training-free"
    cfg.model = TrainingFreeConfig(method=method, anchors=8, k=4, p=2.0, max_text_length=32)
    return cfg


def make_tiny_fusion_cfg(contrastive_weight: float = 0.0) -> Config:
    """A fusion encoder (ViLT) small enough for a test: one 16-wide layer over 16 patches + words;
    contrastive_weight > 0: the FLAVA-style variant."""
    cfg = make_tiny_cfg()
    cfg.kind = "fusion"
    cfg.model = FusionConfig(
        image_size=32, patch_size=8, width=16, layers=1, heads=2, vocab_size=256, max_text_length=32,
        embed_dim=8, contrastive_weight=contrastive_weight,
    )  # fmt: skip
    return cfg


# model kind → its tiny config: tests that sweep `vlkit.models.kinds.KINDS` take each kind's from
# here (test_kinds.py fails for a kind that has none).
TINY_CONFIGS = {
    "contrastive": make_tiny_cfg,
    "generative": make_tiny_vlm_cfg,
    "detector": make_tiny_detector_cfg,
    "segmenter": make_tiny_segmenter_cfg,
    "training-free": make_tiny_training_free_cfg,
    "fusion": make_tiny_fusion_cfg,
}


@pytest.fixture
def tiny_vlm_cfg(tmp_path) -> Config:
    cfg = make_tiny_vlm_cfg()
    cfg.train.out_dir = str(tmp_path / "vlm-run")
    return cfg


@pytest.fixture(scope="session")
def tiny_vlm_run(tmp_path_factory):
    """A generative run (mlp connector) trained once per session with the tiny config."""
    from vlkit.train.loop import train

    cfg = make_tiny_vlm_cfg()
    cfg.train.out_dir = str(tmp_path_factory.mktemp("tiny-vlm") / "run")
    return train(cfg, progress=False)
