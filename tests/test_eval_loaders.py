"""Benchmark loaders on small fixture files written in each benchmark's own format."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from vlkit.eval.loaders import (
    load_class_folders,
    load_coco_captions,
    load_hateful_memes,
    load_karpathy,
    load_nlvr2,
    load_refcoco,
    load_snli_ve,
    load_vqav2,
    load_winoground,
    open_files,
)
from vlkit.eval.run import open_benchmarks


def _image(path, value=0, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def vqav2(tmp_path):
    root = tmp_path / "vqav2"
    for image_id in (42, 7):
        _image(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": {},
        "questions": [
            {"image_id": 42, "question": "How many dogs?", "question_id": 420},
            {"image_id": 7, "question": "Is it red?", "question_id": 70},
        ],
    }
    answers = {
        420: ["2"] * 6 + ["two"] * 2 + ["3"] * 2,
        70: ["yes"] * 10,
    }
    annotations = {
        "info": {},
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": {},
        "annotations": [
            {
                "question_id": qid,
                "image_id": img,
                "question_type": qtype,
                "answer_type": atype,
                "multiple_choice_answer": ans[0],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(ans)
                ],
            }
            for qid, img, qtype, atype, ans in (
                (420, 42, "how many", "number", answers[420]),
                (70, 7, "is it", "yes/no", answers[70]),
            )
        ],
    }
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(questions))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(annotations))
    return root


def test_vqav2(vqav2):
    bench = load_vqav2(
        vqav2 / "v2_OpenEnded_mscoco_val2014_questions.json", vqav2 / "v2_mscoco_val2014_annotations.json"
    )
    assert bench.task == "vqa" and bench.split == "val2014" and len(bench.examples) == 2
    first = bench.examples[0]
    assert first["id"] == "420" and first["question"] == "How many dogs?"
    assert first["answers"] == ["2"] * 6 + ["two"] * 2 + ["3"] * 2 and first["question_type"] == "how many"
    assert first["image"].endswith("val2014/COCO_val2014_000000000042.jpg")
    # the folder alone is recognised, and so is either file
    assert [b.task for b in open_files(vqav2)] == ["vqa"]
    assert [b.task for b in open_files(vqav2 / "v2_mscoco_val2014_annotations.json")] == ["vqa"]


def test_vqav2_missing_image_names_it(vqav2):
    (vqav2 / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"questions\[1\]: image .*COCO_val2014_000000000007.jpg"):
        open_files(vqav2)


def test_coco_captions_and_karpathy(tmp_path):
    root = tmp_path / "coco"
    _image(root / "val2014" / "COCO_val2014_000000000001.jpg")
    _image(root / "val2014" / "COCO_val2014_000000000002.jpg")
    captions = {
        "images": [
            {"id": 1, "file_name": "COCO_val2014_000000000001.jpg"},
            {"id": 2, "file_name": "COCO_val2014_000000000002.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "A dog."},
            {"id": 2, "image_id": 1, "caption": "A brown dog."},
            {"id": 3, "image_id": 2, "caption": "A cat."},
        ],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(captions))
    benches = load_coco_captions(root / "annotations" / "captions_val2014.json", image_root=root)
    assert [b.task for b in benches] == ["caption", "retrieval"] and benches[0].split == "val2014"
    assert benches[0].examples[0]["captions"] == ["A dog.", "A brown dog."]

    karpathy = {
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000001.jpg",
                "split": "test",
                "cocoid": 1,
                "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}, {"raw": "A brown dog."}],
            },
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000002.jpg",
                "split": "train",
                "cocoid": 2,
                "sentences": [{"raw": "x"}],
            },  # fmt: skip
        ]
    }
    (root / "dataset_coco.json").write_text(json.dumps(karpathy))
    benches = load_karpathy(root / "dataset_coco.json")
    assert [b.name for b in benches] == ["karpathy-coco"] * 2
    assert [e["id"] for e in benches[1].examples] == ["1"]  # the test split only
    assert benches[1].examples[0]["captions"] == ["A dog.", "A brown dog."]
    assert [b.task for b in open_files(root)] == ["caption", "retrieval"]
    with pytest.raises(ValueError, match="no images with split 'val'"):
        load_karpathy(root / "dataset_coco.json", split="val")


def test_winoground(tmp_path):
    root = tmp_path / "winoground"
    for name in ("ex_0_img_0", "ex_0_img_1"):
        _image(root / "images" / f"{name}.png")
    row = {
        "id": 0,
        "image_0": "ex_0_img_0",
        "image_1": "ex_0_img_1",
        "caption_0": "an old person kisses a young person",
        "caption_1": "a young person kisses an old person",
        "tag": "Adjective-Age",
        "secondary_tag": "",
        "num_main_preds": 1,
        "collapsed_tag": "Object",
    }
    _jsonl(root / "examples.jsonl", [row])
    (bench,) = open_files(root)
    assert bench.task == "winoground" and bench.examples[0]["tag"] == "Object"
    assert bench.examples[0]["images"][1].endswith("images/ex_0_img_1.png")
    assert load_winoground(root / "examples.jsonl").examples[0]["captions"][1].startswith("a young")


def test_hateful_memes(tmp_path):
    root = tmp_path / "hateful_memes"
    _image(root / "img" / "42953.png")
    _image(root / "img" / "23058.png")
    rows = [
        {"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character not their color"},
        {"id": 23058, "img": "img/23058.png", "label": 1, "text": "a mean text"},
    ]
    _jsonl(root / "dev_seen.jsonl", rows)
    (bench,) = open_files(root)
    assert bench.task == "hateful-memes" and bench.split == "dev_seen"
    assert [e["label"] for e in bench.examples] == [0, 1]
    _jsonl(root / "bad.jsonl", [rows[0] | {"label": "yes"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: label must be 0 or 1"):
        load_hateful_memes(root / "bad.jsonl")


def test_snli_ve(tmp_path):
    root = tmp_path / "snli_ve"
    _image(root / "flickr30k_images" / "3416050480.jpg")
    rows = [
        {
            "Flickr30K_ID": "3416050480",
            "sentence2": "A person is outdoors.",
            "gold_label": "entailment",
            "pairID": "p1",
        },
        {
            "Flickr30K_ID": "3416050480",
            "sentence2": "A cat sleeps.",
            "gold_label": "contradiction",
            "pairID": "p2",
        },
    ]
    _jsonl(root / "snli_ve_test.jsonl", rows)
    (bench,) = open_files(root)
    assert bench.task == "snli-ve" and bench.split == "test"
    assert [(e["id"], e["label"]) for e in bench.examples] == [("p1", "entailment"), ("p2", "contradiction")]
    _jsonl(root / "snli_ve_bad.jsonl", [rows[0] | {"gold_label": "-"}])
    with pytest.raises(ValueError, match="gold_label '-'"):
        load_snli_ve(root / "snli_ve_bad.jsonl")


def test_nlvr2_two_images_per_example(tmp_path):
    root = tmp_path / "nlvr2"
    for side in (0, 1):
        _image(root / "dev" / f"dev-850-0-img{side}.png", value=100 * side)
    _image(root / "images" / "left.png")
    _image(root / "images" / "right.png")
    rows = [
        {"identifier": "dev-850-0-0", "sentence": "There are two dogs.", "label": "True"},
        {
            "identifier": "dev-9-1-2",
            "sentence": "One dog.",
            "label": "False",
            "left_image": "left.png",
            "right_image": "right.png",
        },  # fmt: skip
    ]
    _jsonl(root / "dev.json", rows)  # NLVR2 ships JSON lines in .json files
    bench = load_nlvr2(root / "dev.json")
    assert bench.task == "nlvr2" and [e["label"] for e in bench.examples] == ["true", "false"]
    left, right = bench.examples[0]["images"]
    assert left.endswith("dev-850-0-img0.png") and right.endswith("dev-850-0-img1.png")
    assert bench.examples[1]["images"][0].endswith("images/left.png")
    assert [b.task for b in open_files(root)] == ["nlvr2"]


@pytest.mark.parametrize("refs_format", ["p", "json"])
def test_refcoco(tmp_path, refs_format):
    root = tmp_path / "refcoco"
    _image(root / "train2014" / "COCO_train2014_000000000009.jpg", size=(40, 30))
    instances = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 100, "image_id": 9, "bbox": [1, 2, 10, 5], "category_id": 1},
            {"id": 101, "image_id": 9, "bbox": [20, 10, 5, 5], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    refs = [
        {"ref_id": 0, "ann_id": 101, "image_id": 9, "split": "val", "category_id": 1,
         "sentences": [{"sent": "man on the right", "raw": "Man on the right"}, {"sent": "right guy"}]},
        {"ref_id": 1, "ann_id": 100, "image_id": 9, "split": "train", "sentences": [{"sent": "left"}]},
    ]  # fmt: skip
    (root / "instances.json").write_text(json.dumps(instances))
    refs_path = root / ("refs(unc).p" if refs_format == "p" else "refs.json")
    if refs_format == "p":
        refs_path.write_bytes(pickle.dumps(refs))
    else:
        refs_path.write_text(json.dumps(refs))
    bench = load_refcoco(refs_path, root / "instances.json", split="val")
    assert bench.task == "grounding" and [e["phrase"] for e in bench.examples] == [
        "Man on the right",
        "right guy",
    ]
    assert bench.examples[0]["box"] == [20, 10, 25, 15]  # xywh -> xyxy
    assert bench.examples[0]["candidates"] == [[1, 2, 11, 7], [20, 10, 25, 15]]
    assert len(open_files(root)[0].examples) == 2


def test_class_folders_with_names_file(tmp_path):
    root = tmp_path / "imagenet-val"
    _image(root / "n01440764" / "a.JPEG")
    _image(root / "n01440764" / "b.JPEG")
    _image(root / "n01443537" / "c.JPEG")
    (root / "classnames.txt").write_text("tench\ngoldfish\n")
    bench = load_class_folders(root)
    assert bench.task == "zero-shot" and bench.classes == ["tench", "goldfish"]
    assert [e["label"] for e in bench.examples] == [0, 0, 1]
    (root / "classnames.txt").write_text("tench\n")
    with pytest.raises(ValueError, match="1 names for 2 class folders"):
        load_class_folders(root)


def test_limit_and_unknown_data(vqav2, tmp_path):
    assert len(open_benchmarks(str(vqav2), limit=1)[0].examples) == 1
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        open_benchmarks(str(tmp_path / "nope"))


def test_scenes_offer_every_task_with_consistent_targets():
    benches = {b.task: b for b in open_benchmarks("scenes", limit=8)}
    assert set(benches) == {
        "zero-shot",
        "retrieval",
        "winoground",
        "vqa",
        "caption",
        "caption-coverage",
        "grounding",
        "segmentation",
        "detection",
    }
    # detection: every object of a scene with its colour-shape label; its boxes are grounding's candidates
    candidates = {e["id"].rsplit("/", 1)[0]: e["candidates"] for e in benches["grounding"].examples}
    for e in benches["detection"].examples:
        assert all(len(o["label"].split()) == 2 for o in e["objects"])
        if e["id"] in candidates:
            assert sorted(o["box"] for o in e["objects"]) == sorted(candidates[e["id"]])
    # caption coverage reads the VQA scenes, each object as (colour, shape)
    vqa_scenes = {e["id"].rsplit("/", 1)[0] for e in benches["vqa"].examples}
    assert {e["id"] for e in benches["caption-coverage"].examples} == vqa_scenes
    for e in benches["grounding"].examples:
        assert e["box"] in e["candidates"]
    for g, s in zip(benches["grounding"].examples, benches["segmentation"].examples):
        ys, xs = np.nonzero(s["mask"])  # the box is the tight box of the mask
        assert g["box"] == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1)
    assert {e["question_type"] for e in benches["vqa"].examples} <= {
        "color",
        "shape",
        "count",
        "existence",
        "relation",
    }
    assert all(len(e["answers"]) == 10 for e in benches["vqa"].examples)


class _Payload:
    """A pickle that would run code when loaded: os.system at unpickling time."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_refcoco_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    """A crafted refs(*).p in a data folder never runs: the unpickler admits plain data only."""
    monkeypatch.chdir(tmp_path)
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps([{"ann_id": 1, "payload": _Payload()}]))
    (tmp_path / "instances.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(
        ValueError, match=r"refs\(unc\).p: refused: not a plain-data pickle .*posix.system|nt.system"
    ):
        load_refcoco(refs_path, tmp_path / "instances.json")
    assert not (tmp_path / "PWNED").exists()
