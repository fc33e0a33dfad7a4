"""Micro-batching around the `Engine`, for concurrent callers (the server).

Concurrent requests are collected while they keep arriving (gaps under `wait_ms`, up to
`max_batch`), grouped by `Decoding.batch_key()` and by whether they hold an image, and each
group runs as one `Engine.generate` call. On a CPU a batch of 8 short prompts costs little more
than one (the matmuls are too small to fill the cores), which is where the server's throughput
under concurrency comes from; a greedy request gives the same tokens batched as alone.

`max_pending` bounds the requests held (queued or generating): past it `submit` raises `Busy`
(the server's 429) instead of letting memory grow. A request with `on_text` streams its reply
(`vlkit.generation.streaming`) while batched with the others.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from vlkit.decoding import Decoding
from vlkit.generation.engine import Engine, Request, RequestError


class Busy(RuntimeError):
    """`max_pending` requests are already held: try again later."""


class BatchingEngine:
    """A background thread that serves `submit` calls in micro-batches (see the module doc)."""

    def __init__(
        self, engine: Engine, max_batch: int = 8, wait_ms: float = 10.0, max_pending: int | None = None
    ):
        self.engine = engine
        self.max_batch, self.wait = max_batch, wait_ms / 1000
        self.max_pending, self.pending = max_pending, 0
        self.lock = threading.Lock()
        self.queue: queue.Queue[Request] = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches run (for benchmarks)
        threading.Thread(target=self._loop, daemon=True, name="vlkit-generate").start()

    def submit(
        self,
        messages: Sequence[dict],
        decoding: Decoding,
        on_text: Callable[[str], None] | None = None,
        fit: bool = False,
    ) -> Future:
        """Chat messages → a Future of their `Completion`; bad input raises `RequestError` here,
        a full engine `Busy`. `on_text` receives the reply's pieces as they are generated.
        fit: `max_new_tokens` is an upper bound, lowered to what the model's context leaves."""
        request = self.engine.request(messages, decoding, on_text)
        limit = self.engine.max_positions
        if fit and limit and len(request.ids) < limit < len(request.ids) + decoding.max_new_tokens:
            request.decoding = dataclasses.replace(decoding, max_new_tokens=limit - len(request.ids))
            decoding = request.decoding
        if limit and len(request.ids) + decoding.max_new_tokens > limit:
            raise RequestError(
                f"prompt of {len(request.ids)} tokens + max_tokens {decoding.max_new_tokens} exceeds "
                f"the model's {limit} positions",
                "max_tokens",
            )
        with self.lock:
            if self.max_pending is not None and self.pending >= self.max_pending:
                raise Busy(f"{self.pending} requests are already waiting or generating")
            self.pending += 1
        request.future.add_done_callback(self._release)
        self.queue.put(request)
        return request.future

    def _release(self, _: Future) -> None:
        with self.lock:
            self.pending -= 1

    def _collect(self) -> list[Request]:
        batch = [self.queue.get()]
        # Keep collecting while requests keep coming (each arrival extends the wait), but
        # never hold the first request longer than 10 waits.
        cap = time.monotonic() + 10 * self.wait
        while len(batch) < self.max_batch:
            timeout = min(self.wait, cap - time.monotonic())
            try:
                batch.append(self.queue.get(timeout=max(0.0, timeout)))
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            groups: dict[tuple, list[Request]] = {}
            for r in self._collect():
                groups.setdefault((r.decoding.batch_key(), r.image is None), []).append(r)
            for group in groups.values():
                self.batches.append(len(group))
                try:
                    for r, result in zip(group, self.engine.generate(group)):
                        r.future.set_result(result)
                except Exception as e:  # one failed generate fails its requests, not the server
                    for r in group:
                        r.future.set_exception(e)
