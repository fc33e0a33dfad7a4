"""`vlkit eval --ray`: a benchmark's batches answered by a pool of actors, scored once.

`FannedModel` stands in for the model in `vlkit.eval.run.run_eval`: the task runners call its
batch methods (`FANNED`) with many examples at once; it cuts them into the batches the runners
would have made (`batch_size`, from the first example, so each batch holds the same examples as
in one process), has Ray Data's actors (each loading the model once per call) answer them, and
returns the answers in order. Everything else (texts, label embeddings, the metrics) runs on the
model loaded here, once, over all the gathered predictions: the metrics equal one process's.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import ray

from vlkit.scale.cluster import actor_pool, pool_size

# model method → how the answers of its batches join: arrays stacked, lists concatenated
FANNED = {
    "embed_images": np.concatenate,
    "answer": lambda parts: [a for part in parts for a in part],
    "caption": lambda parts: [a for part in parts for a in part],
}
BATCHES_PER_CALL = 64  # per actor: how many batches the runners hand over in one call


class Caller:
    """One actor: loads the model once, then runs pickled (method, args, kwargs) batches."""

    def __init__(self, model: str, max_new_tokens: int):
        from vlkit.api import load

        self.model = load(model, max_new_tokens=max_new_tokens)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        answers = []
        for call in batch["call"]:
            name, args, kwargs = pickle.loads(call)
            answers.append(pickle.dumps(getattr(self.model, name)(*args, **kwargs)))
        return {"position": batch["position"], "answer": np.array(answers, dtype=object)}


class FannedModel:
    """`model` (loaded from `path`), with its `FANNED` methods run on `workers` actors in batches
    of `batch_size` images; any other attribute is the model's own."""

    def __init__(self, model, path: str, batch_size: int, max_new_tokens: int, workers: int | None = None):
        self._model, self._path, self._batch_size = model, path, batch_size
        self._max_new_tokens, self._workers = max_new_tokens, pool_size(workers)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._model, name)  # AttributeError as the model's: kind_of sees its abilities
        return partial(self._fan_out, name) if name in FANNED else found

    def _fan_out(self, name: str, images: Sequence, *args, **kwargs):
        """model.name(images, *args, **kwargs), batch by batch on the actors; an argument as long
        as `images` is cut with them, any other is passed to every batch."""
        n, size = len(images), self._batch_size
        cut = lambda x, s: x[s : s + size] if _per_image(x, n) else x  # noqa: E731
        rows = [
            {
                "position": s,
                "call": pickle.dumps(
                    (
                        name,
                        (images[s : s + size], *(cut(a, s) for a in args)),
                        {k: cut(v, s) for k, v in kwargs.items()},
                    )
                ),
            }
            for s in range(0, n, size)
        ]
        if not rows:
            return getattr(self._model, name)(images, *args, **kwargs)
        done = (
            ray.data.from_items(rows)
            .map_batches(
                Caller,
                fn_constructor_args=(self._path, self._max_new_tokens),
                batch_size=1,
                **actor_pool(min(self._workers, len(rows))),
            )
            .take_all()
        )
        parts = [pickle.loads(r["answer"]) for r in sorted(done, key=lambda r: int(r["position"]))]
        if len(parts) != len(rows):
            raise RuntimeError(f"{name}: {len(parts)} answered batches for {len(rows)}")
        return FANNED[name](parts)


def _per_image(value, n: int) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and len(value) == n and not isinstance(value, str)


def evaluate(model_path: str, workers: int | None = None, **run_eval_args) -> dict:
    """`vlkit.eval.run.run_eval` on Ray (connected already: `cluster.connected`): the same
    arguments, the same outputs; `workers` actors (None: one per CPU)."""
    from vlkit.eval.run import run_eval

    batch_size = run_eval_args.get("batch_size", 32)
    max_new_tokens = run_eval_args.get("max_new_tokens", 16)
    workers = pool_size(workers)

    def fan_out(model) -> FannedModel:
        path = str(getattr(model, "path", None) or model_path)
        return FannedModel(model, path, batch_size, max_new_tokens, workers)

    call_size = batch_size * workers * BATCHES_PER_CALL
    return run_eval(model_path, wrap=fan_out, call_size=call_size, **run_eval_args)
