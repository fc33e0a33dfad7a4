"""faiss approximate indexes, one per shard: build, search, write and read (memory-mapped).

An ivf-pq index's coarse quantizer and codebooks are trained once, on a sample of all the
vectors; each shard is a copy of that trained index holding the shard's vectors, so every shard
quantises alike. Its search re-scores the `refine * k` best candidates exactly from the shard's
stored embeddings (read from the memory-mapped .npy), which is what lifts recall@10 from PQ's
~0.4 to ~1. An hnsw shard is a graph over the shard's full vectors (`IndexHNSWFlat`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vlkit.index.exact import best_of

_SEED = 0  # which vectors train the quantizer: fixed, so a build is repeatable
_TRAIN_PER_CENTROID = 40
_RESCORE_QUERY_BLOCK = 256  # candidates gathered per block of queries: [256, refine * k, D] floats


def _faiss() -> Any:
    import faiss  # imported here: slow to import, needed only by approximate indexes

    return faiss


def build(kind: str, params: dict[str, int], shards: list[np.ndarray]) -> list[Any]:
    """One faiss index per shard (float32[N_i, D], unit rows)."""
    faiss = _faiss()
    dim = shards[0].shape[1]
    if kind == "hnsw":
        built = []
        for shard in shards:
            index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["ef_construction"]
            index.add(np.ascontiguousarray(shard))
            built.append(index)
        return built
    trained = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(dim), dim, params["nlist"], params["m"], params["nbits"], faiss.METRIC_INNER_PRODUCT
    )
    trained.train(_training_sample(shards, max(params["nlist"], 2 ** params["nbits"])))
    built = []
    for shard in shards:
        index = faiss.clone_index(trained)
        index.add(np.ascontiguousarray(shard))
        built.append(index)
    return built


def _training_sample(shards: list[np.ndarray], centroids: int) -> np.ndarray:
    count = sum(len(s) for s in shards)
    size = min(count, centroids * _TRAIN_PER_CENTROID)
    rows = np.sort(np.random.default_rng(_SEED).choice(count, size, replace=False))
    starts = np.cumsum([0] + [len(s) for s in shards])
    parts = [s[rows[(rows >= a) & (rows < b)] - a] for s, a, b in zip(shards, starts, starts[1:])]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def search(
    kind: str, params: dict[str, int], index: Any, shard: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """A shard's approximate top-k: (scores float32[Q, k], shard-local ids int64[Q, k], -1 = none)."""
    if kind == "hnsw":
        index.hnsw.efSearch = max(params["ef_search"], k)
        return index.search(queries, k)
    index.nprobe = min(params["nprobe"], params["nlist"])
    _, candidates = index.search(queries, min(len(shard), k * params["refine"]))  # (Q, R)
    scores_out, ids_out = [], []
    for start in range(0, len(queries), _RESCORE_QUERY_BLOCK):
        block = candidates[start : start + _RESCORE_QUERY_BLOCK]
        vectors = shard[np.maximum(block, 0)]  # (q, R, D): only the candidates' rows are read
        scores = np.einsum("qd,qrd->qr", queries[start : start + _RESCORE_QUERY_BLOCK], vectors)
        scores[block < 0] = -np.inf
        cols, best = best_of(scores, k)
        ids = np.take_along_axis(block, cols, axis=1)
        scores_out.append(best)
        ids_out.append(np.where(np.isfinite(best), ids, -1))
    return np.concatenate(scores_out), np.concatenate(ids_out)


def write(index: Any, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    _faiss().write_index(index, os.fspath(partial))
    os.replace(partial, path)


def read(path: Path, kind: str) -> Any:
    """A saved shard index. hnsw (full vectors and graph) is memory-mapped, paged in as searches
    touch it; ivf-pq's codes (m bytes a vector) are read into memory: faiss searched a
    memory-mapped one ~15x slower per query, and its full vectors stay memory-mapped anyway."""
    faiss = _faiss()
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if kind == "hnsw" else 0
    try:
        return faiss.read_index(os.fspath(path), flags)
    except RuntimeError as err:
        raise ValueError(f"{path}: not a readable faiss index ({err})") from err
