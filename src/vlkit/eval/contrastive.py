"""Evaluation of dual encoders: zero-shot classification, retrieval, Winoground-style binding.

The same functions run during training (on held-out scenes) and in `vlkit eval`; every score
comes from `vlkit.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from vlkit import metrics
from vlkit.api import ContrastiveModel
from vlkit.config import Config
from vlkit.data.images import ImageError
from vlkit.data.scenes import ZERO_SHOT_CLASSES, Scenes, ScenesConfig, SingleObjectScenes
from vlkit.data.scenes_text import with_article


def zero_shot(
    cm: ContrastiveModel,
    images: Sequence,
    labels: np.ndarray,
    classes: Sequence[str],
    templates: Sequence[str],
) -> tuple[dict[str, float], np.ndarray]:
    """→ (top1/top5/mean_per_class_recall, logits float[N, C])."""
    result = cm.classify(images, classes, templates)
    return metrics.zero_shot_accuracy(result.logits, labels, ks=(1, min(5, len(classes)))), result.logits


def retrieval(cm: ContrastiveModel, images: Sequence, captions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Every caption of every image is a query; an image may have several captions."""
    texts = [c for caps in captions for c in caps]
    image_of_text = np.array([i for i, caps in enumerate(captions) for _ in caps])
    similarity = cm.embed_images(images) @ cm.embed_texts(texts).T  # (N_images, N_texts)
    return metrics.retrieval_recall(similarity, image_of_text, ks=(1, 5, 10))


def winoground(cm: ContrastiveModel, pairs: Sequence[tuple]) -> dict[str, float]:
    """pairs: (scene0, scene1) twins with colours swapped; c_k = scene_k's canonical caption."""
    images = cm.embed_images([s.image for pair in pairs for s in pair]).reshape(len(pairs), 2, -1)
    texts = cm.embed_texts([s.captions[0] for pair in pairs for s in pair]).reshape(len(pairs), 2, -1)
    s = np.einsum("nce,nie->nci", texts, images)  # (N, caption, image)
    scores = metrics.winoground_scores(s[:, 0, 0], s[:, 0, 1], s[:, 1, 0], s[:, 1, 1])
    return {f"wino_{k}": v for k, v in scores.items()}


@lru_cache(maxsize=4)
def _held_out_scenes(image_size: int, min_objects: int, max_objects: int, seed: int, n: int):
    """The held-out evaluation sets, generated once per setting (a few hundred ms)."""
    cfg = ScenesConfig(image_size=image_size, seed=seed)
    single = SingleObjectScenes(cfg, per_class=max(1, n // len(ZERO_SHOT_CLASSES)))
    zs = [single[i] for i in range(len(single))]
    world = Scenes(ScenesConfig(image_size, min_objects, max_objects, seed + 1))
    scenes = [world.scene(i) for i in range(n)]
    pairs = [world.swap_pair(i) for i in range(max(1, n // 4))]
    return zs, scenes, pairs


def evaluate_scenes(model: torch.nn.Module | ContrastiveModel, cfg: Config) -> dict[str, float]:
    """Held-out scenes: 32-way colour×shape zero-shot, retrieval R@k, colour-swap binding."""
    cm = model if isinstance(model, ContrastiveModel) else ContrastiveModel(model, cfg)
    d, e = cfg.data, cfg.eval
    zs, scenes, pairs = _held_out_scenes(d.image_size, d.min_objects, d.max_objects, e.seed, e.num_images)
    labels = np.array([s["label"] for s in zs])
    classes = [with_article(c) for c in ZERO_SHOT_CLASSES]  # "an orange star", as captions say it
    scores, _ = zero_shot(cm, [s["image"] for s in zs], labels, classes, e.templates)
    scores |= retrieval(cm, [s.image for s in scenes], [s.captions for s in scenes])
    scores |= winoground(cm, pairs)
    return scores


def evaluate_named(cm: ContrastiveModel, data: str, limit: int | None, templates: Sequence[str]) -> dict:
    """A named or user data set: zero-shot over its classes when it has labels, and retrieval."""
    from vlkit.data import open_named

    dataset = open_named(data, split="test")
    images, captions, labels, unreadable = collect(dataset, limit)
    if not images:
        raise ValueError(f"eval data {data!r}: no readable samples")
    scores: dict[str, float] = {}
    classes = getattr(dataset, "classes", None)
    if classes and all(label is not None for label in labels):
        scores |= zero_shot(cm, images, np.array(labels), classes, templates)[0]
    return scores | retrieval(cm, images, captions) | {"samples": len(images), "unreadable": unreadable}


def evaluate(model: torch.nn.Module | ContrastiveModel, cfg: Config) -> dict[str, float]:
    """What training-time evaluation and `vlkit eval` run: `cfg.eval.data` decides the set."""
    cm = model if isinstance(model, ContrastiveModel) else ContrastiveModel(model, cfg)
    if cfg.eval.data == "scenes":
        return evaluate_scenes(cm, cfg)
    return evaluate_named(cm, cfg.eval.data, cfg.eval.num_images, cfg.eval.templates)


def collect(dataset, limit: int | None = None) -> tuple[list[np.ndarray], list[list[str]], list, int]:
    """Reads up to `limit` samples → (images, captions, labels or None, unreadable count)."""
    images, captions, labels, bad = [], [], [], 0
    for i in range(min(len(dataset), limit or len(dataset))):
        try:
            sample = dataset[i]
        except ImageError:
            bad += 1
            continue
        images.append(sample["image"])
        captions.append(sample["captions"])
        labels.append(sample.get("label"))
    return images, captions, labels, bad
