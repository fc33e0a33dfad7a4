"""Template teacher, record checks, sources and the MultiInstruct templates (no LLM, no network)."""

import json

import numpy as np
import pytest
from PIL import Image

from vlkit.cli import main
from vlkit.data import instruct_template as template
from vlkit.data.contexts import (
    coco_contexts,
    conversation_contexts,
    folder_contexts,
    open_source,
    save_image,
    scene_contexts,
)
from vlkit.data.conversations import DETAIL_QUESTIONS
from vlkit.instruct import check, generate_llava, generate_multiinstruct
from vlkit.instruct.llava import Finisher, Job
from vlkit.instruct.multiinstruct import INSTRUCTIONS, TASKS
from vlkit.instruct.prompts import FEW_SHOT, KINDS, SYSTEM


def test_prompts_cover_the_three_kinds():
    assert set(SYSTEM) == set(FEW_SHOT) == set(KINDS)
    assert len(set(DETAIL_QUESTIONS)) >= 16
    assert len(TASKS) >= 8 and all(len(set(v)) >= 5 for v in INSTRUCTIONS.values())
    for kind in KINDS:  # the few-shot replies are in the format the parser reads
        (_, reply), *_ = FEW_SHOT[kind]
        assert check.parse_answer(reply) if kind == "detail" else check.parse_pairs(reply)


def test_template_set_is_valid_consistent_and_self_contained(tmp_path):
    stats = generate_llava("scenes", tmp_path, count=40, progress=False)
    data = json.loads((tmp_path / "llava.json").read_text())
    assert stats["records"] == len(data) == 120 and stats["rejected"] == 0
    assert {r["id"] for r in data} == {f"scenes-0-{i:06d}-{k}" for i in range(40) for k in KINDS}
    assert stats["consistency"]["template:"] == {"checked": 120, "errors": 0, "error_rate": 0.0}
    for r in data:
        assert check.validate(r["conversations"]) == []
        assert (tmp_path / r["image"]).is_file()
        assert not any(check.coordinate_leak(t["value"]) for t in r["conversations"])
    chat = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert chat[0]["images"] == [data[0]["image"]] and chat[0]["messages"][0]["role"] == "user"
    assert "<image>" in chat[0]["messages"][0]["content"]
    assert "conversation" in (tmp_path / "CARD.md").read_text()
    image = np.asarray(Image.open(tmp_path / data[0]["image"]))
    assert np.array_equal(image, next(scene_contexts(1)).array)


def test_template_answers_match_the_truth_by_hand():
    ctx = next(c for c in scene_contexts(50) if len(c.objects) == 3)
    turns = template.write(ctx, "conversation")
    for q, a in zip(turns[::2], turns[1::2]):
        if q["value"].replace("<image>", "").strip().startswith("How many shapes"):
            assert ["one", "two", "three"][len(ctx.objects) - 1] in a["value"]
    detail = template.write(ctx, "detail")[1]["value"]
    for o in ctx.objects:
        assert f"{o.size} {o.color} {o.shape}" in detail


def test_wrong_counts_and_colours_are_flagged():
    ctx = next(c for c in scene_contexts(50) if len(c.objects) == 2)
    present = {(o.color, o.shape) for o in ctx.objects}
    absent = next(
        f"{c} {s}" for c in ("red", "blue", "green") for s in ("circle", "star") if (c, s) not in present
    )
    wrong = [
        {"from": "human", "value": "<image>\nHow many shapes are there?"},
        {"from": "gpt", "value": "There are three shapes."},
        {"from": "human", "value": "What is on the left?"},
        {"from": "gpt", "value": f"A {absent} is on the left."},
        {"from": "human", "value": "Is there a pink triangle?"},
        {"from": "gpt", "value": f"No, there is no {absent}."},  # negated: no claim
    ]
    errors = check.consistency_errors(ctx, wrong)
    assert len([e for e in errors if e.startswith("count")]) == 2  # the question and the sentence
    assert [e for e in errors if e.startswith("color")] == [f"color: {absent!r} is not in the image"]
    right = [wrong[0], {"from": "gpt", "value": "There are two shapes."}]
    assert check.consistency_errors(ctx, right) == []


def test_validation_reasons():
    assert check.validate([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}])  # no image
    two = [{"from": "human", "value": "<image> q <image>"}, {"from": "gpt", "value": "x"}]
    assert "exactly once" in check.validate(two)[0]
    swapped = [{"from": "gpt", "value": "<image>\nq"}, {"from": "human", "value": "a"}]
    assert len(check.validate(swapped)) == 2
    assert check.validate([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": " "}])


def test_parse_and_dedup():
    pairs = check.parse_pairs("**Question:** How many?\nAnswer: Two.\nMore.\nQ: What color is it?\nA: Red.")
    assert pairs == [("How many?", "Two.\nMore."), ("What color is it?", "Red.")]
    for bad in ("", "just text", "Question: a\nQuestion: b\nAnswer: c"):
        with pytest.raises(check.Rejected):
            check.parse_pairs(bad)
    turns = template.to_conversations(
        [
            ("What color is the circle?", "Red."),
            ("What is the color of the circle?", "Red."),
            ("How many?", "1"),
        ]
    )
    kept = check.dedup_turns(turns, [])
    assert [t["value"] for t in kept[::2]] == ["<image>\nWhat color is the circle?", "How many?"]


def test_near_duplicate_questions_of_one_image_are_rejected(tmp_path):
    ctx = next(scene_contexts(1))
    finisher = Finisher([])
    n = len(ctx.objects)
    answer = f"There {'is' if n == 1 else 'are'} {['one', 'two', 'three'][n - 1]} shape{'s' * (n > 1)}."
    first = {
        "image": ctx.image,
        "conversations": template.to_conversations([("How many shapes are there?", answer)]),
    }
    assert finisher("a", Job(ctx, "conversation", "t"), first)["checked"]
    again = {
        "image": ctx.image,
        "conversations": template.to_conversations([("How many shapes are in the image?", answer)]),
    }
    with pytest.raises(check.Rejected, match="duplicate"):
        finisher("b", Job(ctx, "conversation", "t"), again)
    # the same task twice in one run: done once, neither duplicated nor rejected
    generate_llava([ctx, ctx], tmp_path, kinds=["reasoning"], progress=False)
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "rejected.jsonl").exists()


def _write_png(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def test_sources_coco_folder_llava(tmp_path):
    _write_png(tmp_path / "coco" / "images" / "a.png", (200, 100))
    (tmp_path / "coco" / "instances.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "a.png", "width": 200, "height": 100}],
                "categories": [{"id": 1, "name": "dog"}],
                "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [20, 10, 100, 50]}],
            }
        )
    )
    (tmp_path / "coco" / "captions.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "a.png"}],
                "annotations": [{"id": 2, "image_id": 7, "caption": "a dog "}],
            }
        )
    )
    (ctx,) = coco_contexts(tmp_path / "coco")
    assert ctx.captions == ["a dog"] and ctx.objects[0].category == "dog"
    assert ctx.objects[0].box == (0.1, 0.1, 0.6, 0.6) and ctx.image.endswith("images/a.png")
    assert "dog: [0.100, 0.100, 0.600, 0.600]" in ctx.symbolic()
    generate_multiinstruct(str(tmp_path / "coco"), tmp_path / "mi", progress=False)
    made = {
        r["kind"]: r for r in map(json.loads, (tmp_path / "mi" / "records.jsonl").read_text().splitlines())
    }
    assert set(made) == {"captioning", "image_text_matching", "grounded_captioning", "visual_grounding"}
    assert (
        made["visual_grounding"]["target"] == "[0.10, 0.10, 0.60, 0.60]"
        and made["captioning"]["target"] == "a dog"
    )

    _write_png(tmp_path / "f" / "x.png")
    rows = [{"image": "x.png", "caption": "a cat", "boxes": [{"label": "cat", "box": [0.1, 0.2, 0.5, 0.6]}]}]
    (tmp_path / "f" / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (fctx,) = open_source(str(tmp_path / "f"))
    assert fctx.objects[0].category == "cat" and fctx.captions == ["a cat"]
    rows[0]["boxes"] = [[0.1, 0.2, 1.5, 0.6]]
    (tmp_path / "f" / "captions.jsonl").write_text(json.dumps(rows[0]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        folder_contexts(tmp_path / "f")

    llava = [
        {
            "id": "q",
            "image": "f/x.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat?"},
                {"from": "gpt", "value": "A cat."},
            ],
        }
    ]
    (tmp_path / "l.json").write_text(json.dumps(llava))
    (lctx,) = conversation_contexts(tmp_path / "l.json")
    assert lctx.captions == ["A cat."] and lctx.image == str((tmp_path / "f" / "x.png").resolve())
    with pytest.raises(ValueError, match="exact attributes"):
        template.write(lctx, "detail")


def test_multiinstruct_scenes_and_coco(tmp_path):
    stats = generate_multiinstruct("scenes", tmp_path / "s", count=30, progress=False)
    data = json.loads((tmp_path / "s" / "llava.json").read_text())
    assert set(stats["per_kind"]) == set(TASKS)
    assert stats["consistency"]["template:"]["errors"] == 0
    assert all(check.validate(r["conversations"]) == [] for r in data)
    records = [json.loads(line) for line in (tmp_path / "s" / "records.jsonl").read_text().splitlines()]
    for r in records:  # the target is among the options whenever the task has options
        if "options" in r:
            assert f") {r['target']}" in r["options"]
    grounding = next(r for r in records if r["kind"] == "visual_grounding")
    ctx = next(c for c in scene_contexts(30) if c.image == grounding["image"])
    obj = next(o for o in ctx.objects if f"{o.color} {o.shape}" == grounding["text"])
    assert grounding["target"] == "[" + ", ".join(f"{v:.2f}" for v in obj.box) + "]"


def test_cli_llava_template_and_resume_is_a_no_op(tmp_path, capsys):
    out = tmp_path / "set"
    main(["-q", "instruct", "llava", "--source", "scenes", "--count", "5", "--out", str(out)])
    first = (out / "llava.json").read_text()
    main(["-q", "instruct", "llava", "--source", "scenes", "--count", "5", "--out", str(out)])
    assert (out / "llava.json").read_text() == first
    stats = json.loads((out / "stats.json").read_text())
    assert stats["runs"][-1]["skipped"] == 15 and stats["runs"][-1]["records"] == 0
    with pytest.raises(SystemExit):
        main(["instruct", "llava", "--source", "scenes", "--out", str(out)])  # scenes without --count
    assert "--count" in capsys.readouterr().err


def test_a_failed_image_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def disk_full(self, fp, format=None, **params):
        open(fp, "wb").close()  # the file exists, empty, when the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_image(next(scene_contexts(1)), tmp_path)
    assert list((tmp_path / "images").iterdir()) == []


def test_a_rerun_removes_the_partial_images_a_killed_run_left(tmp_path):
    out = tmp_path / "set"
    (out / "images").mkdir(parents=True)
    stale = out / "images" / "000001.png.4242.1.tmp"  # what a kill between open and rename leaves
    stale.write_bytes(b"")
    main(["-q", "instruct", "llava", "--source", "scenes", "--count", "2", "--out", str(out)])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
