"""MiniGPT-4 describe-then-clean with a fake describer (the VLM protocol) and a scripted teacher."""

import json

import numpy as np
import pytest

from vlkit.data.contexts import scene_contexts
from vlkit.instruct import generate_incontext, generate_llava, generate_minigpt4
from vlkit.instruct.incontext import neighbours
from vlkit.instruct.minigpt4 import describe, filter_reasons
from vlkit.instruct.prompts import CONTINUE, DESCRIBE
from vlkit.instruct.teachers import Teacher


class FakeDescriber:
    """`chat(messages, max_new_tokens) -> str` as the generative VLM has it; no tokenizer: words count."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def chat(self, messages, max_new_tokens=128):
        self.calls.append(messages)
        image = messages[0]["content"][0]["image"]
        return self.replies(image, len(self.calls))


class Cleaner(Teacher):
    """Returns the paragraph it was given, with its scripted edits."""

    name = "scripted-cleaner"

    def __init__(self, edit):
        self.edit, self.calls = edit, 0

    def complete(self, messages, settings):
        self.calls += 1
        return self.edit(messages[0]["content"].split("Paragraph: ", 1)[1])


def test_describe_continues_until_80_tokens():
    words = " ".join(["shape"] * 30) + "."
    describer = FakeDescriber(lambda image, n: words)
    text = describe(describer, "x.png")
    assert len(describer.calls) == 3 and text == " ".join([words] * 3)  # 31, 62, 93 words
    first, last = describer.calls[0], describer.calls[-1]
    assert first[0]["content"][1]["text"] == DESCRIBE
    assert [m["content"] for m in last[1:]] == [words, CONTINUE, words, CONTINUE]


def test_filters_give_reasons():
    assert filter_reasons("A red circle sits on the left of the image next to a blue square.") == []
    assert filter_reasons("Too short.")[0].startswith("too short")
    assert "non-English text remains" in filter_reasons(
        "A red circle sits on the left. これは赤い円です。とても大きい円です。"
    )
    assert "repeated sentences remain" in filter_reasons(
        "A red circle is here today. A red circle is here today."
    )
    assert "ends in an incomplete sentence" in filter_reasons(
        "A red circle sits on the left of the image and a"
    )


def test_minigpt4_two_stages_with_cache_and_rejections(tmp_path):
    contexts = list(scene_contexts(5))
    good = " ".join(["The image shows shapes on a dark background."] * 1)

    def replies(image, n):
        index = int(image.rsplit("/", 1)[1][:6])
        return "" if index == 1 else f"{good} @@@@@@ " + " ".join(["More detail follows here."] * 20)

    def clean(text):
        if "00000" in text:
            return text
        return text.replace("@@@@@@ ", "").split(" More")[0] + " It is calm."

    describer, cleaner = FakeDescriber(replies), Cleaner(clean)
    stats = generate_minigpt4(contexts, tmp_path, describer, cleaner, progress=False, min_words=5)
    data = json.loads((tmp_path / "llava.json").read_text())
    assert stats["records"] == 4 and stats["rejected"] == 1
    assert stats["rejection_reasons"] == {"stage 1": 1}
    assert data[0]["conversations"][1]["value"] == "The image shows shapes on a dark background. It is calm."
    assert (tmp_path / data[0]["image"]).is_file()
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert "@@@@@@" in records[0]["raw"]  # stage-1 text kept next to the cleaned one
    calls = len(describer.calls), cleaner.calls
    generate_minigpt4(
        contexts, tmp_path / "again", describer, cleaner, cache=tmp_path / "cache.sqlite", progress=False
    )
    assert (len(describer.calls), cleaner.calls) == (
        calls[0] + 1,
        calls[1],
    )  # only the empty one is asked again
    with pytest.raises(ValueError, match="LLM teacher"):
        generate_minigpt4(contexts, tmp_path / "x", describer, "template:", progress=False)


def test_neighbours_skip_the_same_image():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    idx, sims = neighbours(emb, ["a", "b", "c", "a"], k=2)
    assert idx[0].tolist() == [1, 2] and idx[1].tolist() == [0, 3] and 3 not in idx[0]
    assert sims[0, 0] == pytest.approx(0.9 / np.linalg.norm([0.9, 0.1]), rel=1e-5)
    with pytest.raises(ValueError, match="k=4"):
        neighbours(emb, ["a", "b", "c", "a"], k=4)


@pytest.mark.slow  # loads MiniLM (~4 s)
def test_incontext_sets_from_a_template_set(tmp_path):
    generate_llava("scenes", tmp_path / "set", count=8, kinds=["reasoning", "detail"], progress=False)
    stats = generate_incontext(tmp_path / "set" / "llava.json", tmp_path / "icl", k=3)
    sets = json.loads((tmp_path / "icl" / "incontext.json").read_text())
    assert stats["sets"] == len(sets) == 16
    chats = [json.loads(line) for line in (tmp_path / "icl" / "chat.jsonl").read_text().splitlines()]
    for s, chat in zip(sets, chats):
        assert len(s["examples"]) == 3 and s["query"] not in s["examples"]
        assert len(chat["images"]) == 4 and all(img.endswith(".png") for img in chat["images"])
        assert sum(m["content"].count("<image>") for m in chat["messages"]) == 4
        assert s["similarity"] == sorted(s["similarity"], reverse=True)
    # a detailed description's nearest example is another detailed description
    assert all(s["examples"][0].endswith("detail") for s in sets if s["query"].endswith("detail"))


@pytest.mark.slow  # trains the session's tiny contrastive run
def test_incontext_by_image_embeddings_from_a_vlkit_model(tmp_path, tiny_run):
    generate_llava("scenes", tmp_path / "set", count=6, kinds=["detail"], progress=False)
    stats = generate_incontext(
        tmp_path / "set" / "llava.json", tmp_path / "icl", k=2, by="image", model=str(tiny_run)
    )
    sets = json.loads((tmp_path / "icl" / "incontext.json").read_text())
    assert stats["by"] == "image" and len(sets) == 6
    assert all(len(s["examples"]) == 2 and s["query"] not in s["examples"] for s in sets)
    with pytest.raises(ValueError, match="--model"):
        generate_incontext(tmp_path / "set" / "llava.json", tmp_path / "x", by="image")


def test_cli_multiinstruct_and_help(tmp_path, capsys):
    from vlkit.cli import main

    main(
        [
            "-q",
            "instruct",
            "multiinstruct",
            "--source",
            "scenes",
            "--count",
            "3",
            "--tasks",
            "vqa,captioning",
            "--out",
            str(tmp_path),
        ]
    )
    data = json.loads((tmp_path / "llava.json").read_text())
    assert len(data) == 6 and {r["id"].rsplit("-", 1)[1] for r in data} == {"vqa", "captioning"}
    with pytest.raises(SystemExit):
        main(["instruct", "--help"])
    out = capsys.readouterr().out
    assert all(
        word in out for word in ("llava", "minigpt4", "multiinstruct", "incontext", "template:", "openai:")
    )


def test_a_trained_vlkit_vlm_is_a_describer(tiny_vlm_run, tmp_path):
    import vlkit

    describer = vlkit.load(tiny_vlm_run)  # the real chat protocol; its text is untrained noise
    contexts = list(scene_contexts(2))
    text = describe(describer, contexts[0].array, max_new_tokens=8, max_rounds=2)
    assert isinstance(text, str)
    stats = generate_minigpt4(
        contexts, tmp_path, describer, Cleaner(lambda t: t), progress=False, min_words=1
    )
    assert stats["records"] + stats["rejected"] == 2
