"""An embedding index for text-to-image and image-to-text search.

`SearchIndex` keeps L2-normalised float32 embeddings with one string key per row (for example an
image path) and a small JSON metadata dict (for example the model that made the embeddings), so
scores are cosine similarities.

Search is exact by default: a numpy matmul below `FAISS_THRESHOLD` vectors, faiss `IndexFlatIP`
above it. An approximate faiss IVF index is used only when asked for with `backend="faiss"` and
`nlist`. The backend is a search-time choice, not part of the saved data.

On disk an index is a folder:
    embeddings.npy   float32[N, D], rows L2-normalised
    index.json       {"format": "vlkit.SearchIndex", "version": 1, "dim": D, "count": N,
                      "keys": [N strings], "metadata": {...}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FAISS_THRESHOLD = 50_000  # below this, a numpy matmul is as fast as faiss and has no build step
BACKENDS = ("auto", "numpy", "faiss")
_FORMAT, _VERSION = "vlkit.SearchIndex", 1
_EMBEDDINGS_FILE, _INDEX_FILE = "embeddings.npy", "index.json"
# Queries are scored in blocks so the [Q, N] score matrix stays under ~64M floats (256 MB).
_SCORE_BLOCK_ELEMENTS = 1 << 26


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
    """Exact (or, on request, IVF) cosine search over keyed embeddings.

    dim: embedding size D; None takes it from the first `add`.
    metadata: JSON-serialisable dict saved with the index (model path, embedding kind, ...).
    backend: "auto" (numpy below FAISS_THRESHOLD vectors, faiss flat above), "numpy" or "faiss".
    nlist: with backend="faiss" only, use an approximate IVF index with this many clusters,
        trained on the stored embeddings (needs at least `nlist` of them); `nprobe` clusters are
        visited per query, so a search can return fewer than k results.
    """

    def __init__(
        self,
        dim: int | None = None,
        metadata: dict[str, Any] | None = None,
        backend: str = "auto",
        nlist: int | None = None,
        nprobe: int = 8,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {BACKENDS}")
        if nlist is not None and backend != "faiss":
            raise ValueError(
                f"nlist={nlist} selects a faiss IVF index and needs backend='faiss', got {backend!r}"
            )
        if (nlist is not None and nlist < 1) or nprobe < 1:
            raise ValueError(f"nlist and nprobe must be positive, got nlist={nlist}, nprobe={nprobe}")
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata: must be JSON-serialisable so it can be saved ({err})") from err
        self.dim = dim
        self.metadata = metadata
        self.backend, self.nlist, self.nprobe = backend, nlist, nprobe
        self.keys: list[str] = []
        self._chunks: list[np.ndarray] = []  # added blocks, joined lazily so repeated adds stay linear
        self._faiss_index: Any = None  # built lazily from `embeddings`, dropped on every add

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def embeddings(self) -> np.ndarray:
        """float32[N, D], L2-normalised rows in the order they were added."""
        if len(self._chunks) != 1:
            joined = (
                np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim or 0), np.float32)
            )
            self._chunks = [joined]
        return self._chunks[0]

    def add(self, embeddings: Any, keys: Sequence[str | os.PathLike[str]]) -> None:
        """Append embeddings float[N, D] (numpy, torch or lists; normalised here) and their N keys."""
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
        self._faiss_index = None

    def search(self, queries: Any, k: int) -> list[list[tuple[str, float]]]:
        """The k best (key, cosine score) pairs per query, best first.

        queries: float[Q, D] or float[D] (normalised here). k is clamped to len(self). Always
        returns one list per query, so a single [D] query gives a list holding one list. Keys with
        equal scores come in no particular order.
        """
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
        vectors = _normalise(vectors, "queries")
        k = min(k, len(self))
        if self._use_faiss():
            scores, ids = self._faiss().search(vectors, k)
        else:
            scores, ids = self._numpy_search(vectors, k)
        # faiss pads with id -1 when an IVF search finds fewer than k vectors in the probed clusters.
        return [
            [(self.keys[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist())
        ]

    def _use_faiss(self) -> bool:
        return self.backend == "faiss" or (self.backend == "auto" and len(self) >= FAISS_THRESHOLD)

    def _numpy_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.embeddings
        all_scores, all_ids = [], []
        step = max(1, _SCORE_BLOCK_ELEMENTS // len(matrix))
        for start in range(0, len(queries), step):
            scores = queries[start : start + step] @ matrix.T  # (q, N)
            # argpartition finds the top k in O(N); only those k are then sorted.
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k), unordered
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            all_ids.append(np.take_along_axis(top, order, axis=1))
            all_scores.append(np.take_along_axis(top_scores, order, axis=1))
        return np.concatenate(all_scores), np.concatenate(all_ids)

    def _faiss(self) -> Any:
        if self._faiss_index is not None:
            return self._faiss_index
        import faiss  # imported here: it is slow to import and only needed for large or IVF indexes

        matrix = np.ascontiguousarray(self.embeddings)
        if self.nlist is None:
            index = faiss.IndexFlatIP(self.dim)
        else:
            if len(matrix) < self.nlist:
                raise ValueError(
                    f"nlist={self.nlist}: an IVF index needs at least nlist vectors, the index has {len(matrix)}"
                )
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(self.dim), self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT
            )
            index.train(matrix)
            index.nprobe = min(self.nprobe, self.nlist)
        index.add(matrix)
        self._faiss_index = index
        return index

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to folder `path` (created if needed); see the module docstring for the layout."""
        if self.dim is None:
            raise ValueError("save: the index has no dimension yet; pass dim or add embeddings first")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "dim": self.dim,
            "count": len(self),
            "keys": self.keys,
            "metadata": self.metadata,
        }
        # Write beside the target and rename, so a crash never leaves a half-written file in place.
        _replace(folder / _EMBEDDINGS_FILE, lambda f: np.save(f, self.embeddings, allow_pickle=False))
        _replace(folder / _INDEX_FILE, lambda f: f.write(json.dumps(header, indent=1).encode()))
        return folder

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], backend: str = "auto", nlist: int | None = None, nprobe: int = 8
    ) -> SearchIndex:
        """Read an index written by `save`; backend/nlist/nprobe are chosen anew, as in __init__."""
        folder = Path(path)
        header_path, embeddings_path = folder / _INDEX_FILE, folder / _EMBEDDINGS_FILE
        for required in (header_path, embeddings_path):
            if not required.is_file():
                raise FileNotFoundError(
                    f"{required}: not found; is {folder} a folder written by SearchIndex.save?"
                )
        try:
            header = json.loads(header_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{header_path}: not valid JSON ({err})") from err
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f'{header_path}: not a vlkit search index (expected "format": "{_FORMAT}")')
        if header.get("version") != _VERSION:
            raise ValueError(
                f"{header_path}: version {header.get('version')!r} is not supported (expected {_VERSION})"
            )
        missing = [field for field in ("dim", "count", "keys", "metadata") if field not in header]
        if missing:
            raise ValueError(f"{header_path}: missing fields {missing}")
        keys = header["keys"]
        if (
            not isinstance(keys, list)
            or len(keys) != header["count"]
            or not all(isinstance(k, str) for k in keys)
        ):
            raise ValueError(f'{header_path}: "keys" must be a list of {header["count"]} strings ("count")')
        try:
            embeddings = np.load(embeddings_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{embeddings_path}: not a readable .npy array ({err})") from err
        expected = (header["count"], header["dim"])
        if embeddings.dtype != np.float32 or embeddings.shape != expected:
            raise ValueError(
                f"{embeddings_path}: expected float32{list(expected)} as recorded in {header_path}, "
                f"got {embeddings.dtype}{list(embeddings.shape)}"
            )
        index = cls(header["dim"], header["metadata"], backend=backend, nlist=nlist, nprobe=nprobe)
        # Rows were normalised before saving; taking them as they are keeps a round trip bit-exact.
        index._chunks, index.keys = [embeddings], keys
        return index


def _replace(target: Path, write: Any) -> None:
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as f:
        write(f)
    os.replace(partial, target)
