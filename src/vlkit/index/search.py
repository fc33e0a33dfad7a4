"""`SearchIndex`: keyed unit embeddings, searched exactly or approximately, shard by shard."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlkit.index import approximate, exact, layout, settings


def _as_float32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    """Rows scaled to unit L2 norm; a non-finite or all-zero row has no direction, so it is an error."""
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{name}: row {row} contains NaN or inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    if (norms == 0).any():
        raise ValueError(f"{name}: row {int(np.argmax(norms[:, 0] == 0))} is all zeros and has no direction")
    return x / norms


class SearchIndex:
    """Cosine search over keyed embeddings: exact, ivf-pq or hnsw (see `vlkit.index.settings`).

    dim: embedding size D; None takes it from the first `add`.
    metadata: JSON-serialisable dict saved with the index (model path, embedding kind, ...).
    kind: "auto" | "exact" | "ivf-pq" | "hnsw"; auto is decided by the count when first searched
        or saved. params: the kind's parameters (`settings.DEFAULTS`), the rest defaulted.
    backend: how exact search runs: "numpy", "faiss" (its knn) or "auto" (faiss from
        `exact.FAISS_THRESHOLD` vectors up). A search-time choice, not saved.
    shard_size: vectors per shard file when saved.
    """

    def __init__(
        self,
        dim: int | None = None,
        metadata: dict[str, Any] | None = None,
        kind: str = "auto",
        params: dict[str, Any] | None = None,
        backend: str = "auto",
        shard_size: int = layout.SHARD_SIZE,
    ) -> None:
        if backend not in exact.BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {exact.BACKENDS}")
        if kind not in settings.KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {settings.KINDS}")
        settings.check_names(settings.DEFAULT_APPROXIMATE if kind == "auto" else kind, dict(params or {}))
        if shard_size < 1:
            raise ValueError(f"shard_size: must be positive, got {shard_size}")
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata: must be JSON-serialisable so it can be saved ({err})") from err
        self.dim, self.metadata = dim, metadata
        self.kind, self.params = kind, dict(params or {})
        self.backend, self.shard_size = backend, shard_size
        self.keys: list[str] = []
        self._chunks: list[np.ndarray] = []  # added blocks, or after load / save one per shard
        self._sharded = False  # True: the chunks are the shards (as saved); False: joined on use
        self._anns: list[Any] | None = None  # one approximate index per shard, built or read lazily
        self._ann_files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def embeddings(self) -> np.ndarray:
        """float32[N, D], L2-normalised rows in the order they were added (all in memory)."""
        if len(self._chunks) != 1:
            joined = (
                np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim or 0), np.float32)
            )
            self._chunks, self._sharded = [joined], False
        return self._chunks[0]

    def add(self, embeddings: Any, keys: Sequence[str | os.PathLike[str]]) -> None:
        """Append embeddings float[N, D] (numpy, torch or lists; normalised here) and their N keys.
        An approximate index built before is dropped and built again on the next search."""
        vectors = _as_float32(embeddings)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2:
            raise ValueError(f"embeddings: expected shape [N, D], got {vectors.shape}")
        keys = [os.fspath(key) for key in keys]
        if len(keys) != vectors.shape[0]:
            raise ValueError(f"got {vectors.shape[0]} embeddings but {len(keys)} keys; need one key per row")
        if self.dim is None:
            self.dim = vectors.shape[1]
        if vectors.shape[1] != self.dim:
            raise ValueError(
                f"embeddings: dimension {vectors.shape[1]} does not match the index dimension {self.dim}"
            )
        self._chunks.append(_normalise(vectors, "embeddings"))
        self.keys.extend(keys)
        self._sharded, self._anns, self._ann_files = False, None, None

    def resolved(self) -> tuple[str, dict[str, int]]:
        """(kind, params) this index searches with at its present size ("auto" decided)."""
        return settings.resolve(self.kind, self.params, len(self), self.dim or 0)

    def search(self, queries: Any, k: int) -> list[list[tuple[str, float]]]:
        """The k best (key, cosine score) pairs per query, best first.

        queries: float[Q, D] or float[D] (normalised here). k is clamped to len(self). Always
        returns one list per query, so a single [D] query gives a list holding one list. An
        approximate index may return fewer than k. Equal scores come in no particular order.
        """
        scores, ids = self.search_ids(queries, k)
        return [
            [(self.keys[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist())
        ]

    def search_ids(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As `search`, as arrays: (scores float32[Q, k'], row ids int64[Q, k'], -1 = no result)."""
        vectors = self._check_queries(queries, k)
        k = min(k, len(self))
        kind, params = self.resolved()
        shards = self._shards()
        anns = self._approximate(kind, params, shards) if kind != "exact" else None
        parts, offset = [], 0
        for position, shard in enumerate(shards):
            if anns is None:
                scores, ids = exact.top_k(vectors, shard, k, self._exact_uses_faiss())
            else:
                scores, ids = approximate.search(kind, params, anns[position], shard, vectors, k)
            parts.append((scores, np.where(ids >= 0, ids + offset, -1)))
            offset += len(shard)
        return exact.merge(parts, k)

    def _check_queries(self, queries: Any, k: int) -> np.ndarray:
        vectors = _as_float32(queries)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2:
            raise ValueError(f"queries: expected shape [Q, D] or [D], got {vectors.shape}")
        if vectors.shape[1] != self.dim:
            raise ValueError(
                f"queries: dimension {vectors.shape[1]} does not match the index dimension {self.dim}"
            )
        if len(self) == 0:
            raise ValueError("search: the index is empty; add embeddings first")
        if k < 1:
            raise ValueError(f"k: must be at least 1, got {k}")
        return _normalise(vectors, "queries")

    def _exact_uses_faiss(self) -> bool:
        return self.backend == "faiss" or (self.backend == "auto" and len(self) >= exact.FAISS_THRESHOLD)

    def _shards(self) -> list[np.ndarray]:
        if self._sharded:
            return self._chunks
        whole = self.embeddings
        return [whole[start : start + self.shard_size] for start in range(0, len(whole), self.shard_size)]

    def _approximate(self, kind: str, params: dict[str, int], shards: list[np.ndarray]) -> list[Any]:
        if self._anns is None and self._ann_files is not None:
            self._anns = [approximate.read(path, kind) for path in self._ann_files]
        if self._anns is None:
            self._anns = approximate.build(kind, params, shards)
        return self._anns

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to folder `path` (created if needed) in shards of `shard_size` vectors,
        with its approximate index per shard (built now if it was not); see `vlkit.index.layout`."""
        if self.dim is None:
            raise ValueError("save: the index has no dimension yet; pass dim or add embeddings first")
        if len(self) == 0:
            raise ValueError("save: the index is empty; add embeddings first")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        kind, params = self.resolved()
        shards = self._shards()
        anns = self._approximate(kind, params, shards) if kind != "exact" else None
        entries = []
        for position, shard in enumerate(shards):
            npy, ann = layout.shard_names(position)
            layout.replace(folder / npy, lambda f, shard=shard: np.save(f, shard, allow_pickle=False))
            if anns is not None:
                approximate.write(anns[position], folder / ann)
            entries.append({"embeddings": npy, "count": len(shard), "ann": ann if anns is not None else None})
        header = {"format": layout.FORMAT, "version": layout.VERSION, "dim": self.dim, "count": len(self)}
        header |= {
            "kind": kind,
            "params": params,
            "shards": entries,
            "keys": self.keys,
            "metadata": self.metadata,
        }
        layout.write_header(folder, header)
        layout.remove_stale(
            folder, {e["embeddings"] for e in entries} | {e["ann"] for e in entries if e["ann"]}
        )
        self._chunks, self._sharded, self.kind, self.params = list(shards), True, kind, params
        return folder

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], backend: str = "auto", params: dict[str, Any] | None = None
    ) -> SearchIndex:
        """Read an index written by `save`: the shards are memory-mapped, not read into memory.

        backend: exact search's backend, as in __init__. params: new values of search-time
        parameters (`settings.SEARCH_TIME`: nprobe, refine, ef_search); the others were fixed
        when the index was built."""
        folder = Path(path)
        header = layout.read_header(folder)
        settings.check_names(header["kind"], dict(params or {}), allowed=settings.SEARCH_TIME)
        index = cls(
            header["dim"],
            header["metadata"],
            kind=header["kind"],
            params=header["params"] | dict(params or {}),
            backend=backend,
        )
        # Rows were normalised before saving; taking them as they are keeps a round trip bit-exact.
        index._chunks = [layout.open_shard(folder, shard, header["dim"]) for shard in header["shards"]]
        index.keys, index._sharded = header["keys"], True
        index.resolved()  # a value out of range, in the file or in params, fails here
        if header["kind"] != "exact":
            index._ann_files = [folder / shard["ann"] for shard in header["shards"]]
        return index
