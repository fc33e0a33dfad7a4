"""`vlkit index --ray`: image files → decode → embed on actors → embedding shards → one index.

The pipeline (Ray Data): the file list → `Embedder` (actors, each loading the model once), per
batch: `decode` (each file to uint8[H, W, 3], or the reason it cannot be read), then the readable
images' unit embeddings, written as one shard per batch, `<position of its first image>.npz`,
whole or not at all → the driver reads the shards back in file order into a `SearchIndex`.
Decoding runs on the actor beside the model rather than as tasks of its own: a node whose CPUs
all hold actors would leave separate decode tasks waiting for a CPU forever. An image's
embedding does not depend on the batch it came in, so the index equals `index_files`' (keys in
the same order, vectors within float rounding), and so does failures.jsonl.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ray

from vlkit.api import ContrastiveModel
from vlkit.data.images import ImageError, as_array, require_readable, write_failures
from vlkit.index import SearchIndex
from vlkit.models.predictions import FAILURES_FILE
from vlkit.scale.cluster import actor_pool, pool_size


def decode(paths: Sequence[str]) -> tuple[list[np.ndarray | None], list[str]]:
    """→ (per path uint8[H, W, 3] or None when unreadable, per path the reason or "")."""
    images, errors = [], []
    for path in paths:
        try:
            images.append(as_array(str(path)))
            errors.append("")
        except ImageError as e:
            images.append(None)
            errors.append(e.reason)
    return images, errors


class Embedder:
    """One actor: loads the model once, then embeds batches into shard files under `shards`."""

    def __init__(self, model: str, shards: str, batch_size: int):
        from vlkit.api import load

        self.model = load(model, kind="contrastive", command="index --ray")
        self.shards, self.batch_size = Path(shards), batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, errors = decode(batch["path"])
        readable = [i for i, error in enumerate(errors) if not error]
        vectors = self.model.embed_images([images[i] for i in readable], self.batch_size)  # (M, E)
        positions = np.asarray(batch["position"], dtype=np.int64)
        shard = self.shards / f"{int(positions[0]):012d}.npz"
        partial = shard.with_suffix(".partial.npz")
        np.savez(partial, positions=positions[readable], vectors=vectors)
        os.replace(partial, shard)  # a batch re-run after a crash replaces its shard
        return {"position": positions, "error": np.array(errors, dtype=object)}


def index_files(
    model: ContrastiveModel,
    files: Sequence[str | Path],
    out: str | Path,
    batch_size: int = 32,
    strict: bool = False,
    kind: str = "auto",
    params: dict[str, int] | None = None,
    workers: int | None = None,
) -> tuple[SearchIndex, list[ImageError]]:
    """What `ContrastiveModel.index_files` does, on Ray (connected already: `cluster.connected`),
    with `workers` actors (None: one per CPU). `model` is loaded here to check it at the boundary
    and to name it in the index; the actors load it again from `model.path`."""
    path = str(model.path.resolve())
    index = SearchIndex(dim=model.model.embed_dim, metadata={"model": path}, kind=kind, params=params)
    shards = Path(f"{out}.embeddings")
    shutil.rmtree(shards, ignore_errors=True)
    shards.mkdir(parents=True)
    rows = [{"position": i, "path": str(f)} for i, f in enumerate(files)]
    done = (
        ray.data.from_items(rows)
        .map_batches(
            Embedder,
            fn_constructor_args=(path, str(shards.resolve()), batch_size),
            batch_size=batch_size,
            **actor_pool(pool_size(workers)),
        )
        .take_all()
    )
    errors = {int(r["position"]): r["error"] for r in done if r["error"]}
    failures = [ImageError(str(files[p]), reason) for p, reason in sorted(errors.items())]
    if strict and failures:
        raise failures[0]
    require_readable(len(files), failures)
    positions, vectors = _merge(shards, len(files) - len(failures))
    index.add(vectors, [str(files[p]) for p in positions])
    index.save(out)
    write_failures(failures, Path(out) / FAILURES_FILE)
    shutil.rmtree(shards)
    return index, failures


def _merge(shards: Path, expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Every shard's (positions, vectors), in position order; each readable image exactly once."""
    parts = [np.load(f) for f in sorted(shards.glob("*.npz")) if not f.name.endswith(".partial.npz")]
    positions = np.concatenate([p["positions"] for p in parts])
    vectors = np.concatenate([p["vectors"] for p in parts])
    order = np.argsort(positions, kind="stable")
    positions, vectors = positions[order], vectors[order]
    if len(positions) != expected or len(np.unique(positions)) != expected:
        raise RuntimeError(f"{shards}: {len(positions)} embeddings for {expected} readable images")
    return positions, vectors
