"""The openai: teacher against a scripted fake server: bad replies, retries, cache, kill and resume."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vlkit.data.contexts import scene_contexts
from vlkit.instruct import Settings, generate_llava
from vlkit.instruct.teachers import parse_teacher

SRC = str(Path(__file__).resolve().parents[1] / "src")


class FakeServer:
    """An OpenAI-compatible endpoint whose reply to each prompt follows a script.

    script(first caption of the query, attempt number, system prompt) -> ("ok", text) | ("status", code) |
    ("malformed", None) | ("disconnect", None). `requests` counts calls per (system prompt, caption).
    """

    def __init__(self, script):
        self.script, self.requests, self.lock = script, {}, threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                caption = body["messages"][-1]["content"].splitlines()[0]
                key = (body["messages"][0]["content"], caption)  # (system prompt = kind, image)
                with fake.lock:
                    fake.requests[key] = attempt = fake.requests.get(key, 0) + 1
                action, value = fake.script(caption, attempt, body["messages"][0]["content"])
                if action == "disconnect":
                    self.close_connection = True
                    return
                if action == "status":
                    return self._send(
                        value, json.dumps({"error": {"message": "try again", "type": "server_error"}})
                    )
                if action == "malformed":
                    return self._send(200, '{"id": "x", "choices": [{"message": ')
                reply = {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": value},
                            "finish_reason": "stop",
                        }
                    ],
                }
                self._send(200, json.dumps(reply))

            def _send(self, code, text):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def good_reply(ctx, system: str = "") -> str:
    n = len(ctx.objects)
    shapes = f"{['one', 'two', 'three'][n - 1]} shape{'s' * (n > 1)}"
    if "chain of reasoning" in system:  # the reasoning kind: another question, or dedup rejects it
        return f"Question: What would I count if I counted every shape twice?\nAnswer: I see {shapes}, so I would count {2 * n}."
    return f"Question: How many shapes are there?\nAnswer: I can see {shapes}."


CONTEXTS = list(scene_contexts(12))
BY_CAPTION = {c.captions[0]: c for c in CONTEXTS}
FAST = Settings(retries=2, backoff=0.01, timeout=10)


def test_bad_replies_are_rejected_or_retried_and_the_run_completes(tmp_path):
    behaviour = {
        0: lambda attempt: ("malformed", None),
        1: lambda attempt: ("ok", ""),
        2: lambda attempt: ("status", 429) if attempt == 1 else ("ok", None),
        3: lambda attempt: ("status", 500) if attempt == 1 else ("ok", None),
        4: lambda attempt: ("disconnect", None) if attempt == 1 else ("ok", None),
        5: lambda attempt: ("status", 503),  # never recovers: rejected after the retries
        6: lambda attempt: ("ok", "Sure! Here are some thoughts about the picture."),
        7: lambda attempt: ("ok", "Question: How many shapes are there?\nAnswer: There are nine shapes."),
    }

    def script(caption, attempt, system):
        ctx = BY_CAPTION[caption]
        i = CONTEXTS.index(ctx)
        action, text = behaviour.get(i, lambda a: ("ok", None))(attempt)
        return action, good_reply(ctx) if action == "ok" and text is None else text

    server = FakeServer(script)
    try:
        teacher = f"openai:fake@{server.url}"
        stats = generate_llava(
            CONTEXTS[:10], tmp_path, teacher, ["conversation"], concurrency=4, settings=FAST, progress=False
        )
    finally:
        server.close()
    rejected = {
        r["id"]: r["reason"] for r in map(json.loads, (tmp_path / "rejected.jsonl").read_text().splitlines())
    }
    ids = [c.id + "-conversation" for c in CONTEXTS]
    assert set(rejected) == {ids[0], ids[1], ids[5], ids[6], ids[7]}
    assert "JSONDecodeError" in rejected[ids[0]] or "malformed" in rejected[ids[0]]
    assert rejected[ids[1]] == "empty reply"
    assert rejected[ids[5]].startswith("teacher failed after retries")
    assert "Question:" in rejected[ids[6]]
    assert rejected[ids[7]].startswith("inconsistent with the scene: count")
    assert stats["records"] == 5 and stats["rejected"] == 5
    # 429, 500, disconnect: one retry each; 503 forever: two retries
    assert stats["retries"] == 5 and stats["runs"][0]["failures"]["RateLimitError"] == 1
    assert stats["consistency"][teacher] == {"checked": 6, "errors": 1, "error_rate": round(1 / 6, 4)}


def test_cache_makes_a_rerun_free(tmp_path):
    server = FakeServer(lambda caption, attempt, system: ("ok", good_reply(BY_CAPTION[caption], system)))
    try:
        teacher = f"openai:fake@{server.url}"
        shared = tmp_path / "replies.sqlite"
        generate_llava(
            CONTEXTS[:4],
            tmp_path / "a",
            teacher,
            ["conversation"],
            settings=FAST,
            cache=shared,
            progress=False,
        )
        stats = generate_llava(
            CONTEXTS[:4],
            tmp_path / "b",
            teacher,
            ["conversation"],
            settings=FAST,
            cache=shared,
            progress=False,
        )
    finally:
        server.close()
    assert stats["records"] == 4 and stats["cache_hits"] == 4 and stats["teacher_calls"] == 0
    assert sorted(server.requests.values()) == [1, 1, 1, 1]
    assert (tmp_path / "a" / "llava.json").read_text() == (tmp_path / "b" / "llava.json").read_text()


def llava_command(url: str) -> list[str]:
    """`vlkit instruct llava` on 12 scenes through the fake teacher at `url` (no --out)."""
    command = [
        sys.executable,
        "-m",
        "vlkit",
        "-q",
        "instruct",
        "llava",
        "--source",
        "scenes",
        "--count",
        "12",
    ]
    return command + [
        "--kinds",
        "conversation,reasoning",
        "--teacher",
        f"openai:fake@{url}",
        "--concurrency",
        "3",
    ]


@pytest.mark.slow  # two CLI processes (~8 s)
def test_killed_run_resumes_without_losing_or_repeating(tmp_path):
    server = FakeServer(lambda caption, attempt, system: ("ok", good_reply(BY_CAPTION[caption], system)))
    out = tmp_path / "set"
    command = llava_command(server.url)
    command += ["--out", str(out)]
    env = {**os.environ, "PYTHONPATH": SRC, "VLKIT_INSTRUCT_KILL_AFTER": "7"}
    try:
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == -9, first.stderr  # SIGKILL midway
        committed = len((out / "records.jsonl").read_text().splitlines())
        with sqlite3.connect(out / "cache.sqlite") as db:
            cached = db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        assert committed == 7 and cached >= committed and not (out / "llava.json").exists()
        env.pop("VLKIT_INSTRUCT_KILL_AFTER")
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
    finally:
        server.close()
    data = json.loads((out / "llava.json").read_text())
    ids = [r["id"] for r in data]
    assert len(ids) == len(set(ids)) == 24
    assert ids == [f"scenes-0-{i:06d}-{k}" for i in range(12) for k in ("conversation", "reasoning")]
    stats = json.loads((out / "stats.json").read_text())
    run2 = stats["runs"][-1]
    assert run2["skipped"] == 7 and run2["records"] == 17
    assert run2["cache_hits"] == cached - committed  # replies received before the kill were not asked again
    assert run2["calls"] == 24 - cached
    # 12 scenes x 2 kinds = 24 distinct prompts; a prompt asked twice was in flight at the kill
    assert sum(server.requests.values()) - 24 <= 3


def test_teacher_specs():
    assert parse_teacher("template:").llm is False
    assert parse_teacher("openai:m@http://127.0.0.1:9/v1").name == "openai:m@http://127.0.0.1:9/v1"
    with pytest.raises(ValueError, match="API key"):
        parse_teacher("openai:gpt@https://api.example.com/v1", api_key_env="VLKIT_TEST_NO_SUCH_KEY")
    with pytest.raises(ValueError, match="expected"):
        parse_teacher("gpt4")


def test_rate_limit_spaces_calls():
    import time

    from vlkit.instruct.teachers import RateLimiter

    limiter = RateLimiter(per_minute=1200)  # one call every 50 ms
    start = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - start >= 0.19  # calls 2..5 waited 50 ms each
    unlimited = RateLimiter(0)
    start = time.monotonic()
    for _ in range(100):
        unlimited.wait()
    assert time.monotonic() - start < 0.05
