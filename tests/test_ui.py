"""The web UI's parts without a browser (tests/test_ui_browser.py drives it in Chromium): the
streamed replies come from the server's engine, the header shows the model card, and
`vlkit serve --ui` mounts the page at /ui beside the API."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import gradio as gr
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import vlkit
from vlkit.decoding import Decoding
from vlkit.eval.cards import write_model_card
from vlkit.eval.result import TaskResult
from vlkit.generation import BatchingEngine, RequestError
from vlkit.serve import ui
from vlkit.serve.server import free_port, load_app


def _image_messages(image, text: str = "What color is the circle?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def test_stream_text_grows_piece_by_piece_to_the_engines_reply(tiny_vlm_run):
    engine = vlkit.load(tiny_vlm_run).engine
    image = ui.example_images(1)[0][1]
    decoding = Decoding(max_new_tokens=6, min_new_tokens=6)  # six tokens: six pieces to stream
    seen = list(ui.stream_text(BatchingEngine(engine), _image_messages(image), decoding))
    assert len(seen) > 1, seen
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:]))
    assert seen[-1] == engine.complete(_image_messages(image), decoding).text


def test_bad_chat_input_is_a_message_in_the_page_not_a_traceback(tiny_vlm_run):
    engine = BatchingEngine(vlkit.load(tiny_vlm_run).engine)
    image = ui.example_images(1)[0][1]
    two_images = [
        {
            "role": "user",
            "content": [*_image_messages(image)[0]["content"], {"type": "image", "image": image}],
        }
    ]
    with pytest.raises(RequestError, match="at most one image"):
        list(ui.stream_text(engine, two_images, Decoding()))
    with pytest.raises(gr.Error, match="at most one image"):
        list(ui._friendly(ui.stream_text(engine, two_images, Decoding())))


def test_examples_are_embedded_scenes_and_photos():
    examples = ui.example_images(2)
    names = [name for name, _ in examples]
    assert names[:2] == ["scene-0", "scene-1"] and [n for n in names if n.startswith("photo-")]
    assert all(
        image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3 for _, image in examples
    )


def test_the_header_names_the_model_and_shows_its_cards_metrics(tiny_run, tmp_path):
    model = vlkit.load(tiny_run)
    assert "(no model card" in ui.describe("my-clip", model, str(tiny_run))
    folder = tmp_path / "carded"
    folder.mkdir()
    result = TaskResult("zero-shot", "scenes", {"top1": 0.625})
    write_model_card(folder, "my-clip", [result])
    header = ui.describe("my-clip", model, str(folder))
    assert "`my-clip`" in header and "**contrastive**" in header
    assert "| Zero-shot image classification | scenes (test) | top1 | 0.625 |" in header


def test_search_shows_the_example_images_or_those_of_a_vlkit_index(tiny_run, tmp_path):
    model = vlkit.load(tiny_run)
    examples = ui.example_images(3)
    index, pictures = ui._search_index(model, examples, None)
    gallery = ui.search_gallery(model, index, pictures, "a red circle", len(examples))
    assert sorted(caption.split()[1] for _, caption in gallery) == sorted(name for name, _ in examples)
    assert all(any(image is shown for _, shown in examples) for image, _ in gallery)

    files = ui.write_examples(examples[:2], tmp_path / "mine")
    model.index_files(files, tmp_path / "mine.index")
    index, pictures = ui._search_index(model, examples, str(tmp_path / "mine.index"))
    assert pictures == {} and len(index) == 2
    gallery = ui.search_gallery(model, index, pictures, "a red circle", 2)
    by_path = {caption.split()[1]: image for image, caption in gallery}
    assert sorted(by_path) == sorted(files)
    for path, image in by_path.items():  # each file's own pixels, read from its path
        assert (image == np.asarray(Image.open(path).convert("RGB"))).all()


def test_serve_mounts_the_ui_only_when_asked(tiny_run):
    assert TestClient(load_app(str(tiny_run))).get("/ui/").status_code == 404
    client = TestClient(load_app(str(tiny_run), ui=True))
    page = client.get("/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    config = client.get("/ui/config").json()
    header = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "model-info")
    assert str(tiny_run) in header["props"]["value"]
    assert client.get("/v1/models").json()["data"][0]["kind"] == "contrastive"  # the API is still there


@pytest.mark.slow
def test_vlkit_serve_ui_serves_the_page_at_ui(tiny_run, tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "vlkit", "serve", str(tiny_run), "--ui", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = server.stdout.readline()
        assert line.startswith("ready: serving") and f"http://127.0.0.1:{port}/ui/" in line, line
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=5) as page:
                    assert page.status == 200 and b"gradio" in page.read().lower()
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "vlkit serve --ui did not start"
                time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as models:
            assert json.load(models)["data"][0]["id"] == str(tiny_run)
    finally:
        server.terminate()
        server.wait(timeout=30)
