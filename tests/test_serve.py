"""The OpenAI-compatible server: a tiny Llama on loopback, the official openai client."""

import json
import threading
import urllib.request

import openai
import pytest
import torch

from vlkit.config import VLMConfig
from vlkit.decoding import Decoding
from vlkit.generation import BatchingEngine, Engine
from vlkit.models.language_models import gpt_tiny
from vlkit.models.registry import build_language_model
from vlkit.serve.app import create_app
from vlkit.serve.server import BackgroundServer

TEXTS = [
    "a red circle and a blue square",
    "Question: How many shapes are there? Answer: There are two shapes.",
    "Describe the image in detail. The image shows a small green star on the left.",
] * 20


def tiny_lm(folder) -> str:
    """Saves a random 2-layer gpt-tiny (Llama, ChatML tokenizer) into `folder`; returns its path."""
    torch.manual_seed(0)
    lm, tokenizer = gpt_tiny(
        VLMConfig(lm_width=32, lm_layers=2, lm_heads=4, lm_vocab_size=300, max_length=504), None, TEXTS
    )
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    path = tiny_lm(tmp_path_factory.mktemp("lm"))
    model, tokenizer = build_language_model(path, VLMConfig())
    return path, model.eval(), tokenizer


@pytest.fixture(scope="module")
def server(lm):
    path, model, tokenizer = lm
    engine = BatchingEngine(Engine(model, tokenizer), max_batch=8, wait_ms=50)
    with BackgroundServer(create_app(engine, "tiny")) as url:
        yield url, engine


def generate_one(model, tokenizer, messages, max_tokens: int) -> str:
    """The request alone, greedy, no prefix cache."""
    engine = Engine(model, tokenizer, prefix_cache=False)
    return engine.complete(messages, Decoding(max_new_tokens=max_tokens)).text


def ask(i: int) -> list[dict]:
    return [{"role": "user", "content": f"How many shapes are there in image {i}?" + " please" * i}]


def test_openai_client_chat_completion_matches_in_process_generation(server, lm):
    url, _ = server
    _, model, tokenizer = lm
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=ask(1), max_tokens=12, temperature=0)
    assert reply.choices[0].message.content == generate_one(model, tokenizer, ask(1), 12)
    assert reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_greedy_batched_outputs_equal_each_request_alone(server, lm):
    url, engine = server
    _, model, tokenizer = lm
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    alone = [generate_one(model, tokenizer, ask(i), 10) for i in range(6)]
    before = len(engine.batches)
    results = [None] * 6

    def call(i):
        r = client.chat.completions.create(model="tiny", messages=ask(i), max_tokens=10, temperature=0)
        results[i] = r.choices[0].message.content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
    assert max(engine.batches[before:]) > 1  # the prompts of different lengths really were batched


def test_stream_and_stop(server):
    url, _ = server
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    full = (
        client.chat.completions.create(model="tiny", messages=ask(2), max_tokens=16)
        .choices[0]
        .message.content
    )
    chunks = client.chat.completions.create(model="tiny", messages=ask(2), max_tokens=16, stream=True)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) > 1  # sent as generated, not as one chunk at the end
    assert "".join(pieces) == full
    if len(full) > 3:
        stop = full[2:4]
        cut = client.chat.completions.create(model="tiny", messages=ask(2), max_tokens=16, stop=[stop])
        assert cut.choices[0].message.content == full[: full.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "tiny"}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
    ],
)
def test_bad_requests_get_openai_error_json_naming_the_field(server, body, param):
    url, _ = server
    request = urllib.request.Request(
        f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400
    error = json.loads(e.value.read())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=5
        )


def test_health(server):
    url, _ = server
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok", "model": "tiny"}


def test_prefix_cache_gives_the_same_greedy_tokens(lm):
    """Long shared system prompt: cached prefix + middle padding == plain left padding == alone."""
    _, model, tokenizer = lm
    system = {"role": "system", "content": " ".join(TEXTS[:6])}
    plain, cached = Engine(model, tokenizer, prefix_cache=False), Engine(model, tokenizer)
    requests = [plain.request([system, *ask(i)], Decoding(max_new_tokens=8)) for i in range(5)]
    alone = [plain.generate([r])[0].text for r in requests]
    batched = [c.text for c in cached.generate(requests[:3])]
    batched += [c.text for c in cached.generate(requests[3:])]
    single = cached.generate(requests[:1])[0].text
    assert batched == alone and single == alone[0]
    cache = cached.prefix_cache
    assert cache.hits == 2 and len(cache.entries) == 1


@pytest.mark.slow  # a second Python process loading torch (~5 s)
def test_vlkit_serve_command(lm, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    path, _, _ = lm
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlkit", "serve", "--lm", path, "--port", str(port)], env=env
    )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "vlkit serve did not start"
                time.sleep(0.2)
        assert [m.id for m in models.data] == [path]
        reply = client.chat.completions.create(model=path, messages=ask(0), max_tokens=4)
        assert reply.usage.completion_tokens <= 4
    finally:
        proc.terminate()
        proc.wait(timeout=20)
