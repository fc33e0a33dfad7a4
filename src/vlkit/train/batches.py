"""Which samples each process sees at each step: a pure function of (seed, step, rank).

That is what makes resume exact (the data position is just the step) and what splits one
global batch across processes without overlap. Finite data sets are walked in a fresh
permutation each epoch; the endless scenes world is indexed directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from vlkit.data.images import ImageError

log = logging.getLogger(__name__)
ENDLESS = 2**30  # a data set at least this long is treated as endless: no epochs, no permutation


@dataclass
class Batcher:
    dataset: object
    global_batch: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    skipped: int = 0  # corrupt or unreadable samples skipped so far (on this process)
    _perms: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.global_batch % self.world:
            raise ValueError(
                f"train.batch_size={self.global_batch} must be divisible by the {self.world} processes"
            )
        if len(self.dataset) == 0:
            raise ValueError("the training data set is empty")

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world

    def index(self, position: int) -> int:
        """Global sample position → data set index."""
        n = len(self.dataset)
        if n >= ENDLESS:
            return position % n
        epoch, offset = divmod(position, n)
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(n)}
        return int(self._perms[epoch][offset])

    def positions(self, micro_step: int) -> range:
        start = micro_step * self.global_batch + self.rank * self.local_batch
        return range(start, start + self.local_batch)

    def samples(self, micro_step: int) -> list[tuple[int, dict]]:
        """This process's (position, sample) pairs for one micro-step; bad samples are skipped and
        counted, but a micro-step with no readable sample at all is a ValueError naming them."""
        out, errors = [], []
        for position in self.positions(micro_step):
            try:
                out.append((position, self.dataset[self.index(position)]))
            except ImageError as e:
                errors.append(e)
                self.skipped += 1
                log.warning("skipped a sample that cannot be read (%d so far): %s", self.skipped, e)
        if not out:
            shown = "; ".join(str(e) for e in errors[:10]) + ("; ..." if len(errors) > 10 else "")
            raise ValueError(
                f"micro-step {micro_step}: all {len(errors)} samples of this batch are unreadable, so "
                f"there is nothing to train on ({shown}); fix or remove those files"
            )
        return out
