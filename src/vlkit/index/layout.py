"""The on-disk layout of a `SearchIndex` folder: reading and checking its header and shards.

    index.json          {"format": "vlkit.SearchIndex", "version": 2, "dim": D, "count": N,
                         "kind": "exact" | "ivf-pq" | "hnsw", "params": {...},
                         "shards": [{"embeddings": "shard-00000.npy", "count": N_0,
                                     "ann": "shard-00000.faiss" | null}, ...],
                         "keys": [N strings], "metadata": {...}}
    shard-00000.npy     float32[N_0, D], unit rows; memory-mapped on loading
    shard-00000.faiss   the shard's approximate index (ivf-pq: read on first search; hnsw: memory-mapped)

Version 1 (one `embeddings.npy`, an exact index) still loads, as an exact index of one shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT, VERSION = "vlkit.SearchIndex", 2
INDEX_FILE, V1_EMBEDDINGS = "index.json", "embeddings.npy"
SHARD_SIZE = 262_144  # vectors per shard: 128 MB at D=128


def shard_names(position: int) -> tuple[str, str]:
    return f"shard-{position:05d}.npy", f"shard-{position:05d}.faiss"


def read_header(folder: Path) -> dict[str, Any]:
    """index.json, checked; a version-1 header is returned in version 2's shape."""
    path = folder / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {folder} a folder written by SearchIndex.save?")
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f'{path}: not a vlkit search index (expected "format": "{FORMAT}")')
    if header.get("version") == 1:
        header = header | {
            "kind": "exact",
            "params": {},
            "shards": [{"embeddings": V1_EMBEDDINGS, "count": header.get("count"), "ann": None}],
        }
    elif header.get("version") != VERSION:
        raise ValueError(f"{path}: version {header.get('version')!r} is not supported (1 or {VERSION})")
    if header.get("kind") not in (None, "exact", "ivf-pq", "hnsw"):
        raise ValueError(f"{path}: kind {header['kind']!r} is not one of exact, ivf-pq, hnsw")
    missing = [f for f in ("dim", "count", "keys", "metadata", "kind", "params", "shards") if f not in header]
    if missing:
        raise ValueError(f"{path}: missing fields {missing}")
    keys = header["keys"]
    if (
        not isinstance(keys, list)
        or len(keys) != header["count"]
        or not all(isinstance(k, str) for k in keys)
    ):
        raise ValueError(f'{path}: "keys" must be a list of {header["count"]} strings ("count")')
    if sum(shard.get("count", 0) for shard in header["shards"]) != header["count"]:
        raise ValueError(f'{path}: the shards\' counts do not add up to "count" {header["count"]}')
    return header


def open_shard(folder: Path, shard: dict[str, Any], dim: int) -> np.ndarray:
    """A shard's embeddings, memory-mapped (read-only), checked against the header."""
    path = folder / shard["embeddings"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {folder} a folder written by SearchIndex.save?")
    try:
        embeddings = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    expected = (shard["count"], dim)
    if embeddings.dtype != np.float32 or embeddings.shape != expected:
        raise ValueError(
            f"{path}: expected float32{list(expected)} as recorded in {folder / INDEX_FILE}, "
            f"got {embeddings.dtype}{list(embeddings.shape)}"
        )
    return embeddings


def write_header(folder: Path, header: dict[str, Any]) -> None:
    replace(folder / INDEX_FILE, lambda f: f.write(json.dumps(header, indent=1).encode()))


def remove_stale(folder: Path, keep: set[str]) -> None:
    """Shard files an earlier save left that the new header does not name."""
    for path in [*folder.glob("shard-*.npy"), *folder.glob("shard-*.faiss"), folder / V1_EMBEDDINGS]:
        if path.is_file() and path.name not in keep:
            path.unlink()


def replace(target: Path, write: Any) -> None:
    """Write beside the target and rename, so a crash never leaves a half-written file in place."""
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as f:
        write(f)
    os.replace(partial, target)
