"""`vlkit instruct --ray`: teacher calls answered by Ray actors, each holding the teacher once.

Only the call itself moves: `RayTeacher.complete` sends (messages, settings) to an actor and
waits for its reply. The cache, retries, rate limit and the ordered, resumable commit stay in
this process (`vlkit.instruct.teachers.Caller`, `vlkit.instruct.runner.run_tasks`), so a run on
Ray writes the records one process writes, shares their cache (the teacher's name is its spec),
and a killed run, resumed, loses and duplicates nothing. `--concurrency` bounds the calls in
flight, as without Ray; the actors share them round-robin.
"""

from __future__ import annotations

import itertools
import math
import threading

import ray

from vlkit.instruct.teachers import Settings, Teacher, parse_teacher


class TeacherActor:
    """One actor: the teacher built once from its spec (a local LM loaded once)."""

    def __init__(self, spec: str, api_key_env: str):
        self.teacher = parse_teacher(spec, api_key_env)

    def complete(self, messages: list[dict], settings: Settings) -> str:
        return self.teacher.complete(messages, settings)


class RayTeacher(Teacher):
    """The teacher `spec` (local:NAME | openai:MODEL@URL) on `workers` actors, `concurrency`
    calls in flight in all. A `Transient` or `ValueError` raised on an actor is raised here as
    the same type, so retries and rejections work as in one process."""

    def __init__(self, spec: str, api_key_env: str, workers: int, concurrency: int):
        if not spec.startswith(("local:", "openai:")):
            raise ValueError(
                f"--ray: teacher {spec!r} makes no LLM calls to fan out; use local:NAME or openai:MODEL@URL"
            )
        if spec.startswith("openai:"):
            parse_teacher(spec, api_key_env)  # its errors (a missing key) here, at the boundary
        self.name = spec  # what `parse_teacher(spec).name` is: the cache keys match one process's
        remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(TeacherActor)
        per_actor = max(1, math.ceil(concurrency / workers))
        self.actors = [
            remote.options(max_concurrency=per_actor).remote(spec, api_key_env) for _ in range(workers)
        ]
        self._turn, self._lock = itertools.count(), threading.Lock()

    def complete(self, messages: list[dict], settings: Settings) -> str:
        with self._lock:
            actor = self.actors[next(self._turn) % len(self.actors)]
        return ray.get(actor.complete.remote(messages, settings))
