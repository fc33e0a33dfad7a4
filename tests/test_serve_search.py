"""POST /v1/search against a real index (`ContrastiveModel.index_files`, what `vlkit index` runs):
text and image queries give `vlkit.load`'s own search results; the index is checked when loaded."""

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import vlkit
from vlkit.index import SearchIndex
from vlkit.serve.app import create_app
from vlkit.serve.server import load_app


def picture(channel: int, size: int) -> np.ndarray:
    image = np.full((32, 32, 3), 255, np.uint8)
    image[4 : 4 + size, 4 : 4 + size] = 0
    image[4 : 4 + size, 4 : 4 + size, channel] = 255
    return image


def data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def clip(tiny_run):
    return vlkit.load(tiny_run)


@pytest.fixture(scope="module")
def index_dir(clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    files = []
    for i, (channel, size) in enumerate([(0, 8), (1, 16), (2, 24), (0, 20), (1, 6)]):
        files.append(folder / f"{i}.png")
        Image.fromarray(picture(channel, size)).save(files[-1])
    out = folder / "my.index"
    clip.index_files(files, out)
    return out


@pytest.fixture(scope="module")
def client(tiny_run, index_dir):
    return TestClient(load_app(str(tiny_run), "clip", index=str(index_dir)))


def test_a_text_query_gives_the_models_own_search(client, clip, index_dir):
    reply = client.post("/v1/search", json={"model": "clip", "query": "a small red circle", "k": 3})
    assert reply.status_code == 200, reply.text
    expected = clip.search(SearchIndex.load(index_dir), ["a small red circle"], k=3)[0]
    body = reply.json()
    assert body["object"] == "search.result" and body["query"] == "text"
    assert [hit["key"] for hit in body["data"]] == [key for key, _ in expected]
    np.testing.assert_allclose([hit["score"] for hit in body["data"]], [s for _, s in expected], atol=1e-5)
    assert all(key.endswith(".png") for key, _ in expected)  # the paths the index was built from


def test_an_image_query_finds_that_image_first(client, clip, index_dir):
    reply = client.post("/v1/search", json={"query": data_url(picture(2, 24))})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    expected = clip.search_by_image(SearchIndex.load(index_dir), [picture(2, 24)], k=5)[0]
    assert body["query"] == "image" and len(body["data"]) == 5  # k's default
    assert [hit["key"] for hit in body["data"]] == [key for key, _ in expected]
    assert body["data"][0]["key"].endswith("2.png") and body["data"][0]["score"] > 0.99


@pytest.mark.parametrize(
    "body, param",
    [
        ({"query": ""}, "query"),
        ({"query": "a", "k": 0}, "k"),
        ({"query": "a", "k": "5"}, "k"),  # strict: a string is not a number
        ({"k": 5}, "query"),
        ({"query": "data:image/png;base64,AAAA"}, "query"),  # not an image
    ],
)
def test_bad_bodies_name_the_field(client, body, param):
    reply = client.post("/v1/search", json=body)
    assert reply.status_code == 400, reply.text
    assert (
        reply.json()["error"]["param"] == param and reply.json()["error"]["type"] == "invalid_request_error"
    )


def test_without_an_index_search_says_how_to_give_one(clip):
    reply = TestClient(create_app(clip, "clip")).post("/v1/search", json={"query": "a"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "no_index"
    assert "--index" in reply.json()["error"]["message"]


def test_an_index_of_another_size_is_refused_when_loaded(tiny_run, tmp_path):
    index = SearchIndex(dim=3)
    index.add(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    index.save(tmp_path / "other")
    with pytest.raises(ValueError, match="3 dimensions"):
        load_app(str(tiny_run), index=str(tmp_path / "other"))


def test_the_task_schemas_are_in_the_docs(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"query", "k", "model"} <= set(body["properties"]) and body["required"] == ["query"]
    for path in ("/v1/caption", "/v1/answer"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "images" in schema["properties"] or "question" in schema["properties"]
    assert "SearchResponse" in spec["components"]["schemas"]
