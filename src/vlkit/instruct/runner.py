"""Runs generation tasks concurrently, in order, resumably: nothing lost, nothing duplicated.

A task is `(id, payload)`; a worker turns the payload into a record (or raises `Rejected`).
Workers run in a thread pool (`concurrency` at a time, a window of pending tasks so memory
stays flat), but results are committed in task order by the main thread: each one is appended
as one JSON line to `records.jsonl` or `rejected.jsonl` and flushed. A rerun reads both files,
skips every id already there, and drops a torn last line (the one a kill interrupted), so the
task is redone, from the teacher cache. Order also makes the output deterministic.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from vlkit.data.contexts import Context, open_source, remove_partial_images
from vlkit.instruct.check import Rejected
from vlkit.instruct.teachers import Counters, Transient
from vlkit.jsonl import cut_torn_tail, read_jsonl

log = logging.getLogger(__name__)
RECORDS, REJECTED = "records.jsonl", "rejected.jsonl"
KILL_AFTER_ENV = "VLKIT_INSTRUCT_KILL_AFTER"  # tests: SIGKILL this process after N commits


def read_log(path: Path) -> list[dict]:
    """Every record of an append-only log; a torn last line (a killed writer) is dropped and cut
    off the file, and a bad line before it is an error naming file:line."""
    if not path.is_file():
        return []
    if cut_torn_tail(path):
        log.warning("%s: dropped a torn last line (an interrupted run)", path)
    return read_jsonl(path)


def open_run(
    source: str | Iterable[Context], out_dir: str | Path, count: int | None = None, seed: int = 0
) -> tuple[Run, Iterable[Context]]:
    """The output folder's run (a rerun resumes it) and the contexts to work through: a data
    name's (`vlkit.data.contexts.open_source`) or the given ones."""
    contexts = open_source(source, count, seed) if isinstance(source, str) else source
    return Run(out_dir), contexts


class Run:
    """An output folder being filled: done ids, append-only files, counters."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        removed = remove_partial_images(self.out)  # images a killed run was writing
        if removed:
            log.warning("%s: removed %d partial image files left by an interrupted run", self.out, removed)
        self.records = read_log(self.out / RECORDS)
        self.rejected = read_log(self.out / REJECTED)
        self.done = {r["id"] for r in self.records} | {r["id"] for r in self.rejected}
        self.counters = Counters()
        self.new = {"records": 0, "rejected": 0, "skipped": len(self.done)}
        self._files: dict = {}

    def commit(self, task_id: str, result: dict | None, reason: str | None, meta: dict) -> None:
        if result is not None:
            result.setdefault("id", task_id)
            self._append(RECORDS, result)
            self.records.append(result)
            self.new["records"] += 1
        else:
            entry = {"id": task_id, "reason": reason, **meta}
            self._append(REJECTED, entry)
            self.rejected.append(entry)
            self.new["rejected"] += 1
            log.debug("rejected %s: %s", task_id, reason)
        self.done.add(task_id)
        limit = os.environ.get(KILL_AFTER_ENV)
        if limit and self.new["records"] + self.new["rejected"] >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)

    def _append(self, name: str, obj: dict) -> None:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = (self.out / name).open("a", encoding="utf-8")
        f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        f.flush()  # in the OS's hands: survives a killed process

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def run_tasks(
    run: Run,
    tasks: Iterable[tuple[str, object]],
    work: Callable[[object], dict],
    finish: Callable[[str, object, dict], dict] | None = None,
    concurrency: int = 1,
    progress: bool = True,
    total: int | None = None,
) -> None:
    """Runs `work(payload)` for every task not done yet and commits results in task order.

    `finish(id, payload, record) -> record` runs in the main thread in order (dedup, checks);
    it may raise `Rejected`. `work` may raise `Rejected`, `Transient` (retries exhausted) or any
    error from a bad reply: all become rejections with the reason, never a crashed run.
    """
    bar = tqdm(total=total, disable=not progress, desc="instruct", unit="rec", dynamic_ncols=True)
    bar.update(len(run.done))
    window = max(4, 4 * concurrency)
    pending: list[tuple[str, object, Future]] = []
    submitted: set[str] = set()

    def drain(block_until: int) -> None:
        while len(pending) > block_until:
            task_id, payload, fut = pending.pop(0)
            result, reason, meta = None, None, {}
            try:
                record = fut.result()
                result = finish(task_id, payload, record) if finish is not None else record
            except Rejected as e:
                reason = str(e)
            except Transient as e:
                reason = f"teacher failed after retries: {e}"
            except Exception as e:  # a reply no parser expected: log it, keep going
                reason = f"{type(e).__name__}: {e}"
            if reason is not None and hasattr(payload, "meta"):
                meta = payload.meta()
            run.commit(task_id, result, reason, meta)
            bar.update(1)
            c = run.counters
            bar.set_postfix(
                done=run.new["records"], cached=c.cache_hits, rejected=run.new["rejected"], retries=c.retries
            )

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for task_id, payload in tasks:
            if task_id in run.done or task_id in submitted:
                continue
            submitted.add(task_id)
            pending.append((task_id, payload, pool.submit(work, payload)))
            drain(window)
        drain(0)
    bar.close()
    run.close()
