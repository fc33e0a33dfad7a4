"""Evaluation metrics shared by training-time eval and `vlkit eval`.

Every function accepts numpy arrays, torch tensors or nested lists, and returns a dict of plain
Python floats, so results can go straight into a JSONL log.

Ties. `torch.topk` and `argsort` order tied scores arbitrarily, which makes top-k metrics depend
on the implementation. Here the rank of the correct item is the number of *wrong* candidates
that score at least as high as it, and it is "in the top k" when that rank is < k. Ties are
therefore resolved against the correct item: a collapsed model that scores every candidate
identically gets (near) zero, never full marks. NaN scores are rejected at the boundary.
Winoground keeps its paper's strict `>`, where a tie is a failure too.

References: CLIP_benchmark (zero-shot top-k, mean per-class recall = sklearn's balanced
accuracy, retrieval recall@k with "any correct text in the top k"), and Thrush et al. 2022,
"Winoground", section 3.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Upper bound on elements of the temporary boolean matrix built per chunk (64M bools = 64 MB), so
# a 5k x 25k retrieval eval never holds more than one chunk-sized comparison in memory.
_CHUNK_ELEMENTS = 1 << 26


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (any device/dtype) or a nested list."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype.itemsize < 4:
            x = x.float()  # bfloat16 has no numpy equivalent; float16 comparisons are fine as float32
        return x.numpy()
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name}: cannot be read as an array ({err})") from err


def _scores(x: Any, name: str, ndim: int) -> np.ndarray:
    """A real-valued score array with `ndim` dimensions and no NaN (infinities are allowed)."""
    arr = _to_numpy(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        bad = np.argwhere(np.isnan(arr))[0].tolist()
        raise ValueError(f"{name}: contains NaN (first at index {bad}); scores must be comparable")
    return arr


def _indices(x: Any, name: str, length: int, upper: int, upper_name: str) -> np.ndarray:
    """An int64[length] array of indices in [0, upper)."""
    arr = _to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name}: expected shape ({length},), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        bad = int(arr[(arr < 0) | (arr >= upper)][0])
        raise ValueError(
            f"{name}: value {bad} is out of range; valid values are 0..{upper - 1} ({upper_name})"
        )
    return arr


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ValueError(f"ks: expected a non-empty list of positive integers, got {ks}")
    return [int(k) for k in ks]


def _recall_at(ranks: np.ndarray, ks: list[int], prefix: str) -> dict[str, float]:
    # rank < k needs no clamping: a rank never exceeds (candidates - 1), so k > candidates is all-correct.
    return {f"{prefix}{k}": float(np.mean(ranks < k)) for k in ks}


def zero_shot_accuracy(logits: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of zero-shot classification.

    logits: float[N, C] (image-vs-class-prompt scores); labels: int[N] in [0, C).
    Returns {"top1": ..., "top5": ..., "mean_per_class_recall": ...}, one `top{k}` per k. A k
    larger than C is clamped to C, i.e. every sample counts as correct. Mean per-class recall is
    the average, over the classes present in `labels`, of each class's top-1 recall (the
    CLIP_benchmark / sklearn balanced-accuracy definition). Ties count against the true class
    (see the module docstring).
    """
    logits = _scores(logits, "logits", ndim=2)
    n, num_classes = logits.shape
    if n == 0 or num_classes == 0:
        raise ValueError(f"logits: need at least one sample and one class, got shape {logits.shape}")
    labels = _indices(labels, "labels", n, num_classes, f"logits has {num_classes} classes")
    ks = _check_ks(ks)

    true_score = logits[np.arange(n), labels]  # (N,)
    ranks = (logits >= true_score[:, None]).sum(axis=1) - 1  # (N,) wrong classes scoring >= the true one
    result = _recall_at(ranks, ks, prefix="top")

    classes, class_of_sample = np.unique(labels, return_inverse=True)
    hits = np.bincount(class_of_sample, weights=ranks == 0, minlength=len(classes))
    totals = np.bincount(class_of_sample, minlength=len(classes))
    result["mean_per_class_recall"] = float(np.mean(hits / totals))
    return result


def retrieval_recall(similarity: Any, image_of_text: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text-to-image and image-to-text recall@k for a caption set with several texts per image.

    similarity: float[n_images, n_texts]; image_of_text: int[n_texts], the image each text describes.
    Returns {"t2i_R@k": ..., "i2t_R@k": ...} for each k.
    - t2i: fraction of texts whose image is among the text's top-k images.
    - i2t: fraction of images with at least one of their texts among the image's top-k texts
      (the CLIP_benchmark / COCO Karpathy protocol). Images without any text are left out.
    Ties count against the correct item (see the module docstring).
    """
    sim = _scores(similarity, "similarity", ndim=2)
    n_images, n_texts = sim.shape
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"similarity: need at least one image and one text, got shape {sim.shape}")
    image_of_text = _indices(
        image_of_text, "image_of_text", n_texts, n_images, f"similarity has {n_images} image rows"
    )
    ks = _check_ks(ks)
    text_ids = np.arange(n_texts)
    true_score = sim[image_of_text, text_ids]  # (n_texts,) each text's score with its own image

    # t2i: per text (column), count the other images scoring at least as high as the text's own image.
    t2i_ranks = np.empty(n_texts, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // n_images)
    for start in range(0, n_texts, step):
        cols = slice(start, start + step)
        t2i_ranks[cols] = (sim[:, cols] >= true_score[None, cols]).sum(axis=0) - 1

    # i2t: "any correct text in the top k" holds exactly when the image's best-scoring correct text
    # is in the top k, and every text above that one is incorrect, so its rank is a plain count.
    best_true = np.full(n_images, -np.inf, dtype=np.float64)
    np.maximum.at(best_true, image_of_text, true_score.astype(np.float64))
    has_text = np.bincount(image_of_text, minlength=n_images) > 0
    # The image's own texts tied with its best one are correct, so they don't count against it.
    own_at_best = np.bincount(
        image_of_text, weights=true_score >= best_true[image_of_text], minlength=n_images
    ).astype(np.int64)
    i2t_ranks = np.empty(n_images, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // n_texts)
    for start in range(0, n_images, step):
        rows = slice(start, start + step)
        i2t_ranks[rows] = (sim[rows] >= best_true[rows, None]).sum(axis=1) - own_at_best[rows]

    return _recall_at(t2i_ranks, ks, prefix="t2i_R@") | _recall_at(i2t_ranks[has_text], ks, prefix="i2t_R@")


def winoground_scores(s_c0_i0: Any, s_c0_i1: Any, s_c1_i0: Any, s_c1_i1: Any) -> dict[str, float]:
    """Winoground text, image and group scores (Thrush et al. 2022), as fractions of examples.

    Each argument is float[N]: the score of caption c (0/1) with image i (0/1) for every example.
    - text: the right caption wins for both images: s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1).
    - image: the right image wins for both captions: s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0).
    - group: both. Comparisons are strict, as in the paper, so a tie is a failure.
    """
    names = ("s_c0_i0", "s_c0_i1", "s_c1_i0", "s_c1_i1")
    c0i0, c0i1, c1i0, c1i1 = (
        _scores(x, name, ndim=1) for x, name in zip((s_c0_i0, s_c0_i1, s_c1_i0, s_c1_i1), names)
    )
    shapes = {name: arr.shape for name, arr in zip(names, (c0i0, c0i1, c1i0, c1i1))}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"winoground scores must all have the same shape, got {shapes}")
    if c0i0.size == 0:
        raise ValueError("winoground scores: need at least one example, got empty arrays")

    text = (c0i0 > c1i0) & (c1i1 > c0i1)
    image = (c0i0 > c0i1) & (c1i1 > c1i0)
    return {
        "text": float(text.mean()),
        "image": float(image.mean()),
        "group": float((text & image).mean()),
    }
