"""LLaVA-style generation: conversation, detailed description and complex reasoning per image.

An LLM teacher reads the symbolic context (captions + boxes) under a system prompt and few-shot
examples per kind (vlkit.instruct.prompts); the template teacher writes from the truth. Both
go through the same pipeline: parse -> dedup per image -> validate -> consistency with the
truth (scenes) -> records.jsonl, then llava.json / chat.jsonl / stats.json / CARD.md.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vlkit.data import instruct_template as template
from vlkit.data.contexts import Context, save_image
from vlkit.data.conversations import DETAIL_QUESTIONS
from vlkit.instruct import check
from vlkit.instruct.output import RUN_LOG, write_outputs
from vlkit.instruct.prompts import KINDS, llava_messages
from vlkit.instruct.runner import Run, open_run, run_tasks
from vlkit.instruct.teachers import Caller, Settings, Teacher, llm_caller, parse_teacher

MIN_DETAIL_WORDS = 10


@dataclass
class Job:
    ctx: Context
    kind: str
    teacher: str

    def meta(self) -> dict:
        return {"kind": self.kind, "image": self.ctx.image, "teacher": self.teacher}


def llm_conversations(caller: Caller, ctx: Context, kind: str) -> list[dict]:
    """Asks the teacher for one record of `kind` and parses the reply into LLaVA turns."""
    reply = caller(llava_messages(kind, ctx.symbolic()))
    if kind == "detail":
        rng = random.Random(zlib.crc32(ctx.id.encode()))
        pairs = [(rng.choice(DETAIL_QUESTIONS), check.parse_answer(reply))]
        if len(pairs[0][1].split()) < MIN_DETAIL_WORDS:
            raise check.Rejected(f"too short for a detailed description: {len(pairs[0][1].split())} words")
    else:
        pairs = check.parse_pairs(reply)
        if kind == "reasoning":
            pairs = pairs[:1]
    if kind == "reasoning" and check.coordinate_leak(pairs[0][1]):
        raise check.Rejected("reasoning answer quotes coordinates")
    return template.to_conversations(pairs)


class Finisher:
    """The ordered, main-thread checks: near-duplicate questions per image, format, truth."""

    def __init__(self, records: Iterable[dict]):
        self.seen: dict[str, list[frozenset[str]]] = {}
        for r in records:  # a resumed run remembers what each image was already asked
            seen = self.seen.setdefault(r["image"], [])
            seen += [check.question_key(t["value"]) for t in r["conversations"][::2]]

    def __call__(self, task_id: str, job, record: dict) -> dict:
        seen = list(self.seen.get(job.ctx.image, []))
        turns = check.dedup_turns(record["conversations"], seen)
        if not turns:
            raise check.Rejected(
                "duplicate questions: every question repeats one already asked of this image"
            )
        reasons = check.validate(turns)
        if reasons:
            raise check.Rejected("invalid record: " + "; ".join(reasons))
        if job.ctx.exact:
            errors = check.consistency_errors(job.ctx, turns)
            if errors:
                raise check.Rejected("inconsistent with the scene: " + "; ".join(errors))
            record["checked"] = True
        self.seen[job.ctx.image] = seen
        record["conversations"] = turns
        return record


def generate_llava(
    source: str | Iterable[Context],
    out_dir: str | Path,
    teacher: str | Teacher = "template:",
    kinds: Iterable[str] = KINDS,
    count: int | None = None,
    seed: int = 0,
    concurrency: int = 1,
    settings: Settings | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    cache: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Writes a LLaVA instruction set into `out_dir` and returns its stats (see stats.json).

    source: 'scenes' (with count), a COCO file/folder, a LLaVA JSON, a captions.jsonl folder, or
    contexts. Resumes an interrupted run in the same folder; teacher replies come from the
    SQLite `cache` (default `out_dir/cache.sqlite`; share one file between sets) when already asked.
    """
    kinds = list(kinds)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kind {k!r}: valid kinds are {', '.join(KINDS)}")
    teacher = parse_teacher(teacher, api_key_env) if isinstance(teacher, str) else teacher
    run, contexts = open_run(source, out_dir, count, seed)
    out = run.out
    caller = llm_caller(teacher, settings, cache, out, run.counters)

    def tasks() -> Iterator[tuple[str, Job]]:
        for ctx in contexts:
            for kind in kinds:
                yield f"{ctx.id}-{kind}", Job(ctx, kind, teacher.name)

    def work(job: Job) -> dict:
        save_image(job.ctx, out)
        if caller is None:
            conversations = template.write(job.ctx, job.kind)
        else:
            conversations = llm_conversations(caller, job.ctx, job.kind)
        return {
            "image": job.ctx.image,
            "kind": job.kind,
            "teacher": job.teacher,
            "conversations": conversations,
        }

    total = count * len(kinds) if count else None
    run_tasks(run, tasks(), work, Finisher(run.records), concurrency, progress, total)
    return finish_run(run, f"LLaVA-style instruction data ({', '.join(kinds)})")


def finish_run(run: Run, title: str) -> dict:
    entry = {**run.counters.as_dict(), **run.new}
    with (run.out / RUN_LOG).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return write_outputs(run.out, run.records, run.rejected, title)
