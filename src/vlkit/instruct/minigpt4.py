"""MiniGPT-4's two-stage data: a VLM describes each image, a teacher cleans the description.

Stage 1: the describer (a generative VLM with `chat(messages, max_new_tokens) -> str`) is asked
for a detailed description; while the text is under 80 tokens it is asked to "Continue" (at
most `max_rounds` times). Stage 2: a teacher fixes errors, repetition, meaningless characters
and non-English sentences (prompts.CLEAN). Filters then reject, with a logged reason, what is
still unusable. Both stages are cached in the run's SQLite file, so a rerun redoes nothing.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vlkit.data.contexts import Context, save_image
from vlkit.data.conversations import DETAIL_QUESTIONS
from vlkit.instruct import check
from vlkit.instruct.llava import Finisher, finish_run
from vlkit.instruct.prompts import CLEAN, CONTINUE, DESCRIBE, MIN_DESCRIPTION_TOKENS
from vlkit.instruct.runner import open_run, run_tasks
from vlkit.instruct.teachers import Cache, Caller, Settings, Teacher, llm_caller, parse_teacher

_CHATTER = re.compile(
    r"^\s*(sure|certainly|here is|here's|i have|i've|the corrected|corrected paragraph)\b[^\n]*:\s*", re.I
)


def count_tokens(describer, text: str) -> int:
    tokenizer = getattr(describer, "tokenizer", None)
    if tokenizer is None:
        return len(text.split())
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def describe(
    describer, image, max_new_tokens: int = 128, max_rounds: int = 3, min_tokens: int = MIN_DESCRIPTION_TOKENS
) -> str:
    """Stage 1: the description, continued while it is shorter than `min_tokens`."""
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": DESCRIBE}]}
    ]
    parts: list[str] = []
    for _ in range(max_rounds):
        reply = (describer.chat(messages, max_new_tokens=max_new_tokens) or "").strip()
        if not reply:
            break
        parts.append(reply)
        if count_tokens(describer, " ".join(parts)) >= min_tokens:
            break
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": CONTINUE}]
    return " ".join(parts)


def filter_reasons(text: str, min_words: int = 8) -> list[str]:
    """Why a cleaned description is still unusable (empty list: keep it)."""
    words = text.split()
    if len(words) < min_words:
        return [f"too short: {len(words)} words < {min_words}"]
    reasons = []
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.95:
        reasons.append("non-English text remains")
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if len(sentences) != len(set(sentences)):
        reasons.append("repeated sentences remain")
    if re.search(r"(.)\1{5,}|[^\w\s.,;:!?'\"()\-%/&]{3,}", text):
        reasons.append("meaningless characters remain")
    if not re.search(r"[.!?]\s*$", text):
        reasons.append("ends in an incomplete sentence")
    return reasons


@dataclass
class Job:
    ctx: Context
    teacher: str
    kind: str = "minigpt4"

    def meta(self) -> dict:
        return {"kind": self.kind, "image": self.ctx.image, "teacher": self.teacher}


def generate_minigpt4(
    source: str | Iterable[Context],
    out_dir: str | Path,
    describer,
    teacher: str | Teacher,
    count: int | None = None,
    seed: int = 0,
    concurrency: int = 1,
    settings: Settings | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    cache: str | Path | None = None,
    describer_name: str | None = None,
    min_words: int = 8,
    progress: bool = True,
) -> dict:
    """Describe (describer) -> clean (teacher) -> filter; writes the same files as generate_llava.

    describer: an object with `chat(messages, max_new_tokens)` (e.g. `vlkit.load(run)`);
    `describer_name` keys its cache entries (default: its class name).
    """
    teacher = parse_teacher(teacher, api_key_env) if isinstance(teacher, str) else teacher
    if not teacher.llm:
        raise ValueError("minigpt4: the cleaning stage needs an LLM teacher (local:NAME or openai:MODEL@URL)")
    run, contexts = open_run(source, out_dir, count, seed)
    out = run.out
    caller = llm_caller(teacher, settings, cache, out, run.counters)
    name = describer_name or type(describer).__name__
    describer_lock = threading.Lock()  # one in-process model: one image at a time

    def work(job: Job) -> dict:
        save_image(job.ctx, out)
        image = str(out / job.ctx.image) if job.ctx.array is not None else job.ctx.image
        raw = _cached_description(describer, describer_lock, name, image, caller.cache, run.counters)
        cleaned = _clean(raw, caller, min_words)
        question = random.Random(zlib.crc32(job.ctx.id.encode())).choice(DETAIL_QUESTIONS)
        turns = [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": cleaned}]
        return {
            "image": job.ctx.image,
            "kind": "minigpt4",
            "teacher": job.teacher,
            "raw": raw,
            "conversations": turns,
        }

    def tasks() -> Iterator[tuple[str, Job]]:
        for ctx in contexts:
            yield f"{ctx.id}-minigpt4", Job(ctx, teacher.name)

    run_tasks(run, tasks(), work, Finisher(run.records), concurrency, progress, count)
    return finish_run(run, "MiniGPT-4-style detailed descriptions (described, then cleaned)")


def _cached_description(
    describer, lock: threading.Lock, name: str, image: str, cache: Cache, counters
) -> str:
    """Stage 1, from the cache when this describer (`name`) has already seen these image bytes;
    `lock` lets one thread at a time use the describer (one in-process model)."""
    key = Cache.key(f"describer:{name}", [{"image": _file_hash(image)}], {"prompt": DESCRIBE})
    raw = cache.get(key)
    if raw is None:
        with lock:
            raw = describe(describer, image)
        if raw:
            cache.put(key, f"describer:{name}", raw)
    else:
        counters.add("cache_hits")
    if not raw:
        raise check.Rejected("stage 1: the describer returned nothing")
    return raw


def _clean(raw: str, caller: Caller, min_words: int) -> str:
    """Stage 2: the teacher's cleaned text, rejected when the filters still find it unusable."""
    cleaned = _CHATTER.sub("", caller([{"role": "user", "content": CLEAN.format(text=raw)}])).strip()
    if not cleaned:
        raise check.Rejected("stage 2: empty reply from the teacher")
    reasons = filter_reasons(cleaned, min_words)
    if reasons:
        raise check.Rejected("filter: " + "; ".join(reasons))
    return cleaned


def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
