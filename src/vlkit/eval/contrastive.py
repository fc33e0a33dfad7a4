"""Dual-encoder tasks: zero-shot classification, retrieval, Winoground, grounding by crops,
Hateful Memes by two prompts.

The model is anything with `embed_images(images) -> float[N, E]` and `embed_texts(texts) ->
float[N, E]` (unit vectors) and `label_embeddings(labels, templates) -> float[C, E]`: a vlkit
`ContrastiveModel` or a transformers CLIP / SigLIP folder (`vlkit.models.hf_models`). Every score
comes from `vlkit.metrics`; training-time evaluation (`vlkit.eval.during_training`) runs the same
functions through the harness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from vlkit import metrics
from vlkit.eval.embedded import as_arrays
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import RETRIEVAL_CHANCE, TaskResult, hateful_memes_result

CONTRASTIVE_TASKS = ("zero-shot", "retrieval", "winoground", "grounding", "hateful-memes")
HATEFUL_PROMPTS = ('a meme that says "{}".', 'a hateful meme that says "{}".')  # (benign, hateful)


class ImageFeatures:
    """Image embeddings computed in batches, each image once per run (keyed by path or example id)."""

    def __init__(self, model, batch_size: int = 32, progress: bool = False):
        self.model, self.batch_size, self.progress = model, batch_size, progress
        self.store: dict[str, np.ndarray] = {}

    def __call__(self, images: Sequence, keys: Sequence[str], desc: str = "images") -> np.ndarray:
        """→ float32[N, E] in the order of `images`."""
        todo = {}
        for key, image in zip(keys, images):
            if key not in self.store:
                todo.setdefault(key, image)
        items = list(todo.items())
        starts = range(0, len(items), self.batch_size)
        for start in tqdm(starts, desc=desc, disable=not self.progress or not items, leave=False):
            chunk = items[start : start + self.batch_size]
            emb = self.model.embed_images(as_arrays([im for _, im in chunk]))
            self.store.update({k: e for (k, _), e in zip(chunk, emb)})
        return np.stack([self.store[k] for k in keys])


def image_key(bench: Benchmark, example: dict, image, slot: int = 0) -> str:
    return image if isinstance(image, str) else f"{bench.name}:{example['id']}:{slot}"


def zero_shot(model, bench: Benchmark, features: ImageFeatures, templates: Sequence[str]) -> TaskResult:
    """Top-1/5 and mean per-class recall; per-class recall breakdown and a confusion matrix."""
    ex = bench.examples
    classes = bench.classes or []
    images = features([e["image"] for e in ex], [image_key(bench, e, e["image"]) for e in ex], "zero-shot")
    logits = images @ model.label_embeddings(classes, templates).T  # (N, C)
    labels = np.array([e["label"] for e in ex])
    scores = metrics.zero_shot_accuracy(logits, labels, ks=(1, min(5, len(classes))))
    predicted = logits.argmax(1)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {classes[c]: float(confusion[c, c] / confusion[c].sum()) for c in np.unique(labels)}
    preds = [
        {
            "id": e["id"],
            "label": classes[e["label"]],
            "predicted": classes[p],
            "correct": bool(p == e["label"]),
        }
        for e, p in zip(ex, predicted)
    ]
    return TaskResult(
        "zero-shot",
        bench.name,
        scores,
        {"recall by class": per_class},
        preds,
        confusion,
        classes,
        bench.split,
        len(ex),
    )


def retrieval(model, bench: Benchmark, features: ImageFeatures) -> TaskResult:
    """Every caption of every image is a query; an image may have several captions."""
    ex = bench.examples
    texts = [c for e in ex for c in e["captions"]]
    image_of_text = np.array([i for i, e in enumerate(ex) for _ in e["captions"]])
    images = features([e["image"] for e in ex], [image_key(bench, e, e["image"]) for e in ex], "retrieval")
    similarity = images @ model.embed_texts(texts).T  # (N_images, N_texts)
    captions = [e["captions"] for e in ex]
    scores = metrics.retrieval_recall(similarity, image_of_text, ks=(1, 5, 10))
    # baselines: what a random ranking scores, and queries with several right images (a caption
    # that is also another image's), with recall counting any such image as a hit
    scores |= metrics.t2i_recall_any(similarity, captions, ks=(1, 5, 10))
    scores["t2i_shared_queries"] = float(np.mean(metrics.shared_queries(captions)))
    chance = metrics.retrieval_chance([len(c) for c in captions], ks=(1, 5, 10))
    best = similarity.argmax(0)
    preds = [
        {"id": ex[i]["id"], "text": t, "top_image": ex[b]["id"], "correct": bool(b == i)}
        for t, i, b in zip(texts, image_of_text, best)
    ]
    breakdowns = {RETRIEVAL_CHANCE: chance}
    return TaskResult("retrieval", bench.name, scores, breakdowns, preds, split=bench.split, samples=len(ex))


def winoground(model, bench: Benchmark, features: ImageFeatures) -> TaskResult:
    ex = bench.examples
    images = [im for e in ex for im in e["images"]]
    keys = [image_key(bench, e, im, slot) for e in ex for slot, im in enumerate(e["images"])]
    img = features(images, keys, "winoground").reshape(len(ex), 2, -1)
    txt = model.embed_texts([c for e in ex for c in e["captions"]]).reshape(len(ex), 2, -1)
    s = np.einsum("nce,nie->nci", txt, img)  # (N, caption, image)
    scores = {
        f"wino_{k}": v
        for k, v in metrics.winoground_scores(s[:, 0, 0], s[:, 0, 1], s[:, 1, 0], s[:, 1, 1]).items()
    }
    by_tag: dict[str, list[int]] = {}
    for n, e in enumerate(ex):
        by_tag.setdefault(e.get("tag") or "all", []).append(n)
    group = {
        tag: metrics.winoground_scores(s[idx, 0, 0], s[idx, 0, 1], s[idx, 1, 0], s[idx, 1, 1])["group"]
        for tag, idx in by_tag.items()
    }
    preds = [{"id": e["id"], "scores": s[n].round(5).tolist()} for n, e in enumerate(ex)]
    return TaskResult("winoground", bench.name, scores, {"group score by tag": group}, preds, samples=len(ex))


def grounding(model, bench: Benchmark, features: ImageFeatures) -> TaskResult:
    """Picks, among the candidate boxes, the crop that best matches the phrase (a dual encoder
    has no box head); Acc@0.5 of the picked box. Crops are embedded in batches across examples."""
    ex = bench.examples
    phrases = model.embed_texts([e["phrase"] for e in ex])  # (N, E)
    picked = []
    starts = range(0, len(ex), features.batch_size)
    for start in tqdm(starts, desc="grounding", disable=not features.progress, leave=False):
        chunk = ex[start : start + features.batch_size]
        crops, owner = [], []
        for n, e in enumerate(chunk):
            image = as_arrays([e["image"]])[0]
            crops += [_crop(image, box) for box in e["candidates"]]
            owner += [n] * len(e["candidates"])
        sims = np.einsum("ke,ke->k", model.embed_images(crops), phrases[start + np.array(owner)])  # (K,)
        owner = np.array(owner)
        for n, e in enumerate(chunk):
            picked.append(e["candidates"][int(sims[owner == n].argmax())])
    preds = [
        {"id": e["id"], "phrase": e["phrase"], "box": e["box"], "predicted": p} for e, p in zip(ex, picked)
    ]
    scores = {"grounding_acc@0.5": metrics.grounding_accuracy(picked, [e["box"] for e in ex])}
    # what picking a candidate at random scores: with few candidates per image it is far above 0
    chance = metrics.random_pick_accuracy([e["candidates"] for e in ex], [e["box"] for e in ex])
    versus = {
        "grounding_acc@0.5 vs a random pick": {
            "model": scores["grounding_acc@0.5"],
            "random pick": float(chance),
        }
    }
    return TaskResult("grounding", bench.name, scores, versus, preds, split=bench.split, samples=len(ex))


def _crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, max(x1 + 1, int(np.ceil(box[2])))), min(h, max(y1 + 1, int(np.ceil(box[3]))))
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def hateful_memes(model, bench: Benchmark, features: ImageFeatures) -> TaskResult:
    """Zero-shot with two prompts holding the meme's text: score = sim(hateful) - sim(benign)."""
    ex = bench.examples
    img = features([e["image"] for e in ex], [image_key(bench, e, e["image"]) for e in ex], "hateful-memes")
    txt = model.embed_texts([p.format(e["text"]) for e in ex for p in HATEFUL_PROMPTS]).reshape(
        len(ex), 2, -1
    )
    sims = np.einsum("ne,npe->np", img, txt)  # (N, 2)
    score = sims[:, 1] - sims[:, 0]
    return hateful_memes_result(bench, score)
