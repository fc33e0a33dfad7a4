"""The server's contract beyond chat: unknown models (OpenAI's 404), errors in OpenAI's shape, the
access log, and the contrastive endpoints (/v1/embeddings, /v1/classify) against `vlkit.load`."""

import base64
import io
import logging
import re

import numpy as np
import openai
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import vlkit
from vlkit.config import VLMConfig
from vlkit.generation import BatchingEngine, Engine
from vlkit.models.language_models import gpt_tiny
from vlkit.serve.app import create_app
from vlkit.serve.server import BackgroundServer

TEXTS = ["a red circle and a blue square", "How many shapes are there? There are two."] * 20


def data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def square(channel: int) -> np.ndarray:
    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = 0
    image[8:24, 8:24, channel] = 255
    return image


@pytest.fixture(scope="module")
def lm_app():
    torch.manual_seed(0)
    lm, tokenizer = gpt_tiny(VLMConfig(lm_width=16, lm_layers=1, lm_heads=2, lm_vocab_size=300), None, TEXTS)
    return create_app(BatchingEngine(Engine(lm, tokenizer), wait_ms=1), "tiny")


@pytest.fixture(scope="module")
def clip(tiny_run):
    return vlkit.load(tiny_run)


@pytest.fixture(scope="module")
def clip_server(clip):
    with BackgroundServer(create_app(clip, "clip")) as url:
        yield url


HI = [{"role": "user", "content": "hi"}]


def test_an_unknown_model_name_is_openais_404(lm_app):
    with BackgroundServer(lm_app) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4", messages=HI, max_tokens=2)
        assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
        assert "gpt-4" in e.value.body["message"]
        assert client.models.retrieve("tiny").id == "tiny"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-4")


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("get", "/v1/no-such-endpoint", None, 404),
        ("get", "/v1/chat/completions", None, 405),
        ("post", "/v1/chat/completions", b"{not json", 400),
        ("post", "/v1/chat/completions", b"[1, 2]", 400),
        ("post", "/v1/embeddings", b'{"input": "hi"}', 400),  # a generative model has no embeddings
    ],
)
def test_every_error_is_openais_json(lm_app, method, path, body, status):
    response = getattr(TestClient(lm_app), method)(path, **({"content": body} if body else {}))
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_a_failed_generation_is_a_500_in_openais_shape(lm_app, monkeypatch):
    engine = lm_app.state.served.model.engine

    def broken(requests, streamer=None):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(engine, "generate", broken)
    response = TestClient(lm_app).post("/v1/chat/completions", json={"messages": HI, "max_tokens": 3})
    assert response.status_code == 500, response.text
    assert response.json()["error"]["type"] == "server_error"
    assert "out of memory, say" in response.json()["error"]["message"]


def test_one_access_log_line_per_request(lm_app, caplog):
    caplog.set_level(logging.INFO, logger="vlkit.serve")
    client = TestClient(lm_app)
    usage = client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 3}).json()["usage"]
    client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 3, "stream": True}).read()
    client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": HI})
    client.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "vlkit.serve"]
    pattern = r"(GET|POST) (\S+) (\d{3}) (\d+\.\d) ms tokens=(\d+|-)"
    parsed = [re.fullmatch(pattern, line).groups() for line in lines]
    assert [(m, p, s) for m, p, s, _, _ in parsed] == [
        ("POST", "/v1/chat/completions", "200"),
        ("POST", "/v1/chat/completions", "200"),
        ("POST", "/v1/chat/completions", "404"),
        ("GET", "/health", "200"),
    ]
    assert [t for *_, t in parsed] == [str(usage["total_tokens"])] * 2 + ["-", "-"]


def test_text_and_image_embeddings_through_the_openai_client(clip_server, clip):
    client = openai.OpenAI(base_url=clip_server, api_key="x", max_retries=0)
    texts = ["a red circle", "a blue star"]
    result = client.embeddings.create(model="clip", input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in result.data], np.float32)
    np.testing.assert_allclose(got, clip.embed_texts(texts), atol=1e-6)
    assert result.usage.prompt_tokens > len(texts)
    images = [square(0), square(2)]
    result = client.embeddings.create(
        model="clip", input=[data_url(im) for im in images], encoding_format="float"
    )
    got = np.array([d.embedding for d in result.data], np.float32)
    np.testing.assert_allclose(got, clip.embed_images(images), atol=1e-5)
    assert [d.index for d in result.data] == [0, 1]


def test_classify_gives_vlkits_probabilities(clip_server, clip):
    client = openai.OpenAI(base_url=clip_server, api_key="x", max_retries=0)
    labels, templates, images = (
        ["red square", "blue square"],
        ["a {}.", "a photo of a {}."],
        [square(0), square(2)],
    )
    body = {
        "model": "clip",
        "images": [data_url(im) for im in images],
        "labels": labels,
        "templates": templates,
    }
    result = client.post("/classify", body=body, cast_to=object)
    expected = clip.classify(images, labels, templates)
    np.testing.assert_allclose([row["probs"] for row in result["data"]], expected.probs, atol=1e-5)
    assert [row["label"] for row in result["data"]] == expected.top
    assert result["labels"] == labels


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/classify", {"images": [], "labels": ["a"]}, "images"),
        ("/v1/classify", {"images": ["data:,"], "labels": "a", "templates": ["no slot"]}, "templates[0]"),
        ("/v1/embeddings", {"input": ["a", "data:image/png;base64,AAAA"]}, "input"),
        ("/v1/chat/completions", {"messages": HI}, "model"),  # a contrastive model does not chat
        ("/v1/caption", {"images": ["data:,"]}, "model"),
        ("/v1/answer", {"image": "data:,", "question": "q"}, "model"),
    ],
)
def test_contrastive_endpoints_name_the_bad_field(clip, path, body, param):
    response = TestClient(create_app(clip, "clip")).post(path, json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    if param == "model":  # the wrong kind: what the model is for, and what it answers
        message = response.json()["error"]["message"]
        assert "a dual encoder (CLIP, SigLIP, LiT)" in message and "/v1/search" in message


def test_health_models_and_docs(clip):
    client = TestClient(create_app(clip, "clip"))
    assert client.get("/health").json() == {"status": "ok", "model": "clip"}
    assert [(m["id"], m["kind"]) for m in client.get("/v1/models").json()["data"]] == [
        ("clip", "contrastive")
    ]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/classify", "/v1/models"} <= set(paths)
