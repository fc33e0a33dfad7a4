"""Teachers: who writes the instruction data, named by a spec string.

    template:                     the symbolic truth, no LLM (vlkit.data.instruct_template)
    local:smollm2-135m            a registry language model (or local:/path/to/folder), in-process
    openai:MODEL@BASE_URL         any OpenAI-compatible chat-completions endpoint, official client

LLM teachers share one call, `complete(messages, settings) -> str`, synchronous: the runner
calls it from a thread pool, which is enough for I/O-bound HTTP and keeps retries readable.
`Caller` adds what a run at scale needs around it: the SQLite cache, retries with exponential
backoff on transient failures, and a per-minute rate limit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vlkit.decoding import Decoding


@dataclass
class Settings:
    """How a teacher is called: the `Decoding` (greedy, 512 new tokens by default), and the
    timeouts, retries and rate limit around each call."""

    decoding: Decoding = Decoding(max_new_tokens=512)
    timeout: float = 120.0  # seconds per request
    retries: int = 4  # extra attempts after a transient failure
    backoff: float = 0.5  # first wait in seconds; doubles per retry
    rate_per_minute: float = 0.0  # 0 = unlimited

    def cache_fields(self) -> dict:
        """What changes the reply (not timeouts or retries)."""
        return self.decoding.openai_fields()


class Transient(RuntimeError):
    """A failure worth retrying: timeout, 429, 5xx, a dropped connection."""


class Teacher:
    name = "teacher"
    llm = True

    def complete(self, messages: list[dict], settings: Settings) -> str:
        raise NotImplementedError


class TemplateTeacher(Teacher):
    """Writes records directly from the symbolic context (see vlkit.data.instruct_template)."""

    name = "template:"
    llm = False


class OpenAITeacher(Teacher):
    def __init__(self, model: str, base_url: str, api_key: str):
        import openai

        self.name = f"openai:{model}@{base_url}"
        self.model = model
        # Our own retries (counted, logged, with the run's backoff), not the client's silent ones.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    def complete(self, messages: list[dict], settings: Settings) -> str:
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                timeout=settings.timeout,
                **settings.decoding.openai_fields(),
            )
        except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as e:
            raise Transient(f"{type(e).__name__}: {e}") from None
        except openai.APIStatusError as e:
            if e.status_code >= 500:
                raise Transient(f"HTTP {e.status_code}: {e.message}") from None
            raise ValueError(f"HTTP {e.status_code}: {e.message}") from None
        if isinstance(reply, str) or not getattr(reply, "choices", None):
            raise ValueError(f"malformed response (no choices): {str(reply)[:80]!r}")
        return reply.choices[0].message.content or ""


class LocalTeacher(Teacher):
    """A registry causal LM run in-process by the generation `Engine`; one generate at a time (a
    lock). The engine's prefix cache reads the system prompt and few-shot turns once."""

    def __init__(self, name: str):
        from vlkit.config import VLMConfig
        from vlkit.generation import Engine
        from vlkit.models.registry import build_language_model

        self.name = f"local:{name}"
        self.engine = Engine(*build_language_model(name, VLMConfig()))
        self.lock = threading.Lock()

    def complete(self, messages: list[dict], settings: Settings) -> str:
        with self.lock:
            return self.engine.complete(messages, settings.decoding).text


def parse_teacher(spec: str, api_key_env: str = "OPENAI_API_KEY") -> Teacher:
    """A teacher from its spec string; a missing API key for a non-local URL is an error."""
    kind, _, rest = spec.partition(":")
    if kind == "template":
        return TemplateTeacher()
    if kind == "local" and rest:
        return LocalTeacher(rest)
    if kind == "openai" and "@" in rest:
        model, _, base_url = rest.partition("@")
        key = os.environ.get(api_key_env)
        if not key:
            host = base_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
            if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
                raise ValueError(
                    f"teacher {spec!r}: set the API key in ${api_key_env} (or pass --api-key-env)"
                )
            key = "local"  # the local server ignores it; the client requires one
        return OpenAITeacher(model, base_url, key)
    raise ValueError(f"teacher {spec!r}: expected 'template:', 'local:NAME' or 'openai:MODEL@BASE_URL'")


class Cache:
    """Teacher replies by content hash of (teacher, messages, settings) in one SQLite file.

    Thread-safe (one connection, a lock); every put commits, so a killed run keeps its calls.
    """

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a killed process (not a power cut) without an fsync each.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, teacher TEXT, reply TEXT, created REAL)"
        )
        self.lock = threading.Lock()

    @staticmethod
    def key(teacher: str, messages: list[dict], settings: dict) -> str:
        blob = json.dumps([teacher, messages, settings], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, teacher: str, reply: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, teacher, reply, time.time())
            )

    def __len__(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


class RateLimiter:
    """At most `per_minute` call starts per minute, evenly spaced (0 = unlimited)."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))


@dataclass
class Counters:
    calls: int = 0  # requests sent to a teacher (including retries)
    cache_hits: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # transient failures by reason
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def failure(self, reason: str) -> None:
        with self.lock:
            self.failures[reason] = self.failures.get(reason, 0) + 1

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "calls": self.calls,
                "cache_hits": self.cache_hits,
                "retries": self.retries,
                "failures": dict(self.failures),
            }


class Caller:
    """cache -> rate limit -> teacher, retrying transient failures with exponential backoff.

    `__call__` returns the reply text or raises: `Transient` after the last retry, `ValueError`
    for a reply that will not get better by asking again. Only non-empty replies are cached.
    """

    def __init__(
        self, teacher: Teacher, settings: Settings, cache: Cache | None, counters: Counters | None = None
    ):
        self.teacher, self.settings, self.cache = teacher, settings, cache
        self.counters = counters or Counters()
        self.limiter = RateLimiter(settings.rate_per_minute)

    def __call__(self, messages: list[dict]) -> str:
        key = Cache.key(self.teacher.name, messages, self.settings.cache_fields())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.counters.add("cache_hits")
                return hit
        for attempt in range(self.settings.retries + 1):
            self.limiter.wait()
            self.counters.add("calls")
            try:
                reply = self.teacher.complete(messages, self.settings)
                break
            except Transient as e:
                self.counters.failure(str(e).split(":")[0])
                if attempt == self.settings.retries:
                    raise
                self.counters.add("retries")
                time.sleep(self.settings.backoff * 2**attempt)
        if reply.strip() and self.cache is not None:
            self.cache.put(key, self.teacher.name, reply)
        return reply


def llm_caller(
    teacher: Teacher, settings: Settings | None, cache: str | Path | None, out: Path, counters: Counters
) -> Caller | None:
    """An LLM teacher behind the cache (default `out/cache.sqlite`), retries and rate limit;
    None for the template teacher, which needs none of them."""
    if not teacher.llm:
        return None
    return Caller(teacher, settings or Settings(), Cache(cache or out / "cache.sqlite"), counters)
