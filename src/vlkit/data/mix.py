"""Weighted mixing of data sets, deterministic by index: `mixed[i]` depends only on (seed, i).

Two things are decided per index:

1. Which source. The index space is cut into blocks of about BLOCK positions; block `b`
   holds exactly `floor((b+1)·B·p_s) - floor(b·B·p_s)` draws of source `s` (p = normalised
   weights), shuffled by a generator seeded with (seed, b). So proportions are exact in the
   long run (a weight of 1e-6 still gets its share), local order is random, and how many
   times source `s` was drawn before index `i` is a closed-form count, not a scan.
2. Which sample of that source. The k-th draw of source `s` takes position `k mod n_s` of a
   fresh pseudo-random permutation per pass `k // n_s`: every sample of a finite source is
   visited once per pass, in a new order each pass. The permutation is a keyed Feistel
   network evaluated at one point, so a 2**31-sample procedural source costs no memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlkit.data.contract import check_index

BLOCK = 4096  # positions per block: long enough that every source shows up, short to shuffle
_MASK64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 4  # enough to scatter neighbouring positions; this is shuffling, not crypto


class MixedDataset:
    """Mixes `datasets` by `weights`; `len` is `size` (default: the sum of the source sizes)."""

    def __init__(self, datasets: Sequence[Any], weights: Sequence[float], seed: int, size: int | None = None):
        if not datasets:
            raise ValueError("MixedDataset needs at least one data set")
        if len(weights) != len(datasets):
            raise ValueError(f"got {len(datasets)} data sets but {len(weights)} weights")
        for s, weight in enumerate(weights):
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weights[{s}] = {weight!r}; every weight must be a finite number > 0")
        self.lengths = [len(d) for d in datasets]
        for s, length in enumerate(self.lengths):
            if length < 1:
                raise ValueError(f"data set {s} ({type(datasets[s]).__name__}) is empty")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.datasets = list(datasets)
        self.probabilities = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.seed = seed
        self.size = sum(self.lengths) if size is None else size
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._block = max(BLOCK, 16 * len(datasets))  # a block must be longer than the source count
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None  # last block's layout

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, Any]:
        source, index = self.locate(i)
        return self.datasets[source][index]

    def captions(self, i: int) -> list[str]:
        """The captions of sample `i`, without decoding its image when the source allows it."""
        source, index = self.locate(i)
        dataset = self.datasets[source]
        fast = getattr(dataset, "captions", None)
        return fast(index) if callable(fast) else dataset[index]["captions"]

    def locate(self, i: int) -> tuple[int, int]:
        """Index `i` of the mix → (source number, index within that source)."""
        i = check_index(i, self.size, "samples in a mix")
        # start(b) <= b·B always and start(b+1) > (b+1)·B - #sources, so at most one step.
        block = i // self._block
        while self._block_start(block + 1) <= i:
            block += 1
        sources, ranks = self._layout(block)
        offset = i - self._block_start(block)
        source = int(sources[offset])
        draw = int(self._draws_before(block)[source]) + int(ranks[offset])  # k-th draw of `source`
        length = self.lengths[source]
        epoch, position = divmod(draw, length)
        keys = np.random.SeedSequence([self.seed, 1, source, epoch]).generate_state(
            _FEISTEL_ROUNDS, np.uint64
        )
        return source, permute_index(position, length, [int(k) for k in keys])

    def _draws_before(self, block: int) -> np.ndarray:
        """int64[S]: how often each source is drawn in blocks 0 .. block-1."""
        return np.floor(block * self._block * self.probabilities).astype(np.int64)

    def _block_start(self, block: int) -> int:
        return int(self._draws_before(block).sum())

    def _layout(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each position in the block, how many earlier positions share it)."""
        if self._cache is not None and self._cache[0] == block:
            return self._cache[1], self._cache[2]
        counts = self._draws_before(block + 1) - self._draws_before(block)  # (S,)
        sources = np.repeat(np.arange(len(counts)), counts)  # (L,)
        np.random.default_rng([self.seed, 0, block]).shuffle(sources)
        order = np.argsort(sources, kind="stable")  # positions grouped by source, in order
        ranks = np.empty_like(sources)
        ranks[order] = np.arange(len(sources)) - np.repeat(np.cumsum(counts) - counts, counts)
        self._cache = (block, sources, ranks)
        return sources, ranks


def permute_index(position: int, n: int, round_keys: Sequence[int]) -> int:
    """A keyed pseudo-random bijection of range(n), evaluated at one `position`.

    A Feistel network permutes the smallest square power of two >= n; "cycle walking"
    re-applies it until the value falls back inside range(n) (under 4 steps on average).
    """
    half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half_bits) - 1
    x = position
    while True:
        left, right = x >> half_bits, x & mask
        for key in round_keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        x = (left << half_bits) | right
        if x < n:
            return x


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap 64-bit hash whose every output bit depends on every input bit."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)
