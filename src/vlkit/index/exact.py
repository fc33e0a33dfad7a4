"""Exact top-k by inner product over one matrix (in memory or memory-mapped), and the merge of
several shards' top-k into one."""

from __future__ import annotations

import numpy as np

BACKENDS = ("auto", "numpy", "faiss")
FAISS_THRESHOLD = 50_000  # below this, a numpy matmul is as fast as faiss's knn
# Queries are scored in blocks so the [Q, N] score matrix stays under ~64M floats (256 MB).
SCORE_BLOCK_ELEMENTS = 1 << 26


def top_k(queries: np.ndarray, matrix: np.ndarray, k: int, use_faiss: bool) -> tuple[np.ndarray, np.ndarray]:
    """queries: float32[Q, D]; matrix: float32[N, D] → (scores float32[Q, k'], ids int64[Q, k']),
    best first, k' = min(k, N)."""
    k = min(k, len(matrix))
    if use_faiss:
        import faiss  # imported here: slow to import and only needed for large indexes

        # faiss.knn reads the matrix where it lies, so a memory-mapped shard is not copied.
        return faiss.knn(queries, matrix, k, faiss.METRIC_INNER_PRODUCT)
    all_scores, all_ids = [], []
    step = max(1, SCORE_BLOCK_ELEMENTS // len(matrix))
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ matrix.T  # (q, N)
        top, top_scores = best_of(scores, k)
        all_ids.append(top)
        all_scores.append(top_scores)
    return np.concatenate(all_scores), np.concatenate(all_ids)


def best_of(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The columns of the k best scores per row, best first, and those scores."""
    k = min(k, scores.shape[1])
    # argpartition finds the top k in O(N); only those k are then sorted.
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k), unordered
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards' (scores [Q, k_i], global ids [Q, k_i]; id -1 = no result) → the best k of all."""
    if len(parts) == 1:
        return parts[0]
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    cols, best = best_of(scores, k)
    return best, np.take_along_axis(ids, cols, axis=1)
