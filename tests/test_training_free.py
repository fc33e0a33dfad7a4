"""Training-free VLMs (`vlkit.models.training_free`): ASIF's relative representations and
ConSE's convex combination against brute-force numpy, model folders built by `vlkit asif` /
`vlkit conse` that load, classify, search, evaluate and export, and ASIF with the real
pretrained encoders far above chance on a few digits."""

import json

import numpy as np
import pytest
import torch

from vlkit import api, export
from vlkit.commands.training_free import asif, conse
from vlkit.config import ModelConfig
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.result import flat_scores
from vlkit.models.build_training_free import choose_anchors
from vlkit.models.kinds import kind_of
from vlkit.models.registry import build_image_tower
from vlkit.models.training_free import convex_combination, relative


def brute_force_relative(x: np.ndarray, anchors: np.ndarray, k: int, p: float) -> np.ndarray:
    """ASIF as the paper states it, one row at a time: cosines, keep the k largest, zero the
    rest, clamp at 0, raise to p, normalise."""
    out = np.zeros((len(x), len(anchors)))
    for row, v in enumerate(x):
        sims = anchors @ v / (np.linalg.norm(anchors, axis=1) * np.linalg.norm(v))
        keep = np.argsort(-sims, kind="stable")[:k]
        out[row, keep] = np.maximum(sims[keep], 0) ** p
        out[row] /= np.linalg.norm(out[row])
    return out


@pytest.mark.parametrize(("k", "p"), [(1, 1.0), (3, 2.0), (5, 8.0), (50, 4.0)])
def test_relative_representation_matches_brute_force(k, p):
    rng = np.random.default_rng(k)
    x, anchors = rng.normal(size=(6, 5)), rng.normal(size=(12, 5))  # some cosines negative
    unit = lambda a: torch.nn.functional.normalize(torch.from_numpy(a), dim=-1)  # noqa: E731
    got = relative(unit(x), unit(anchors), k, p).numpy()
    np.testing.assert_allclose(got, brute_force_relative(x, anchors, k, p), atol=1e-12)
    assert (np.count_nonzero(got, axis=1) <= min(k, 12)).all()


def test_convex_combination_of_the_top_classes():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.7, 0.1, 0.1, 0.1]])
    class_texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    got = convex_combination(probs, class_texts, top=2)
    # row 0: (0.5 * [0, 1] + 0.3 * [1, 1]) / 0.8 = [0.375, 1.0]; row 1: ties broken by topk, so
    # only the certain part is checked: class 0 dominates
    np.testing.assert_allclose(got[0].numpy(), np.array([0.375, 1.0]) / np.hypot(0.375, 1.0), rtol=1e-6)
    assert got[1, 0] > 0.7 and torch.allclose(got.norm(dim=-1), torch.ones(2))
    assert torch.allclose(convex_combination(probs, class_texts, top=1)[0], torch.tensor([0.0, 1.0]))


def test_efficientnet_class_head_is_the_packaged_classifier():
    """ConSE reads the ImageNet logits from pooled features: the packaged forward's own result."""
    tower = build_image_tower("efficientnet-lite0", ModelConfig()).eval()
    pixels = tower.preprocess([np.full((40, 40, 3), v, np.uint8) for v in (30, 200)])
    with torch.inference_mode():
        torch.testing.assert_close(tower.class_head(tower(pixels)), tower.model(pixels))


class Procedural:
    """A data set as long as the procedural scenes (2^31 samples), each made on demand."""

    def __len__(self) -> int:
        return 2**31

    def __getitem__(self, i: int) -> dict:
        return {"key": str(i), "image": np.zeros((4, 4, 3), np.uint8), "captions": [f"scene {i}"]}


def test_anchors_from_a_procedural_set_are_drawn_without_listing_every_index():
    """`vlkit asif --data scenes` permuted all 2^31 indices (16 GiB, minutes) to draw 12 anchors."""
    anchors = choose_anchors(Procedural(), 12, seed=0)
    assert len({a["key"] for a in anchors}) == 12
    assert [a["key"] for a in choose_anchors(Procedural(), 12, seed=0)] == [a["key"] for a in anchors]


@pytest.fixture(scope="module")
def asif_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("asif") / "model"
    asif(data="scenes", out=str(out), anchors=12, k=6, p=4.0, progress=False)
    return out


def test_an_asif_folder_stores_only_its_anchors_and_loads_as_a_contrastive_model(asif_folder):
    assert (asif_folder / "model.safetensors").stat().st_size < 200_000  # no encoder weights
    anchors = [json.loads(line) for line in (asif_folder / "anchors.jsonl").read_text().splitlines()]
    assert len(anchors) == 12 and all(a["caption"] for a in anchors)
    model = api.load(asif_folder, kind="contrastive", command="classify")
    assert kind_of(model) == "training-free" and model.method == "asif"
    world = scene_benchmarks(64, 1, 2, 7, 6, ("zero-shot",))[0]
    images = [e["image"] for e in world.examples]
    result = model.classify(images, world.classes)
    assert result.probs.shape == (len(images), len(world.classes))
    np.testing.assert_allclose(result.probs.sum(1), 1, rtol=1e-5)
    emb = model.embed_images(images)
    assert emb.shape == (len(images), 12) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_an_asif_folder_indexes_searches_evaluates_and_exports(asif_folder, tmp_path):
    model = api.load(asif_folder)
    benches = scene_benchmarks(64, 1, 2, 7, 6, ("zero-shot", "retrieval", "winoground"))
    scores = flat_scores(evaluate_benchmarks(model, benches))  # zero-shot, retrieval, Winoground
    assert {"top1", "t2i_R@1", "i2t_R@1", "wino_group"} <= set(scores)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    files = []
    for i, e in enumerate(benches[0].examples):
        from PIL import Image

        files.append(tmp_path / f"{i}.png")
        Image.fromarray(e["image"]).save(files[-1])
    index, failures = model.index_files(files, tmp_path / "index")
    assert not failures and len(model.search(index, ["a red circle"], k=3)[0]) == 3
    out = export.export(asif_folder, tmp_path / "exported")
    record = json.loads((out / "config.json").read_text())
    assert record["method"] == "asif" and record["embed_dim"] == 12 and (out / "anchors.jsonl").is_file()
    with pytest.raises(
        ValueError, match=r"--format anchors\)\. A training-free model has no transformers class"
    ):
        export.export(asif_folder, tmp_path / "hf", "transformers")


def test_a_conse_folder_embeds_images_as_a_mix_of_imagenet_class_names(tmp_path):
    folder = conse(out=str(tmp_path / "conse"), top=3)
    model = api.load(folder, kind="contrastive")
    assert kind_of(model) == "training-free" and model.method == "conse"
    names = ["goldfish", "tench"]  # ImageNet classes 1 and 0: their stored embeddings are MiniLM's
    stored = model.model.class_texts[[1, 0]].numpy()
    np.testing.assert_allclose(stored, model.embed_texts(names), atol=1e-5)
    result = model.classify([np.zeros((32, 32, 3), np.uint8)], ["a fish", "a dark night"])
    assert result.probs.shape == (1, 2)


def digits_asif_accuracy(margin: int) -> float:
    """sklearn digits rendered by `vlkit.data.digits.render_digit`, 150 anchors captioned "a
    handwritten digit seven", the next 60 classified among the ten words, nothing trained."""
    from sklearn.datasets import load_digits

    from vlkit.config import Config, TrainingFreeConfig
    from vlkit.data.digits import WORDS, render_digit
    from vlkit.models.build import build_model
    from vlkit.models.build_training_free import choose_anchors, fill_anchors

    data = load_digits()
    images = [render_digit(data.images[i], margin) for i in range(210)]
    samples = [
        {"image": images[i], "captions": [f"a handwritten digit {WORDS[data.target[i]]}"]} for i in range(150)
    ]
    cfg = Config(kind="training-free", model=TrainingFreeConfig(anchors=150, k=100, p=8.0))
    model = fill_anchors(build_model(cfg), choose_anchors(samples, 150, seed=0))
    top = api.TrainingFreeModel(model, cfg).classify(images[150:], WORDS).probs.argmax(1)
    return float((top == data.target[150:210]).mean())


def test_asif_with_the_pretrained_encoders_reads_margined_digits():
    """Learning-style: chance is 0.1. Drawn edge to edge (margin 0, how the digits were fed
    before) the same 60 digits scored 0.75, with the margin 0.87 (measured once)."""
    accuracy = digits_asif_accuracy(margin=4)
    assert accuracy >= 0.8, accuracy


def test_render_digit_draws_dark_ink_on_white_inside_a_margin():
    from vlkit.data.digits import Digits, render_digit

    pixels = np.full((8, 8), 16.0)  # ink everywhere
    image = render_digit(pixels, margin=3)
    assert image.shape == (14, 14, 3) and image.dtype == np.uint8
    assert (image[3:11, 3:11] == 0).all()  # full ink is black
    inner = np.zeros((14, 14), bool)
    inner[3:11, 3:11] = True
    assert (image[~inner] == 255).all()  # the margin is paper
    with pytest.raises(ValueError, match="0..16"):
        render_digit(np.full((8, 8), 17.0))
    train, test = Digits("train"), Digits("test")
    assert len(train) + len(test) == 1797
    assert not {train[i]["key"] for i in range(len(train))} & {test[i]["key"] for i in range(len(test))}
    sample = train[0]
    assert sample["captions"] == [f"a handwritten digit {Digits.classes[sample['label']]}"]
    assert sample["image"].shape == (16, 16, 3)


def test_a_training_free_config_round_trips_quietly(tmp_path, caplog):
    """Saved and loaded, with nothing logged as ignored. (TrainingFreeConfig shares field names with
    ModelConfig at other defaults; test_config's configs-saved-before-the-split test covers the
    other kinds' old configs, which logged those fields as set until `_drop_foreign` checked
    every owner's default.)"""
    import logging

    from tests.conftest import make_tiny_training_free_cfg
    from vlkit.config import load_config, save_config

    cfg = make_tiny_training_free_cfg("conse")
    save_config(cfg, tmp_path / "c.yaml")
    with caplog.at_level(logging.WARNING, logger="vlkit.config"):
        assert load_config(tmp_path / "c.yaml") == cfg
    assert not caplog.records
