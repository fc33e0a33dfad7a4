"""The harness end to end with fake models of known behaviour, and with the tiny trained CLIP."""

import inspect
import json

import numpy as np
import pytest
from PIL import Image
from test_eval_loaders import _image, _jsonl, vqav2  # noqa: F401 - fixture files in the benchmarks' formats

import vlkit
from vlkit import cli, metrics
from vlkit.eval import harness
from vlkit.eval.cards import split_front_matter, write_model_card
from vlkit.eval.during_training import GENERATIVE_TASKS, evaluate_scenes, training_evaluator
from vlkit.eval.loaders import Benchmark
from vlkit.eval.paraphrase import PARAPHRASES, paraphrase
from vlkit.eval.report import compare
from vlkit.eval.run import open_benchmarks, run_eval


class FakeVLM:
    """The generative protocol with scripted answers: question → answer, in any batch split."""

    def __init__(self, answers: dict[str, str] | list[str], captions: list[str] = ()):
        self.answers, self.captions, self.calls = answers, list(captions), []

    def answer(self, images, questions):
        assert all(isinstance(im, np.ndarray) and im.dtype == np.uint8 for im in images)
        self.calls.append(len(questions))
        if isinstance(self.answers, list):  # in order
            out, self.answers = self.answers[: len(questions)], self.answers[len(questions) :]
            return out
        return [self.answers[q] for q in questions]

    def caption(self, images, prompt=None):
        out, self.captions = self.captions[: len(images)], self.captions[len(images) :]
        return out


class FakeSegmenter(FakeVLM):
    def __init__(self, masks):
        super().__init__({})
        self.masks = list(masks)

    def segment(self, images, phrases):
        out, self.masks = self.masks[: len(images)], self.masks[len(images) :]
        return out


class ColourEncoder:
    """A contrastive fake: an image is its mean colour, a text the RGB of the colour it names."""

    COLOURS = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0)}

    def __init__(self, swap: bool = False):
        self.swap = swap

    def embed_images(self, images):
        v = np.stack([np.asarray(im, np.float64).reshape(-1, 3).mean(0) + 1e-3 for im in images])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_texts(self, texts):
        names = [next(c for c in self.COLOURS if c in t) for t in texts]
        if self.swap:
            names = [{"red": "blue", "blue": "red"}.get(n, n) for n in names]
        return np.array([self.COLOURS[n] for n in names])

    def label_embeddings(self, labels, templates):
        return self.embed_texts(labels)


def test_vqa_scores_follow_the_official_formula_per_type(vqav2, tmp_path):  # noqa: F811
    # "How many dogs?" has answers 6x "2", 2x "two", 2x "3": predicting "3" gives
    # (2 annotators x 1/3 + 8 x 2/3) / 10 = 0.6; "Yes." normalises to "yes" (10 of 10) -> 1.0.
    model = FakeVLM({"How many dogs?": "3", "Is it red?": "Yes."})
    result = run_eval(model, str(vqav2), out_dir=str(tmp_path / "out"), batch_size=1)
    assert model.calls == [1, 1]  # batched as asked
    assert result["metrics"] == {"vqa_accuracy": pytest.approx(0.8)}
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    by_type = saved["breakdowns"]["vqav2 vqa: vqa_accuracy by question_type"]
    assert by_type == {"how many": pytest.approx(0.6), "is it": 1.0}
    assert (
        saved["model_kind"] == "generative" and saved["tasks"] == ["vqav2/vqa"] and "vlkit_version" in saved
    )
    lines = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [(p["id"], p["answer"], p["normalized"]) for p in lines] == [
        ("420", "3", "3"),
        ("70", "Yes.", "yes"),
    ]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| vqa_accuracy | 0.8000 |" in report and "| how many | 0.6000 |" in report
    assert "](plots/vqav2-vqa-vqa_accuracy_by_question_type.png)" in report
    # every breakdown by question type has its own plot (they once shared one file name)
    plots = {p.name for p in (tmp_path / "out" / "plots").iterdir()}
    expected = {"vqa_accuracy_by_question_type", "question_only_prior_by_question_type"}
    assert {f"vqav2-vqa-{name}.png" for name in expected} <= plots


def test_scenes_vqa_with_a_perfect_and_a_wrong_model():
    (bench,) = [b for b in open_benchmarks("scenes", limit=6) if b.task == "vqa"]
    counts = [e for e in bench.examples if e["question_type"] == "count"]
    assert counts and all(e["answers"][0].isdigit() for e in counts)  # "two" stored as "2", like VQA v2
    # a model answering in words ("Two.") is normalised to the stored form
    words = {"0": "zero", "1": "One.", "2": "Two", "3": "three", "4": "four", "5": "five", "6": "six"}
    truth = [words.get(e["answers"][0], e["answers"][0].upper()) for e in bench.examples]
    # every question is asked as written, then in its held-out wording (vlkit.eval.paraphrase)
    assert [e["reworded"] for e in bench.examples] == [paraphrase(e["question"]) for e in bench.examples]
    (perfect,) = harness.evaluate_benchmarks(FakeVLM(truth + truth), [bench], batch_size=4)
    assert perfect.metrics == {"vqa_accuracy": 1.0, "paraphrase_accuracy": 1.0}
    assert set(perfect.breakdowns["vqa_accuracy by question_type"].values()) == {1.0}
    (reworded_wrong,) = harness.evaluate_benchmarks(FakeVLM(truth + ["no"] * len(truth)), [bench])
    assert reworded_wrong.metrics["vqa_accuracy"] == 1.0
    expected = np.mean([e["answers"][0] == "no" for e in bench.examples])
    assert expected < 1 and reworded_wrong.metrics["paraphrase_accuracy"] == pytest.approx(expected)
    by_wording = reworded_wrong.breakdowns["paraphrase_accuracy by wording"]
    for wording, score in by_wording.items():  # each hand-written wording scored on its own questions
        asked = [e for e in bench.examples if e["reworded_wording"] == wording]
        assert asked and score == pytest.approx(np.mean([e["answers"][0] == "no" for e in asked]))
    assert sum(len(w) for _, w in PARAPHRASES) >= len(by_wording) >= 3
    assert set(by_wording) <= {w for _, wordings in PARAPHRASES for w in wordings}
    # each prediction carries its reworded question and answer beside the template's
    for pred, e in zip(reworded_wrong.predictions, bench.examples):
        assert (pred["reworded"], pred["reworded_answer"]) == (e["reworded"], "no")
        assert pred["reworded_accuracy"] == (e["answers"][0] == "no") and pred["accuracy"] == 1.0
    (wrong,) = harness.evaluate_benchmarks(FakeVLM(["purple elephant"] * 2 * len(truth)), [bench])
    assert wrong.metrics == {"vqa_accuracy": 0.0, "paraphrase_accuracy": 0.0}


def test_segmentation_plumbing_with_known_masks():
    (bench,) = [b for b in open_benchmarks("scenes", limit=4) if b.task == "segmentation"]
    masks = [e["mask"] if i % 2 == 0 else np.zeros_like(e["mask"]) for i, e in enumerate(bench.examples)]
    (result,) = harness.evaluate_benchmarks(FakeSegmenter(masks), [bench], batch_size=3)
    assert result.metrics["mIoU"] == pytest.approx(np.mean([i % 2 == 0 for i in range(len(masks))]))


def _two_squares():
    image = np.zeros((20, 40, 3), np.uint8)
    image[5:15, 2:12] = (230, 20, 20)  # red, left
    image[5:15, 25:35] = (20, 20, 230)  # blue, right
    boxes = [[2, 5, 12, 15], [25, 5, 35, 15]]
    examples = [
        {"id": "0", "image": image, "phrase": "the red square", "box": boxes[0], "candidates": boxes},
        {"id": "1", "image": image, "phrase": "the blue square", "box": boxes[1], "candidates": boxes},
    ]
    return Benchmark("squares", "grounding", examples)


def test_grounding_picks_the_crop_that_matches_the_phrase():
    bench = _two_squares()
    (right,) = harness.evaluate_benchmarks(ColourEncoder(), [bench])
    assert right.metrics == {"grounding_acc@0.5": 1.0}
    assert [p["predicted"] for p in right.predictions] == [e["box"] for e in bench.examples]
    assert right.breakdowns["grounding_acc@0.5 vs a random pick"] == {"model": 1.0, "random pick": 0.5}
    (wrong,) = harness.evaluate_benchmarks(ColourEncoder(swap=True), [bench])
    assert wrong.metrics == {"grounding_acc@0.5": 0.0}


def test_hateful_memes_by_two_prompts(tmp_path):
    rows = []
    for i, (colour, label) in enumerate([("red", 1), ("blue", 0), ("red", 1), ("green", 0)]):
        rows.append({"id": i, "img": f"img/{i}.png", "label": label, "text": f"a {colour} meme"})
        _image(tmp_path / "hm" / "img" / f"{i}.png")
    _jsonl(tmp_path / "hm" / "dev.jsonl", rows)

    class Fake(ColourEncoder):  # "hateful" prompts score high for red texts, benign ones for others
        def embed_images(self, images):
            return np.tile([1.0, 0.0], (len(images), 1))

        def embed_texts(self, texts):
            return np.array([[1.0, 0.0] if ("hateful" in t) == ("red" in t) else [0.0, 1.0] for t in texts])

    result = run_eval(Fake(), str(tmp_path / "hm"), out_dir=str(tmp_path / "out"))
    assert result["metrics"] == {"hm_auroc": 1.0, "hm_accuracy": 1.0, "hm_majority_accuracy": 0.5}


def test_capability_errors_name_task_kind_and_alternatives(tiny_run):
    model = vlkit.load(tiny_run)
    with pytest.raises(ValueError, match=r"task 'vqa': a contrastive model \(ContrastiveModel\) cannot do it; it can do: zero-shot, retrieval"):  # fmt: skip
        harness.check_task(model, "vqa")
    with pytest.raises(
        ValueError, match=r"task 'segmentation': a generative model .* it can do: vqa, caption"
    ):
        harness.check_task(FakeVLM({}), "segmentation")
    with pytest.raises(ValueError, match="unknown task; valid tasks: zero-shot"):
        harness.check_task(model, "ocr")
    assert harness.supported_tasks(FakeSegmenter([]))[-1] == "segmentation"


def test_training_time_eval_equals_vlkit_eval(tiny_run, tmp_path):
    model = vlkit.load(tiny_run)
    during_training = evaluate_scenes(model.model, model.cfg)
    result = run_eval(
        str(tiny_run),
        "scenes",
        limit=model.cfg.eval.num_images,
        out_dir=str(tmp_path / "e"),
        model_card=False,
    )
    assert result["metrics"] == during_training
    # grounding by crops is opt-in for dual encoders, and then it runs on the same scenes
    grounded = run_eval(
        model, "scenes", limit=4, task="grounding", out_dir=str(tmp_path / "g"), model_card=False
    )
    assert (
        set(grounded["metrics"]) == {"grounding_acc@0.5"}
        and 0 <= grounded["metrics"]["grounding_acc@0.5"] <= 1
    )


def test_generative_training_time_eval_equals_vlkit_eval(tiny_vlm_run, tmp_path):
    """What `vlkit train` logs for a generative model is what `vlkit eval RUN --task T --data
    scenes` writes, task by task: VQA (per type, its prior, held-out wordings), caption coverage."""
    model = vlkit.load(tiny_vlm_run)
    during_training = training_evaluator("generative")(model.model, model.cfg)
    assert {"vqa_accuracy", "prior_accuracy", "paraphrase_accuracy", "caption_all_named"} <= set(
        during_training
    )
    from_cli = {}
    for task in GENERATIVE_TASKS:
        out = tmp_path / task
        cli.main(["-q", "eval", str(tiny_vlm_run), "--task", task, "--data", "scenes", "--out", str(out)])
        written = json.loads((out / "result.json").read_text())
        from_cli |= written["metrics"]
        tables = written["breakdowns"]
        if task == "vqa":
            prior = dict(tables["scenes vqa: question-only prior by question_type"])
            from_cli["prior_accuracy"] = prior.pop("all")
            from_cli |= {f"prior_{t}": v for t, v in prior.items()}
            for name, prefix in (("vqa_accuracy", "vqa"), ("paraphrase_accuracy", "paraphrase")):
                from_cli |= {
                    f"{prefix}_{t}": v for t, v in tables[f"scenes vqa: {name} by question_type"].items()
                }
    assert from_cli == during_training


def test_model_card_merges_into_an_existing_readme(tiny_run, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    readme = folder / "README.md"
    readme.write_text("---\nlicense: apache-2.0\n---\n\n# My model\n\nHand-written prose.\n")
    results = harness.evaluate_benchmarks(ColourEncoder(), [_two_squares()])
    write_model_card(folder, "my-model", results)
    write_model_card(folder, "my-model", results)  # again: replaced, not duplicated
    front, body = split_front_matter(readme.read_text(), "README.md")
    assert front["license"] == "apache-2.0" and body == "\n# My model\n\nHand-written prose.\n"
    (entry,) = front["model-index"]
    assert entry["name"] == "my-model"
    assert entry["results"] == [
        {
            "task": {"type": "zero-shot-object-detection", "name": "Referring expression grounding"},
            "dataset": {"name": "squares", "type": "squares", "split": "test"},
            "metrics": [{"type": "grounding_acc_at_0.5", "value": 1.0, "name": "grounding_acc@0.5"}],
        }
    ]


def test_eval_cli_writes_card_next_to_checkpoint_and_compares(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cli.main(["-q", "eval", str(run), "--task", "zero-shot", "--limit", "32", "--out", str(tmp_path / "x")])
    assert not (vlkit.load(run).path / "README.md").exists()  # the model folder is left alone by default
    for task, out in (("zero-shot", "a"), ("retrieval", "b")):
        cli.main(
            ["-q", "eval", str(run), "--task", task, "--limit", "32", "--out", str(tmp_path / out), "--card"]
        )
    card = (vlkit.load(run).path / "README.md").read_text()
    front, _ = split_front_matter(card, "README.md")
    assert [r["task"]["type"] for r in front["model-index"][0]["results"]] == [
        "zero-shot-image-classification",
        "image-text-retrieval",
    ]
    capsys.readouterr()
    cli.main(["eval", "--compare", str(tmp_path / "a"), str(tmp_path / "b" / "result.json")])
    table = capsys.readouterr().out
    a = json.loads((tmp_path / "a" / "result.json").read_text())["metrics"]
    assert f"| top1 | {a['top1']:.4f} | - |" in table and "| t2i_R@1 | - |" in table
    assert compare([tmp_path / "a"]).count("\n") == 1 + len(a)
    with pytest.raises(SystemExit):
        cli.main(["eval", str(run), "--task", "vqa"])
    assert "task 'vqa': a contrastive model" in capsys.readouterr().err


def test_caption_task_hands_predictions_and_references_to_caption_scores(monkeypatch):
    # caption_scores itself is checked against COCOEvalCap in test_metrics.py (slow: Java)
    (bench,) = [b for b in open_benchmarks("scenes", limit=5) if b.task == "caption"]
    guesses = ["a red circle", "two squares", "a star", "a blue triangle", "shapes"]
    seen = {}

    def fake_scores(predictions, references):
        seen.update(predictions=predictions, references=references)
        return {"CIDEr": 0.5}

    monkeypatch.setattr(metrics, "caption_scores", fake_scores)
    (result,) = harness.evaluate_benchmarks(FakeVLM({}, guesses), [bench], batch_size=2)
    assert result.metrics == {"CIDEr": 0.5}
    assert seen["predictions"] == {e["id"]: g for e, g in zip(bench.examples, guesses)}
    assert seen["references"] == {e["id"]: e["captions"] for e in bench.examples}
    assert [p["caption"] for p in result.predictions] == guesses


def test_snli_ve_and_nlvr2_exact_match_for_generative_models(tmp_path):
    _image(tmp_path / "ve" / "1.jpg")
    rows = [
        {"Flickr30K_ID": "1", "sentence2": "A dog runs.", "gold_label": "entailment", "pairID": "a"},
        {"Flickr30K_ID": "1", "sentence2": "A cat sleeps.", "gold_label": "contradiction", "pairID": "b"},
    ]
    _jsonl(tmp_path / "ve" / "snli_ve_dev.jsonl", rows)
    model = FakeVLM(
        {
            'Does the image show that "A dog runs."? Answer entailment, neutral or contradiction.': "Entailment",
            'Does the image show that "A cat sleeps."? Answer entailment, neutral or contradiction.': "neutral",
        }
    )
    result = run_eval(model, str(tmp_path / "ve"), out_dir=str(tmp_path / "o1"))
    assert result["metrics"] == {"snli_ve_accuracy": 0.5}

    for name, size in (("dev-1-0-img0.png", (8, 6)), ("dev-1-0-img1.png", (5, 9))):
        _image(tmp_path / "nlvr2" / name, size=size)
    _jsonl(
        tmp_path / "nlvr2" / "dev.json",
        [{"identifier": "dev-1-0-0", "sentence": "Two dogs.", "label": "True"}],
    )

    class SideBySide(FakeVLM):
        def answer(self, images, questions):
            assert images[0].shape == (9, 13, 3)  # left and right next to each other, padded to one height
            return ["Yes"]  # yes/no answers count as true/false

    result = run_eval(SideBySide({}), str(tmp_path / "nlvr2"), out_dir=str(tmp_path / "o2"))
    assert result["metrics"] == {"nlvr2_accuracy": 1.0}


def test_image_features_are_computed_once_across_tasks(tmp_path):
    class Counting(ColourEncoder):
        embedded = 0

        def embed_images(self, images):
            Counting.embedded += len(images)
            return super().embed_images(images)

    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        rgb = tuple(int(255 * c) for c in ColourEncoder.COLOURS[colour])
        paths.append(str(tmp_path / colour / f"{i}.png"))
        _image(tmp_path / colour / f"{i}.png", value=0)
        Image.fromarray(np.full((6, 8, 3), rgb, np.uint8)).save(paths[-1])
    classes = ["red", "blue", "green"]
    zs = Benchmark(
        "c", "zero-shot", [{"id": str(i), "image": p, "label": i} for i, p in enumerate(paths)], classes
    )
    ret = Benchmark("c", "retrieval", [{"id": str(i), "image": p, "captions": [f"a {c} thing"]} for i, (p, c) in enumerate(zip(paths, classes))])  # fmt: skip
    results = harness.evaluate_benchmarks(Counting(), [zs, ret], batch_size=2)
    assert Counting.embedded == 3  # paths are the cache keys: zero-shot's features serve retrieval
    assert results[0].metrics["top1"] == 1.0 and results[1].metrics["t2i_R@1"] == 1.0
    assert results[0].confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_vlkit_generative_model_through_vlkit_eval(tiny_vlm_run, tmp_path):
    result = run_eval(
        str(tiny_vlm_run), "scenes", task="vqa", limit=2, out_dir=str(tmp_path / "e"), model_card=False
    )
    assert result["model_kind"] == "generative"
    assert set(result["metrics"]) == {"vqa_accuracy", "paraphrase_accuracy"}
    (task,) = result["results"]
    assert result["metrics"]["vqa_accuracy"] == pytest.approx(
        np.mean([p["accuracy"] for p in task.predictions])
    )
    with pytest.raises(ValueError, match=r"task 'retrieval': a generative model \(GenerativeModel\)"):
        run_eval(str(tiny_vlm_run), "scenes", task="retrieval", limit=2, out_dir=str(tmp_path / "f"))


def test_every_zero_shot_entry_point_defaults_to_the_one_template():
    """`vlkit.load(...).classify`, the harness and the transformers wrappers share config's default."""
    from vlkit.api import ContrastiveModel
    from vlkit.config import DEFAULT_TEMPLATES
    from vlkit.models.hf_models import HFContrastiveModel

    functions = [
        harness.evaluate_benchmarks,
        ContrastiveModel.label_embeddings,
        ContrastiveModel.classify,
        HFContrastiveModel.label_embeddings,
        HFContrastiveModel.classify,
    ]
    for fn in functions:
        assert inspect.signature(fn).parameters["templates"].default == DEFAULT_TEMPLATES, fn.__qualname__


def test_every_task_is_a_cli_choice_and_has_a_runner():
    """One list of task names (vlkit.eval.tasks): `vlkit eval --task` takes each, the harness runs each."""
    from vlkit.eval.tasks import TASKS

    for task in TASKS:
        assert cli.build_parser().parse_args(["eval", "--task", task]).task == task
        assert any(task in runners for runners in harness.RUNNERS.values()), task
    assert harness.TASKS is TASKS
    assert {task for runners in harness.RUNNERS.values() for task in runners} == set(TASKS)
