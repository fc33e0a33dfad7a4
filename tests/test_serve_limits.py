"""Hardening, each case a test: the event loop is never blocked, the API key, the body limit,
image limits (pixels, bombs, corrupt data, remote URLs never fetched), the bounded queue, the
max_tokens cap and the model's context."""

import base64
import io
import socket
import struct
import threading
import time
import zlib

import numpy as np
import openai
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

import vlkit
from vlkit import cli
from vlkit.generation import BatchingEngine
from vlkit.serve import images as serve_images
from vlkit.serve import server
from vlkit.serve.app import create_app
from vlkit.serve.schemas import Limits
from vlkit.serve.server import BackgroundServer

NAME = "tiny-vlm"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 70-byte PNG whose header claims width x height pixels (10 G by default)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def chat(url: str = None, text: str = "What color is it?", max_tokens: int = 4) -> dict:
    image = np.zeros((32, 32, 3), np.uint8)
    parts = [
        {"type": "image_url", "image_url": {"url": url or data_url(png(image))}},
        {"type": "text", "text": text},
    ]
    return {"model": NAME, "messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens}


@pytest.fixture(scope="module")
def vlm(tiny_vlm_run):
    return vlkit.load(tiny_vlm_run)


@pytest.fixture
def make_app(vlm):
    def make(limits: Limits | None = None, max_pending: int | None = None, api_key: str | None = None):
        engine = BatchingEngine(vlm.engine, max_batch=4, wait_ms=1, max_pending=max_pending)
        return create_app(engine, NAME, limits, api_key)

    return make


def held(monkeypatch, owner, name: str) -> tuple[threading.Event, threading.Event]:
    """Makes owner.name wait for `release` once it has set `entered`."""
    entered, release, original = threading.Event(), threading.Event(), getattr(owner, name)

    def waiting(*args, **kwargs):
        entered.set()
        assert release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, waiting)
    return entered, release


def in_thread(fn) -> tuple[threading.Thread, list]:
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("stage", ["image decoding", "tokenising", "generation"])
def test_health_answers_while_a_request_is_decoded_tokenised_or_generated(make_app, vlm, monkeypatch, stage):
    owner, name = {
        "image decoding": (serve_images, "load_image"),
        "tokenising": (vlm.engine, "request"),
        "generation": (vlm.engine, "generate"),
    }[stage]
    entered, release = held(monkeypatch, owner, name)
    with BackgroundServer(make_app()) as url:
        thread, out = in_thread(lambda: requests.post(f"{url}/chat/completions", json=chat(), timeout=60))
        assert entered.wait(timeout=30)
        start = time.perf_counter()
        health = requests.get(url.removesuffix("/v1") + "/health", timeout=5)
        took = time.perf_counter() - start
        release.set()
        thread.join(timeout=60)
    assert health.status_code == 200 and took < 0.5, f"/health took {took:.3f} s during {stage}"
    assert out[0].status_code == 200


def test_api_key_from_the_option_or_the_environment(make_app, tiny_vlm_run, monkeypatch):
    with BackgroundServer(make_app(api_key="sekret")) as url:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        assert requests.post(f"{url}/chat/completions", json=chat(), timeout=30).status_code == 401
        client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
        assert client.chat.completions.create(**chat()).choices[0].finish_reason in ("stop", "length")
        assert requests.get(url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    apps = []
    monkeypatch.setenv("VLKIT_API_KEY", "from-env")
    monkeypatch.setattr(server, "run", lambda app, host, port: apps.append(app))
    cli.main(["serve", str(tiny_vlm_run)])
    client = TestClient(apps[0])
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_a_body_over_the_limit_is_413(make_app):
    client = TestClient(make_app(Limits(max_body_bytes=4096)))
    body = chat(text="word " * 2000)
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    chunked = client.post("/v1/chat/completions", content=iter([b'{"messages": "', b"x" * 8000, b'"}']))
    assert chunked.status_code == 413  # no Content-Length: counted while read
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def truncated_png() -> bytes:
    raw = png(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return raw[: len(raw) // 2]


@pytest.mark.parametrize(
    "url, message",
    [
        (data_url(png(np.zeros((64, 64, 3), np.uint8))), "over the limit of 1024"),
        (
            data_url(
                bomb_png(),
            ),
            "decompression bomb",
        ),
        (data_url(bomb_png(5_000, 5_000)), "over the limit of 1024"),
        (data_url(truncated_png()), "cannot decode image"),
        (data_url(b"not an image, whatever its type says"), "cannot decode image"),
        ("data:image/png;base64,@@not base64@@", "not valid base64"),
        ("data:image/png,rawbytes", "base64 data URL"),
        ("file:///etc/passwd", "base64 data URL"),
        ("/etc/passwd", "base64 data URL"),
    ],
    ids=[
        "pixels",
        "bomb",
        "bomb-under-pil-limit",
        "truncated",
        "not-an-image",
        "bad-base64",
        "not-base64",
        "file-url",
        "path",
    ],
)
def test_bad_images_are_a_clear_400(make_app, url, message):
    client = TestClient(make_app(Limits(max_pixels=32 * 32)))
    response = client.post("/v1/chat/completions", json=chat(url))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["param"] == "messages[0].content"
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200  # still serving


def test_remote_image_urls_are_refused_and_never_fetched(make_app):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        target = f"http://127.0.0.1:{listener.getsockname()[1]}/cat.png"
        response = TestClient(make_app()).post("/v1/chat/completions", json=chat(target))
        assert response.status_code == 400 and "not fetched" in response.json()["error"]["message"]
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected


@pytest.mark.parametrize("where", ["admission", "engine queue"])
def test_a_full_server_answers_429_with_retry_after(make_app, vlm, monkeypatch, where):
    limits, pending = (Limits(max_active=1), None) if where == "admission" else (Limits(), 1)
    entered, release = held(monkeypatch, vlm.engine, "generate")
    with BackgroundServer(make_app(limits, max_pending=pending)) as url:
        thread, out = in_thread(lambda: requests.post(f"{url}/chat/completions", json=chat(), timeout=60))
        assert entered.wait(timeout=30)
        with pytest.raises(openai.RateLimitError) as e:
            openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(**chat())
        release.set()
        thread.join(timeout=60)
        assert requests.post(f"{url}/chat/completions", json=chat(), timeout=60).status_code == 200
    assert e.value.response.headers["Retry-After"] == "1"
    assert out[0].status_code == 200


def test_max_tokens_cap_and_the_models_context(make_app, vlm):
    client = TestClient(make_app(Limits(max_tokens=16)))
    over = client.post("/v1/chat/completions", json=chat(max_tokens=17))
    assert over.status_code == 400 and over.json()["error"]["param"] == "max_tokens"
    assert "cap of 16" in over.json()["error"]["message"]
    body = chat() | {"max_tokens": None, "max_completion_tokens": 17}
    assert client.post("/v1/chat/completions", json=body).json()["error"]["param"] == "max_completion_tokens"
    context = vlm.engine.max_positions
    unset = client.post("/v1/chat/completions", json=chat() | {"max_tokens": None})  # default 256 > context
    assert unset.status_code == 200, unset.text
    assert unset.json()["usage"]["total_tokens"] <= context
    long = client.post("/v1/chat/completions", json=chat(text="red circle " * context))
    assert long.status_code == 400
    assert f"exceeds the model's {context} positions" in long.json()["error"]["message"]
