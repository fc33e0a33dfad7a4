"""Fusion-encoder tasks: every score is the model's image-text matching (ITM) logit of a pair,
`model.match(images, texts)` (a vlkit `FusionModel`).

    winoground  the four (caption, image) pairs of each example; text / image / group scores
                (`masked_winoground`: the same pairs scored by MLM, each caption's colours blanked)
    retrieval   every (image, caption) pair of a held-out set scored (N × M forward passes: keep
                sets small), ranked per query; the same recall@k as the dual encoders'

    matching_by_kind  ITM accuracy per kind of pair (true caption, colours swapped, a shape changed,
                another image's caption) and per object count: which of them the model tells apart

Hateful Memes is the exception: a fine-tuned model's classifier over the fused [CLS] scores each
(meme image, meme text) pair, `model.classify(images, texts)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlkit import metrics
from vlkit.data.scenes import COLOR_NAMES, SHAPES
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import RETRIEVAL_CHANCE, TaskResult, hateful_memes_result


def winoground_result(s: np.ndarray, bench: Benchmark) -> TaskResult:
    """s float[N, caption, image] of the benchmark's examples → text / image / group scores."""
    scores = {
        f"wino_{k}": v
        for k, v in metrics.winoground_scores(s[:, 0, 0], s[:, 0, 1], s[:, 1, 0], s[:, 1, 1]).items()
    }
    preds = [{"id": e["id"], "scores": s[n].round(5).tolist()} for n, e in enumerate(bench.examples)]
    return TaskResult("winoground", bench.name, scores, {}, preds, samples=len(bench.examples))


def winoground(model, bench: Benchmark, batch_size: int = 64, dual=None) -> TaskResult:
    """s[n, c, i] = ITM(caption c, image i) of example n; the same metrics as a dual encoder's.
    With `dual` (a dual encoder: embed_images / embed_texts / scale), each pair's score is its ITM
    logit + the dual encoder's logit (cosine x its scale)."""
    ex = bench.examples
    images = [e["images"][i] for e in ex for _c in range(2) for i in range(2)]
    texts = [e["captions"][c] for e in ex for c in range(2) for _i in range(2)]
    s = model.match(images, texts, batch_size).reshape(len(ex), 2, 2)  # (N, caption, image)
    if dual is not None:  # each image and caption embedded once, not once per pair
        img = dual.embed_images([im for e in ex for im in e["images"]]).reshape(len(ex), 2, -1)
        txt = dual.embed_texts([c for e in ex for c in e["captions"]]).reshape(len(ex), 2, -1)
        s = s + dual.scale() * np.einsum("nce,nie->nci", txt, img)
    return winoground_result(s, bench)


def blank_out(text: str, words: Sequence[str], mask: str) -> tuple[str, list[str]]:
    """`text` with each of `words` it contains (whole words, any case, punctuation kept) replaced
    by `mask` → (the blanked text, the words blanked in order)."""
    out, found = [], []
    for token in text.split(" "):
        core = token.strip(".,;:!?")
        if core.lower() in words:
            found.append(core.lower())
            token = token.replace(core, mask)
        out.append(token)
    return " ".join(out), found


def masked_winoground(model, bench: Benchmark, words: Sequence[str], batch_size: int = 64) -> TaskResult:
    """Winoground scored by MLM: each caption with every one of `words` (e.g. the colour names)
    blanked, which leaves both captions of a colour swap the same text; s[n, c, i] = the summed
    log-probability (over `words`) of caption c's own word at each blank, given image i. Only a
    model that reads each object's colour off the image beats chance; with a single word blanked,
    "the colour the text does not name" would answer from the text alone."""
    ex = bench.examples
    images = [e["images"][i] for e in ex for _c in range(2) for i in range(2)]
    blanked = [
        blank_out(e["captions"][c], words, model.MASK) for e in ex for c in range(2) for _i in range(2)
    ]
    s = []
    for start in range(0, len(images), batch_size):
        part = blanked[start : start + batch_size]
        probs = model.blank_log_probs(images[start : start + batch_size], [t for t, _ in part], words)
        for (text, found), lp in zip(part, probs):
            if len(found) != len(lp):
                raise ValueError(
                    f"masked winoground: {text!r} has {len(lp)} blanks for {found}: a word is not one token"
                )
            s.append(sum(float(lp[k, list(words).index(w)]) for k, w in enumerate(found)))
    s = np.array(s).reshape(len(ex), 2, 2)  # (N, caption, image)
    return winoground_result(s, bench)


def hateful_memes(model, bench: Benchmark, batch_size: int = 64) -> TaskResult:
    """AUROC and accuracy of the classifier's logit (> 0: label 1) beside the majority class."""
    ex = bench.examples
    score = model.classify([e["image"] for e in ex], [e["text"] for e in ex], batch_size)
    return hateful_memes_result(bench, score)


def itm_similarity(model, images: list, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """ITM logits of every (image, text) pair → float32[N_images, N_texts]."""
    pairs_images = [im for im in images for _ in texts]
    pairs_texts = [t for _ in images for t in texts]
    return model.match(pairs_images, pairs_texts, batch_size).reshape(len(images), len(texts))


def retrieval(model, bench: Benchmark, batch_size: int = 64) -> TaskResult:
    """Every caption of every image is a query, every image a candidate: recall@k by ITM."""
    ex = bench.examples
    texts = [c for e in ex for c in e["captions"]]
    image_of_text = np.array([i for i, e in enumerate(ex) for _ in e["captions"]])
    similarity = itm_similarity(model, [e["image"] for e in ex], texts, batch_size)  # (N_images, N_texts)
    captions = [e["captions"] for e in ex]
    scores = metrics.retrieval_recall(similarity, image_of_text, ks=(1, 5, 10))
    scores |= metrics.t2i_recall_any(similarity, captions, ks=(1, 5, 10))
    chance = metrics.retrieval_chance([len(c) for c in captions], ks=(1, 5, 10))
    best = similarity.argmax(0)
    preds = [
        {"id": ex[i]["id"], "text": t, "top_image": ex[b]["id"], "correct": bool(b == i)}
        for t, i, b in zip(texts, image_of_text, best)
    ]
    return TaskResult(
        "retrieval", bench.name, scores, {RETRIEVAL_CHANCE: chance}, preds, split=bench.split, samples=len(ex)
    )


def rerank_similarity(
    similarity: np.ndarray, itm: np.ndarray, top: np.ndarray, weight: float = 0.0
) -> np.ndarray:
    """A dual encoder's similarity float[N_images, N_texts] with each text's top-k images
    (`top` int[k, N_texts]) re-ordered by their ITM logits `itm` float[k, N_texts] plus `weight` x
    their similarity, ahead of every other image (ALBEF / BLIP: the dual encoder shortlists, the
    fusion encoder decides; BLIP ranks by ITM + cosine, weight 1)."""
    out = similarity.astype(np.float64)
    score = itm + weight * np.take_along_axis(out, top, axis=0)
    above = out.max() - out.min() + 1.0 - score.min()  # every shortlisted score above every other
    np.put_along_axis(out, top, score + above + out.max(), axis=0)
    return out


def rerank_retrieval(dual, fused, bench: Benchmark, k: int = 10, batch_size: int = 64) -> TaskResult:
    """Text → image recall@k of `dual` (a dual encoder: embed_images / embed_texts / scale) alone
    and with its top-`k` images per caption re-ranked by `fused`'s ITM (k × N_texts pairs scored):
    by the ITM logit alone, by ITM + cosine (BLIP's retrieval score) and by ITM + the dual
    encoder's own logit (cosine x its scale: two log-odds added, neither model's scale retuned)."""
    ex = bench.examples
    texts = [c for e in ex for c in e["captions"]]
    image_of_text = np.array([i for i, e in enumerate(ex) for _ in e["captions"]])
    images = [e["image"] for e in ex]
    similarity = dual.embed_images(images) @ dual.embed_texts(texts).T  # (N_images, N_texts)
    k = min(k, len(ex))
    top = np.argsort(-similarity, axis=0, kind="stable")[:k]  # (k, N_texts)
    itm = fused.match([images[i] for i in top.T.ravel()], [t for t in texts for _ in range(k)], batch_size)
    itm = itm.reshape(len(texts), k).T
    ks = (1, 5, 10)
    scores = {
        key: v for key, v in metrics.retrieval_recall(similarity, image_of_text, ks).items() if "t2i" in key
    }
    for suffix, weight in (("", 0.0), (" itm+cosine", 1.0), (" itm+logit", dual.scale())):
        reranked = rerank_similarity(similarity, itm, top, weight)
        after = metrics.retrieval_recall(reranked, image_of_text, ks)
        scores |= {f"{key} reranked top-{k}{suffix}": v for key, v in after.items() if "t2i" in key}
    return TaskResult("retrieval", bench.name, scores, {}, [], split=bench.split, samples=len(ex))


def fill_in_the_blank(model, scenes: list, batch_size: int = 64) -> dict[str, float]:
    """MLM as a VQA-style probe on one-object scenes (`Scenes.single`): "a [MASK] circle" → its
    colour among the 8, "a red [MASK]" → its shape among the 4; accuracy beside chance."""
    objects = [s.objects[0] for s in scenes]
    images = [s.image for s in scenes]
    colour_q = [f"a {model.MASK} {o.shape}" for o in objects]
    shape_q = [f"a {o.color} {model.MASK}" for o in objects]
    found = {"colour": [], "shape": []}
    for start in range(0, len(scenes), batch_size):
        part = slice(start, start + batch_size)
        found["colour"] += model.fill_mask(images[part], colour_q[part], COLOR_NAMES)
        found["shape"] += model.fill_mask(images[part], shape_q[part], SHAPES)
    return {
        "mlm_colour_accuracy": float(np.mean([f == o.color for f, o in zip(found["colour"], objects)])),
        "mlm_shape_accuracy": float(np.mean([f == o.shape for f, o in zip(found["shape"], objects)])),
        "mlm_colour_chance": 1 / len(COLOR_NAMES),
        "mlm_shape_chance": 1 / len(SHAPES),
    }


PAIR_KINDS = ("true caption", "colours swapped", "shape changed")  # + "another image's caption"


def matching_by_kind(model, scenes: list, batch_size: int = 64) -> dict[str, float]:
    """ITM accuracy (logit > 0 is "match") on held-out scenes (`Scenes.scene`'s), by
    kind of pair and number of objects: each scene's canonical caption and its two edits (the
    hard negatives ITM trains on), and the next scene's canonical caption. A model that checks
    only which colours and shapes are present passes one-object edits and accepts multi-object
    colour swaps; one that binds colour to shape rejects both."""
    images, texts, keys = [], [], []
    for i, s in enumerate(scenes):
        objects = len(s.objects)
        other = scenes[(i + 1) % len(scenes)].captions[0]
        pairs = [s.captions[0], *s.caption_negatives[0][:2]]
        if other not in s.captions:
            pairs.append(other)
        for kind, text in zip((*PAIR_KINDS, "another image's caption"), pairs):
            images.append(s.image)
            texts.append(text)
            keys.append(f"{kind}, {objects} object{'s' * (objects > 1)}")
    right = (model.match(images, texts, batch_size) > 0) == np.array(
        [k.startswith(PAIR_KINDS[0]) for k in keys]
    )
    return {key: float(right[[k == key for k in keys]].mean()) for key in sorted(set(keys))}
