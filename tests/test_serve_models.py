"""`vlkit serve MODEL`: what it loads (vlkit run folders of both kinds, a transformers causal-LM
folder, `--lm` as an alias), "ready" only once loaded, and one clear line for anything else."""

import numpy as np
import pytest
import torch
from PIL import Image

import vlkit
from vlkit import cli
from vlkit.api import ContrastiveModel
from vlkit.config import VLMConfig
from vlkit.generation import BatchingEngine
from vlkit.models.language_models import gpt_tiny
from vlkit.models.vlm import GenerativeVLM
from vlkit.serve import server
from vlkit.serve.loading import load_served


@pytest.fixture
def served(monkeypatch, capsys):
    """Runs `vlkit serve ARGS` without listening: → (stdout, the app it would serve); checks
    that nothing was printed before the model had loaded."""
    loaded = {}
    load_app = server.load_app

    def checked_load(*args, **kwargs):
        assert capsys.readouterr().out == ""  # nothing printed while loading
        loaded["app"] = load_app(*args, **kwargs)
        return loaded["app"]

    monkeypatch.setattr(server, "load_app", checked_load)
    monkeypatch.setattr(server, "run", lambda app, host, port: loaded.setdefault("ran", (host, port)))

    def serve(*args: str) -> tuple[str, object]:
        cli.main(["serve", *args])
        return capsys.readouterr().out, loaded["app"]

    return serve


def tiny_causal_lm(folder) -> str:
    torch.manual_seed(0)
    lm, tokenizer = gpt_tiny(
        VLMConfig(lm_width=16, lm_layers=1, lm_heads=2, lm_vocab_size=300), None, ["a red circle"] * 20
    )
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_a_generative_run_folder(served, tiny_vlm_run):
    out, app = served(str(tiny_vlm_run), "--port", "8123")
    assert out.startswith(f"ready: serving {tiny_vlm_run} (generative) on http://127.0.0.1:8123/v1")
    assert isinstance(app.state.served.model.engine.model, GenerativeVLM)


def test_a_contrastive_run_folder_with_a_name(served, tiny_run):
    out, app = served(str(tiny_run), "--name", "clip")
    assert out.startswith("ready: serving clip (contrastive)")
    assert isinstance(app.state.served.model, ContrastiveModel)


def test_a_transformers_causal_lm_folder_and_the_lm_alias(served, tmp_path):
    path = tiny_causal_lm(tmp_path / "lm")
    out, app = served("--lm", path)
    assert out.startswith(f"ready: serving {path} (generative)")
    assert isinstance(app.state.served.model, BatchingEngine)
    assert load_served(path).engine.vlm is False  # text only


def test_a_transformers_clip_folder_is_served_as_a_contrastive_model(served, tiny_run, tmp_path):
    """An exported (or any local) CLIPModel folder: the embeddings, classify and search endpoints
    answer with `vlkit.load`'s own results for that folder, and the web UI builds for it."""
    from fastapi.testclient import TestClient

    from tests.test_serve_search import data_url, picture
    from vlkit.export import export_transformers
    from vlkit.models.hf_models import HFContrastiveModel
    from vlkit.serve.ui import build_ui

    hf = str(export_transformers(tiny_run, tmp_path / "hf"))
    reference = vlkit.load(hf)
    images = [tmp_path / f"{i}.png" for i in range(3)]
    for path, channel in zip(images, range(3)):
        Image.fromarray(picture(channel, 12 + 4 * channel)).save(path)
    reference.index_files(images, tmp_path / "my.index")
    out, app = served(hf, "--index", str(tmp_path / "my.index"))
    assert out.startswith(f"ready: serving {hf} (contrastive)")
    assert isinstance(app.state.served.model, HFContrastiveModel)
    client = TestClient(app)
    texts = ["a small red circle", "a large blue star"]
    reply = client.post("/v1/embeddings", json={"model": hf, "input": texts}).json()
    np.testing.assert_allclose(
        [row["embedding"] for row in reply["data"]], reference.embed_texts(texts), atol=1e-6
    )
    assert reply["usage"]["prompt_tokens"] == reference.count_tokens(texts) > len(texts)
    body = {"model": hf, "images": [data_url(picture(2, 20))], "labels": ["red square", "blue square"]}
    reply = client.post("/v1/classify", json=body).json()
    expected = reference.classify([picture(2, 20)], body["labels"])
    np.testing.assert_allclose(reply["data"][0]["probs"], expected.probs[0], atol=1e-5)
    reply = client.post("/v1/search", json={"model": hf, "query": "a blue square", "k": 2}).json()
    from vlkit.index import SearchIndex

    hits = reference.search(SearchIndex.load(tmp_path / "my.index"), ["a blue square"], k=2)[0]
    assert [hit["key"] for hit in reply["data"]] == [key for key, _ in hits]
    blocks, _ = build_ui(reference, "clip", folder=hf)
    assert "Classify" in {block.label for block in blocks.blocks.values() if hasattr(block, "label")}


def _llava_folder(tmp_path, tiny_vlm_run):
    from vlkit.export import export_llava

    return export_llava(tiny_vlm_run, tmp_path / "llava-hf")


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp, run: str(tmp / "missing-folder"), "no such file or folder"),
        (lambda tmp, run: "no-such-model", "not a vlkit language model"),
        (lambda tmp, run: str((tmp / "empty").mkdir() or tmp / "empty"), "neither a vlkit run/model folder"),
        (lambda tmp, run: str((tmp / "a.png").write_bytes(b"x") and tmp / "a.png"), "a file, not a model"),
        (_llava_folder, "a transformers LlavaForConditionalGeneration folder"),
    ],
    ids=["missing-folder", "unknown-name", "empty-folder", "a-file", "exported-llava"],
)
def test_a_bad_model_is_one_clear_line(served, capsys, tmp_path, tiny_vlm_run, make, expected):
    model = str(make(tmp_path, tiny_vlm_run))
    with pytest.raises(SystemExit) as e:
        cli.main(["serve", model])
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and expected in captured.err
    assert "Traceback" not in captured.err and "ready" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_model_and_lm_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "a", "--lm", "b"])
    assert "give the model once" in capsys.readouterr().err


def test_a_config_json_that_is_not_json(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SystemExit):
        cli.main(["serve", str(tmp_path)])
    assert "not a valid transformers config" in capsys.readouterr().err


def test_the_index_and_url_fetch_options(served, tiny_run, tmp_path):
    from PIL import Image

    import vlkit
    from vlkit.serve.images import RemoteImages

    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    vlkit.load(tiny_run).index_files([tmp_path / "red.png"], tmp_path / "my.index")
    hosts = ["--allow-host", "127.0.0.1", "--allow-host", "Images.Example:8080"]
    out, app = served(str(tiny_run), "--index", str(tmp_path / "my.index"), "--allow-url-fetch", *hosts)
    assert out.startswith("ready: serving")
    assert app.state.served.index.keys == [str(tmp_path / "red.png")]
    assert app.state.served.limits.remote == RemoteImages(
        ("127.0.0.1", "images.example:8080"), 5.0, 10 * 2**20
    )
    _, app = served(str(tiny_run), "--fetch-timeout-s", "1")
    assert app.state.served.index is None and app.state.served.limits.remote is None


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--index", "INDEX"],
            "searching needs a model that embeds images and texts; this one is generative",
        ),
        (["--allow-url-fetch"], "--allow-url-fetch needs at least one --allow-host HOST"),
        (["--allow-host", "example.com"], "--allow-host needs --allow-url-fetch"),
    ],
)
def test_options_that_cannot_work_are_one_clear_line(tiny_vlm_run, tmp_path, capsys, args, expected):
    args = [str(tmp_path) if a == "INDEX" else a for a in args]
    with pytest.raises(SystemExit):
        cli.main(["serve", str(tiny_vlm_run), *args])
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and expected in captured.err and "ready" not in captured.out
