"""Multimodal classification: the Hateful Memes format (read, written, refused with file:line and
field), the scenes task written in it, a classifier fine-tuned over a fusion encoder's fused [CLS]
from a pre-trained run, and `vlkit eval --task hateful-memes` scoring it."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests.conftest import make_tiny_fusion_cfg
from vlkit import api
from vlkit.config import SourceConfig, StageConfig, stage_configs
from vlkit.data import build_dataset, open_named, resolve_name
from vlkit.data.memes import Memes, read_memes, scene_memes, write_memes, write_scene_memes
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.eval.during_training import training_evaluator
from vlkit.eval.loaders import open_files
from vlkit.eval.run import run_eval
from vlkit.models.build import build_model, initial_parts, load_model, save_model
from vlkit.models.kinds import texts_for
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import train, train_stages


@pytest.fixture(scope="module")
def scene_memes_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memes") / "scene-memes"
    write_scene_memes(folder, {"train": 24, "dev": 12, "test": 12}, image_size=32)
    return folder


def test_scene_memes_round_trip_through_the_native_format(scene_memes_folder):
    folder = scene_memes_folder
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"id", "img", "label", "text"} and rows[3]["img"] == "img/00003.png"
    memes = Memes(folder, "train")
    scenes = Scenes(ScenesConfig(image_size=32, seed=0))  # the train split's world
    for i in range(len(memes)):
        meme, scene = memes[i], scenes[i]
        np.testing.assert_array_equal(meme["image"], scene["image"])  # PNG is lossless
        assert meme["key"] == str(rows[i]["id"]) and meme["label"] == rows[i]["label"]
        true_of_it = meme["captions"][0] in scene["captions"]
        assert true_of_it == (meme["label"] == 1)  # label 1: the caption describes the image
    labels = [m["label"] for m in memes.memes]
    assert 0 < sum(labels) < len(labels)
    # the negatives include the scenes' own hard negatives (colour swap / shape changed), reused
    edits = {n for i in range(len(memes)) for pair in scenes[i]["negative_captions"] for n in pair}
    assert any(m["text"] in edits for m in memes.memes if m["label"] == 0)
    ids = [m["id"] for split in ("train", "dev", "test") for m in read_memes(folder / f"{split}.jsonl")]
    assert len(ids) == len(set(ids)) == 48  # unique across splits, as the challenge's
    # the same folder is a data source by name, and a benchmark for `vlkit eval`
    assert resolve_name(str(folder)) == ("hateful-memes", str(folder))
    assert len(open_named(str(folder))) == 24
    (bench,) = open_files(folder)
    assert bench.task == "hateful-memes" and bench.split == "dev" and len(bench.examples) == 12
    (test,) = open_files(folder / "test.jsonl")
    assert test.split == "test"


def test_write_memes_names_images_as_the_challenge_does(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    write_memes([{"id": 1235, "image": image, "text": "hi", "label": 1}], tmp_path, "dev")
    assert json.loads((tmp_path / "dev.jsonl").read_text()) == {
        "id": 1235,
        "img": "img/01235.png",
        "label": 1,
        "text": "hi",
    }
    assert read_memes(tmp_path / "dev.jsonl")[0]["id"] == "1235"


GOOD = {"id": 7, "img": "img/00007.png", "label": 0, "text": "a red circle"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "text"}, r"train.jsonl:2: missing field\(s\) \['text'\]"),
        (GOOD | {"label": "yes"}, r"train.jsonl:2: label must be 0 or 1, got 'yes' \(field 'label'\)"),
        (GOOD | {"label": True}, r"train.jsonl:2: label must be 0 or 1, got True"),
        (
            GOOD | {"text": ["a", "b"]},
            r"train.jsonl:2: field 'text' must be a non-empty str, got \['a', 'b'\]",
        ),
        (GOOD | {"id": None}, r"train.jsonl:2: field 'id' must be a non-empty int or str, got None"),
        (GOOD | {"img": "img/missing.png"}, r"train.jsonl:2: field 'img': 'img/missing.png' not found"),
        (GOOD | {"id": 6}, r"train.jsonl:2: field 'id': 6 repeats line 1"),
        ("{not json", r"train.jsonl:2: not valid JSON"),
    ],
    ids=["missing", "label", "bool-label", "text", "id", "image", "duplicate", "json"],
)
def test_bad_lines_are_refused_naming_file_line_and_field(tmp_path, line, message):
    (tmp_path / "img").mkdir()
    for i in (6, 7):
        (tmp_path / "img" / f"0000{i}.png").write_bytes(b"")
    first = json.dumps(GOOD | {"id": 6, "img": "img/00006.png"})
    (tmp_path / "train.jsonl").write_text(
        first + "\n" + (line if isinstance(line, str) else json.dumps(line)) + "\n"
    )
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Memes(tmp_path, "train")


def test_a_missing_split_and_a_missing_label_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dev.jsonl: no such file"):
        Memes(tmp_path, "dev")
    objective_cfg = make_tiny_fusion_cfg()
    objective_cfg.model.objective = "classify"
    from vlkit.train.fusion import ClassificationObjective

    model = build_model(objective_cfg, texts=["a red circle"] * 8)
    sample = {"image": np.zeros((32, 32, 3), np.uint8), "captions": ["a red circle"], "key": "s7"}
    with pytest.raises(ValueError, match=r"sample s7: label None; classification fine-tuning needs labels"):
        ClassificationObjective(model).collate([(0, sample)])


def test_scene_memes_refuses_a_share_that_leaves_out_a_label():
    with pytest.raises(ValueError, match="positive_share: 1.0"):
        next(scene_memes(Scenes(ScenesConfig(image_size=32)), 2, 0, 1.0, [1, 1, 1]))


def test_an_unknown_objective_and_a_mismatched_init_are_refused(tmp_path):
    cfg = make_tiny_fusion_cfg()
    cfg.model.objective = "regress"
    with pytest.raises(ValueError, match=r"model.objective: 'regress'; valid: pretrain, classify"):
        build_model(cfg, texts=["a red circle"])
    base = make_tiny_fusion_cfg()
    save_model(build_model(base, texts=texts_for(base, build_dataset(base.data))), base, tmp_path / "base")
    cfg = make_tiny_fusion_cfg()
    cfg.model.objective, cfg.model.init_from, cfg.model.width = "classify", str(tmp_path / "base"), 32
    cfg.train.out_dir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"model.init_from=.*base.*model.width: 16 there, 32 here"):
        train(cfg, progress=False)


def test_a_pretrained_model_without_a_head_says_how_to_get_one(tmp_path, scene_memes_folder):
    cfg = make_tiny_fusion_cfg()
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, tmp_path / "m")
    with pytest.raises(ValueError, match=r"no classification head .* model.objective: classify"):
        run_eval(
            str(tmp_path / "m"), str(scene_memes_folder), task="hateful-memes", out_dir=str(tmp_path / "e")
        )


def _single_object_memes(folder, counts):
    """An easy scenes task for a tiny model: one object, negatives another scene's caption."""
    for split, (seed, count) in counts.items():
        scenes = Scenes(ScenesConfig(image_size=32, max_objects=1, seed=seed))
        write_memes(scene_memes(scenes, count, seed, 0.5, [0, 0, 1], first_id=seed * 1000), folder, split)


@pytest.mark.slow
def test_fine_tuning_from_a_pretrained_run_beats_the_majority_class(tmp_path):
    """init_from a fusion model folder → a classifier trained on a Hateful Memes folder's train
    split, saved and loaded by the normal checkpoint path, scored by `vlkit eval`'s code on dev:
    above the majority class, and its AUROC sklearn's on the same scores."""
    base = make_tiny_fusion_cfg()
    pretrained = build_model(base, texts=texts_for(base, build_dataset(base.data)))
    save_model(pretrained, base, tmp_path / "pretrained")
    memes = tmp_path / "memes"
    _single_object_memes(memes, {"train": (0, 200), "dev": (7, 64)})
    cfg = make_tiny_fusion_cfg()
    cfg.model.objective, cfg.model.init_from = "classify", str(tmp_path / "pretrained")
    cfg.data.sources = [SourceConfig(kind="hateful-memes", path=str(memes))]
    cfg.eval.data = str(memes)
    t = cfg.train
    t.out_dir, t.steps, t.batch_size, t.lr, t.warmup_steps, t.save_every = (
        str(tmp_path / "run"),
        150,
        16,
        3e-3,
        5,
        150,
    )
    run = train(cfg, evaluate=training_evaluator(cfg.kind), progress=False)  # as `vlkit train`
    model, saved_cfg = load_model(latest_checkpoint(run))
    assert saved_cfg.model.objective == "classify" and model.classifier is not None
    # the encoder started from the pre-trained one: its tokenizer, not a new one
    assert model.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    result = run_eval(str(run), str(memes), task="hateful-memes", out_dir=str(tmp_path / "eval"))
    m = result["metrics"]
    assert m["hm_accuracy"] > m["hm_majority_accuracy"] + 0.1 and m["hm_auroc"] > 0.75
    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    labels, scores = [p["label"] for p in preds], [p["score"] for p in preds]
    assert m["hm_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/hm_auroc" in r for r in log)  # the training evaluator scored dev
    fm = api.load(run)
    with torch.inference_mode():
        assert fm.classify([memes / "img" / "07000.png"], ["a red circle"]).shape == (1,)


def test_a_fusion_recipe_pretrains_then_fine_tunes_a_classifier_in_stages(tmp_path, scene_memes_folder):
    """`stages:` in a fusion recipe: the classify stage starts from the pre-training stage's
    encoder and tokenizer (`model.init_from`), adds its head, and the run folder opens as it."""
    cfg = make_tiny_fusion_cfg()
    cfg.train.out_dir, cfg.train.batch_size = str(tmp_path / "run"), 4
    memes = f"[{{kind: hateful-memes, path: {scene_memes_folder}}}]"
    cfg.stages = [
        StageConfig(name="pretrain", set=["train.steps=2"]),
        StageConfig(name="memes", set=["train.steps=2", "model.objective=classify", f"data.sources={memes}"]),
    ]
    (_, first), (_, second) = stage_configs(cfg)
    assert second.model.init_from == first.train.out_dir and second.model.objective == "classify"
    train_stages(cfg, progress=False)
    pretrained, _ = load_model(latest_checkpoint(first.train.out_dir))
    started = build_model(second, **initial_parts(second))  # what the classify stage trained from
    assert started.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    for name, weight in pretrained.state_dict().items():
        assert torch.equal(weight, started.state_dict()[name]), name
    fm = api.load(cfg.train.out_dir)  # the staged folder opens as its last stage
    assert fm.cfg.model.objective == "classify" and fm.model.classifier is not None
    pairs = zip(fm.model.classifier.parameters(), started.classifier.parameters())
    assert not all(torch.equal(a, b) for a, b in pairs)  # and it trained
