"""The Python API (load, classify, index, search) and the transformers export, on one tiny run."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import vlkit
from vlkit.data import iter_captions
from vlkit.data.images import ImageError
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.export import export, export_transformers
from vlkit.index import SearchIndex
from vlkit.models.build import build_model, save_model
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.towers import MeanPoolTextTower
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.objectives import tokenize

LABELS = ["red circle", "blue square", "green star", "a small white triangle"]
TEMPLATE = "This is a photo of {}."


@pytest.fixture(scope="module")
def model(tiny_run):
    return vlkit.load(tiny_run)


@pytest.fixture(scope="module")
def scene_images() -> list[np.ndarray]:
    scenes = Scenes(ScenesConfig(image_size=32, seed=7))
    return [scenes[i]["image"] for i in range(6)]


@pytest.fixture(scope="module")
def mixed_images(scene_images) -> list[Image.Image]:
    """Scenes at the model's size plus images that need resize + centre crop."""
    from skimage.data import astronaut, chelsea

    big_scene = Scenes(ScenesConfig(image_size=64, seed=7))[0]["image"]  # square, downscaled
    return [
        *(Image.fromarray(x) for x in scene_images[:3]),
        Image.fromarray(chelsea()[20:220, 40:373]),  # landscape 333x200: an odd crop margin
        Image.fromarray(astronaut()[:, 100:401]),  # portrait 301x512
        Image.fromarray(big_scene),
    ]


# ---------------------------------------------------------------- loading


def test_load_run_and_checkpoint_folders(tiny_run, model):
    assert model.path == latest_checkpoint(tiny_run)
    assert model.path.name == "step-0000004"
    earlier = vlkit.load(tiny_run / "checkpoints" / "step-0000002")
    assert earlier.path.name == "step-0000002"
    assert earlier.cfg == model.cfg
    texts = ["a red circle", "a blue square"]
    assert not np.allclose(earlier.embed_texts(texts), model.embed_texts(texts))  # different weights


def test_load_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a vlkit model folder nor a run folder"):
        vlkit.load(tmp_path)


# ---------------------------------------------------------------- classify


def test_classify_probs_are_a_softmax_of_scaled_cosines(model, scene_images):
    result = model.classify(scene_images, LABELS, [TEMPLATE])
    assert result.labels == LABELS
    assert result.probs.shape == result.logits.shape == (len(scene_images), len(LABELS))
    np.testing.assert_allclose(result.probs.sum(1), 1.0, rtol=0, atol=1e-6)
    cos = model.embed_images(scene_images) @ model.embed_texts([TEMPLATE.format(x) for x in LABELS]).T
    scale = model.model.logit_scale.exp().item()
    np.testing.assert_allclose(result.logits, scale * cos, rtol=1e-5, atol=1e-5)
    expected = torch.from_numpy(scale * cos).softmax(-1).numpy()
    np.testing.assert_allclose(result.probs, expected, rtol=1e-5, atol=1e-6)
    assert result.top == [LABELS[i] for i in expected.argmax(1)]


def test_template_ensembling_is_the_renormalised_mean(model, scene_images):
    templates = ["a {}.", "a photo of a {}.", "This is a photo of {}."]
    got = model.label_embeddings(LABELS, templates)
    manual = []
    for label in LABELS:
        e = model.embed_texts([t.format(label) for t in templates])  # (T, E), unit rows
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
        mean = e.mean(0)
        manual.append(mean / np.linalg.norm(mean))
    np.testing.assert_allclose(got, np.stack(manual), rtol=1e-5, atol=1e-6)
    # the ensemble is not just one of its templates
    assert not np.allclose(got, model.label_embeddings(LABELS, templates[:1]), atol=1e-3)
    result = model.classify(scene_images, LABELS, templates)
    logits = model.embed_images(scene_images) @ np.stack(manual).T * model.model.scale().item()
    np.testing.assert_allclose(result.logits, logits, rtol=1e-5, atol=1e-5)


def test_label_embeddings_are_cached(tiny_run, scene_images, monkeypatch):
    fresh = vlkit.load(tiny_run)
    calls = []
    embed_texts = fresh.embed_texts
    monkeypatch.setattr(
        fresh, "embed_texts", lambda texts, *a, **k: calls.append(list(texts)) or embed_texts(texts)
    )
    first = fresh.classify(scene_images, LABELS, [TEMPLATE])
    assert len(calls) == 1 and calls[0] == [TEMPLATE.format(x) for x in LABELS]
    second = fresh.classify(scene_images[:2], LABELS, [TEMPLATE])
    assert len(calls) == 1  # the same labels and templates: not embedded again
    np.testing.assert_allclose(first.probs[:2], second.probs, rtol=0, atol=1e-6)  # batch size only
    fresh.classify(scene_images[:2], LABELS[:2], [TEMPLATE])
    assert len(calls) == 2  # a different label set is embedded


def test_classify_input_errors(model, scene_images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = tmp_path / "good.png"
    Image.fromarray(scene_images[0]).save(good)
    with pytest.raises(ImageError, match="broken.png"):
        model.classify([good, bad], LABELS)
    with pytest.raises(ImageError, match="missing.png: file not found"):
        model.classify([tmp_path / "missing.png"], LABELS)
    with pytest.raises(ValueError, match="at least one label"):
        model.classify([good], [])
    with pytest.raises(ValueError, match="has no '{}'"):
        model.classify([good], LABELS, ["a photo"])
    with pytest.raises(ValueError, match="uint8"):
        model.classify([scene_images[0].astype(np.float32)], LABELS)


def test_classify_can_skip_and_report_unreadable_images(model, scene_images, tmp_path, make_unreadable):
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, image in zip(good, scene_images):
        Image.fromarray(image).save(path)
    truncated, text = make_unreadable(tmp_path)
    images = [good[0], truncated, good[1], text]
    with pytest.raises(ImageError, match="truncated.png"):  # strict by default: stops at the first
        model.classify(images, LABELS)
    result = model.classify(images, LABELS, strict=False)
    assert result.rows == [0, 2]
    assert [e.path for e in result.failures] == [str(truncated), str(text)]
    assert "truncated" in result.failures[0].reason and "cannot identify" in result.failures[1].reason
    np.testing.assert_allclose(result.probs, model.classify(good, LABELS).probs, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="none of the 2 images could be read"):
        model.classify([truncated, text], LABELS, strict=False)


def test_index_files_skips_unreadable_images_and_lists_them(model, scene_images, tmp_path, make_unreadable):
    good = [tmp_path / f"{i}.png" for i in range(3)]
    for path, image in zip(good, scene_images):
        Image.fromarray(image).save(path)
    bad = make_unreadable(tmp_path)
    files = [good[0], bad[0], good[1], bad[1], good[2]]
    out = tmp_path / "index"
    index, failures = model.index_files(files, out)
    assert [e.path for e in failures] == [str(p) for p in bad]
    loaded = SearchIndex.load(out)
    assert loaded.keys == [str(p) for p in good] and Path(loaded.metadata["model"]) == model.path.resolve()
    np.testing.assert_allclose(loaded.embeddings, model.embed_images(good), rtol=0, atol=1e-6)
    listed = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [x["path"] for x in listed] == [str(p) for p in bad] and all(x["reason"] for x in listed)
    with pytest.raises(ImageError, match="truncated.png"):
        model.index_files(files, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()  # strict: nothing written
    model.index_files(good, out)  # a clean rerun leaves no stale list behind
    assert not (out / "failures.jsonl").exists()


def test_paths_pil_and_arrays_give_the_same_embedding(model, scene_images, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(scene_images[1]).save(path)
    a, b, c = model.embed_images([path, str(path), Image.fromarray(scene_images[1])])
    d = model.embed_images([scene_images[1]])[0]
    for x in (a, b, c):  # same pixels; only the batch size differs
        np.testing.assert_allclose(x, d, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- index and search


def test_build_index_and_search_rank_by_cosine(model, scene_images):
    keys = [f"scene-{i}" for i in range(len(scene_images))]
    index = model.build_index(scene_images, keys)
    assert len(index) == len(keys) and index.dim == model.cfg.model.embed_dim
    queries = ["a red circle", "a large blue square and a small green star"]
    hits = model.search(index, queries, k=len(keys))
    scores = model.embed_texts(queries) @ model.embed_images(scene_images).T  # (Q, N)
    for q, row in enumerate(hits):
        got_scores = [s for _, s in row]
        assert got_scores == sorted(got_scores, reverse=True)
        assert [k for k, _ in row] == [keys[i] for i in np.argsort(-scores[q], kind="stable")]
        np.testing.assert_allclose(got_scores, np.sort(scores[q])[::-1], rtol=1e-5, atol=1e-6)
    top2 = model.search(index, queries, k=2)
    assert [r[:2] for r in hits] == top2
    by_image = model.search_by_image(index, scene_images[:1], k=1)
    assert by_image[0][0][0] == "scene-0"


# ---------------------------------------------------------------- export to transformers


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    return export_transformers(tiny_run, tmp_path_factory.mktemp("hf") / "clip")


def test_export_pipeline_gives_vlkit_probabilities(model, exported, mixed_images):
    from transformers import pipeline

    tokenizer = model.model.text_tower.tokenizer
    for label in LABELS:  # the pipeline never truncates: every prompt must fit the model
        assert len(tokenizer(TEMPLATE.format(label))["input_ids"]) <= model.cfg.model.max_text_length
    ours = model.classify(mixed_images, LABELS, [TEMPLATE])
    classifier = pipeline("zero-shot-image-classification", model=str(exported))
    theirs = []
    for image in mixed_images:
        out = classifier(image, candidate_labels=LABELS, hypothesis_template=TEMPLATE)
        assert sorted(o["label"] for o in out) == sorted(LABELS)
        by_label = {o["label"]: o["score"] for o in out}
        theirs.append([by_label[label] for label in LABELS])
    torch.testing.assert_close(
        torch.tensor(theirs, dtype=torch.float64), torch.from_numpy(ours.probs).double(), atol=1e-5, rtol=0
    )


def test_export_preprocessing_matches_vlkit(model, exported, mixed_images):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(exported)
    theirs = processor(images=mixed_images, return_tensors="pt")["pixel_values"]
    ours = model.model.image_tower.preprocess([np.asarray(im) for im in mixed_images])
    assert theirs.shape == ours.shape == (len(mixed_images), 3, 32, 32)
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)


def test_export_clipmodel_logits_match(model, exported, mixed_images):
    from transformers import AutoModel, AutoProcessor, CLIPModel

    hf = AutoModel.from_pretrained(exported).eval()
    assert isinstance(hf, CLIPModel)
    processor = AutoProcessor.from_pretrained(exported)
    inputs = processor(
        text=[TEMPLATE.format(x) for x in LABELS],
        images=mixed_images,
        return_tensors="pt",
        padding=True,
        truncation=True,
    )
    with torch.no_grad():
        out = hf(**inputs)
        image_features = hf.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    ours = model.classify(mixed_images, LABELS, [TEMPLATE])
    torch.testing.assert_close(out.logits_per_image, torch.from_numpy(ours.logits), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        torch.nn.functional.normalize(image_features, dim=-1),
        torch.from_numpy(model.embed_images(mixed_images)),
        atol=1e-6,
        rtol=0,
    )


def test_export_bakes_in_the_logit_scale_clamp(tiny_run, tmp_path):
    """CLIPModel has no clamp at run time; a scale above max_logit_scale must be exported clamped."""
    from transformers import CLIPModel

    folder = tmp_path / "model"
    shutil.copytree(latest_checkpoint(tiny_run), folder)
    state = load_file(folder / "model.safetensors")
    state["logit_scale"] = torch.tensor(math.log(500.0))
    save_file(state, folder / "model.safetensors")
    clamped = vlkit.load(folder)
    max_scale = clamped.cfg.model.max_logit_scale
    assert clamped.model.scale().item() == pytest.approx(max_scale)
    hf = CLIPModel.from_pretrained(export_transformers(folder, tmp_path / "hf"))
    assert hf.logit_scale.exp().item() == pytest.approx(max_scale)


def test_export_rejects_non_clip_towers(tiny_cfg, tmp_path):
    """A BERT-style text tower (any transformers encoder) saves, reloads offline, and is refused by export."""
    from transformers import BertConfig, BertModel

    captions = iter_captions(Scenes(ScenesConfig(image_size=32)), 100)
    base = build_model(tiny_cfg, texts=captions)
    bert = BertModel(
        BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    )
    tiny_cfg.model.text_encoder = "local/tiny-bert"  # never resolved: the saved folder is used
    model = DualEncoder(
        tiny_cfg.model, base.image_tower, MeanPoolTextTower(bert, base.text_tower.tokenizer, 32)
    )
    save_model(model, tiny_cfg, tmp_path / "model")
    reloaded = vlkit.load(tmp_path / "model")
    assert isinstance(reloaded.model.text_tower, MeanPoolTextTower)
    with torch.no_grad():
        enc = tokenize(model.text_tower, captions[:3])
        expected = model.eval().encode_texts(enc["input_ids"], enc["attention_mask"]).numpy()
    np.testing.assert_allclose(reloaded.embed_texts(captions[:3]), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"needs CLIP towers .*'vit-tiny' \+ 'local/tiny-bert'"):
        export_transformers(tmp_path / "model", tmp_path / "hf")


def test_export_refuses_a_siglip_model_and_says_why(tiny_cfg, tmp_path):
    """A SigLIP run is CLIP towers + a logit bias: SiglipModel has no place for the towers and
    CLIPModel none for the bias, so `vlkit export` refuses instead of writing a CLIPModel whose
    logits silently lack the bias."""
    tiny_cfg.model.loss = "siglip"
    captions = iter_captions(Scenes(ScenesConfig(image_size=32)), 100)
    save_model(build_model(tiny_cfg, texts=captions), tiny_cfg, tmp_path / "model")
    reason = r"SigLIP model \(model.loss=siglip\).*SiglipModel.*logit_bias \(this model's is -10.0000\)"
    with pytest.raises(ValueError, match=reason):
        export(tmp_path / "model", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
