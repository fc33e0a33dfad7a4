"""Which index a `SearchIndex` builds, and with what settings: one table of kinds and defaults.

`kind`: "exact" (every vector scored), "ivf-pq" (faiss IVF with product-quantised residuals;
the best `refine * k` candidates per shard are re-scored exactly from the stored embeddings) or
"hnsw" (faiss HNSW graph over the full vectors); "auto" is exact below APPROXIMATE_THRESHOLD
vectors and DEFAULT_APPROXIMATE from it up. The resolved kind and every parameter are saved with
the index; the search-time ones (`SEARCH_TIME`) may be changed when it is loaded.
"""

from __future__ import annotations

import math
from typing import Any

KINDS = ("auto", "exact", "ivf-pq", "hnsw")
# Below this many vectors exact search answers a query in milliseconds and needs no build step
# (benchmarks/index_scale.py measures both sides at 100k and 1M).
APPROXIMATE_THRESHOLD = 200_000
DEFAULT_APPROXIMATE = "ivf-pq"
# None: chosen from the count and dimension by `_auto_value`. Checked by benchmarks/index_scale.py
# (recall@10 0.992 at 1M vectors, benchmarks/README.md).
DEFAULTS: dict[str, dict[str, int | None]] = {
    "exact": {},
    "ivf-pq": {"nlist": None, "m": None, "nbits": 8, "nprobe": 32, "refine": 10},
    "hnsw": {"M": 32, "ef_construction": 64, "ef_search": 128},
}
SEARCH_TIME = {"nprobe", "refine", "ef_search"}


def resolve(kind: str, params: dict[str, Any] | None, count: int, dim: int) -> tuple[str, dict[str, int]]:
    """(kind, params) for an index of `count` vectors of `dim`: "auto" decided, defaults filled
    in, every value checked. An error names the parameter, its value and what would be valid."""
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {KINDS}")
    given = dict(params or {})
    if kind == "auto":  # params are the approximate kind's, unused while the index is small
        check_names(DEFAULT_APPROXIMATE, given)
        kind = "exact" if count < APPROXIMATE_THRESHOLD else DEFAULT_APPROXIMATE
    else:
        check_names(kind, given)
    resolved = {name: given.get(name, default) for name, default in DEFAULTS[kind].items()}
    for name, value in resolved.items():
        resolved[name] = _auto_value(name, count, dim) if value is None else _positive(name, value)
    if kind == "ivf-pq":
        _check_ivf_pq(resolved, count, dim)
    return kind, resolved


def check_names(kind: str, params: dict[str, Any], allowed: set[str] | None = None) -> None:
    valid = set(DEFAULTS[kind]) if allowed is None else allowed & set(DEFAULTS[kind])
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"index parameters {unknown} do not apply to a {kind} index here; valid: {sorted(valid) or 'none'}"
        )


def parse(pairs: list[str] | tuple[str, ...]) -> dict[str, int]:
    """["nprobe=64", ...] (the command line's `--param`) → {"nprobe": 64}."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--param {pair!r}: expected NAME=INTEGER, e.g. nprobe=64")
        params[name.strip()] = int(value)
    return params


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"index parameter {name}: must be a positive integer, got {value!r}")
    return value


def _auto_value(name: str, count: int, dim: int) -> int:
    if name == "nlist":  # ~sqrt(N) lists, a power of two: ~1,000 vectors per list at 1M
        return max(1, 2 ** round(math.log2(max(1.0, math.sqrt(count)))))
    # m: one byte per 4 dimensions, the largest divisor of dim not above dim / 4
    return max(d for d in range(1, max(1, dim // 4) + 1) if dim % d == 0)


def _check_ivf_pq(params: dict[str, int], count: int, dim: int) -> None:
    if dim % params["m"]:
        raise ValueError(f"index parameter m: {params['m']} must divide the dimension {dim}")
    if params["nbits"] > 16:
        raise ValueError(f"index parameter nbits: {params['nbits']} bits per code is above faiss's 16")
    needed = max(params["nlist"], 2 ** params["nbits"])
    if count < needed:
        raise ValueError(
            f"an ivf-pq index with nlist={params['nlist']} and nbits={params['nbits']} is trained on at "
            f"least {needed} vectors; this one has {count}: use kind 'exact' (or 'auto') or smaller values"
        )
