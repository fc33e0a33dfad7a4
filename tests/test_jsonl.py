"""The one JSONL reader (vlkit.jsonl) and the readers built on it: errors name file:line."""

import json

import pytest

from vlkit.data.conversations import ConversationFile
from vlkit.jsonl import iter_jsonl, read_jsonl


def test_line_numbers_count_blank_lines_and_errors_name_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(ValueError, match=f"{path}:4: not valid JSON"):
        list(iter_jsonl(path))
    assert read_jsonl(path, torn_tail=True) == [{"a": 1}, {"a": 2}]  # a crash cut the last line
    path.write_text('{"a": 1}\n\n{"a": \n{"a": 2}\n')
    with pytest.raises(ValueError, match=f"{path}:3: not valid JSON"):  # only the last line may be torn
        read_jsonl(path, torn_tail=True)
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=f"{path}:3: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_a_chat_jsonl_line_that_is_not_an_object_names_its_line(tmp_path):
    turns = [{"role": "user", "content": "<image> hi"}, {"role": "assistant", "content": "hello"}]
    good = {"image": "x.png", "messages": turns}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps([good]) + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: expected a JSON object, got list"):
        ConversationFile(path)


def test_instruct_logs_cut_a_torn_tail_and_name_a_bad_line(tmp_path):
    from vlkit.instruct.runner import RECORDS, Run

    path = tmp_path / RECORDS
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "te')  # a kill cut the last line
    run = Run(tmp_path)
    assert [r["id"] for r in run.records] == ["a", "b"]
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'  # the next append starts its own line
    path.write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n')  # damage before the end is not a torn tail
    with pytest.raises(ValueError, match=f"{path}:2: not valid JSON"):
        Run(tmp_path)


def test_resuming_training_names_a_bad_metrics_line(tmp_path):
    from vlkit.train.loop import _truncate_log

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    _truncate_log(log, after_step=2)  # the crash's torn line and the steps after the checkpoint go
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    log.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=f"{log}:2: not valid JSON"):
        _truncate_log(log, after_step=2)


def test_benchmark_jsonl_errors_name_the_line_in_the_file(tmp_path):
    from vlkit.eval.loaders import load_winoground

    row = {"id": 0, "image_0": "a", "image_1": "b", "caption_0": "x", "caption_1": "y"}
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")  # found by name; never decoded here
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps(row) + "\n\n" + json.dumps({"id": 1}) + "\n")  # blank lines count
    with pytest.raises(ValueError, match=f"{path}:3: missing field"):
        load_winoground(path)


def test_coco_and_conversation_files_are_read_by_one_reader_each(tmp_path):
    from vlkit.data.contexts import coco_contexts, conversation_contexts
    from vlkit.eval.loaders import load_coco_captions

    coco = tmp_path / "captions_val.json"
    coco.write_text('{"images": [{"id": 1, "file_name": "a.png"}],\n "annotations": [}')
    for read in (coco_contexts, load_coco_captions):  # one parser: one error, naming the line
        with pytest.raises(ValueError, match=f"{coco}: not valid JSON .* at line 2"):
            read(coco)
    turns = [{"role": "user", "content": "<image> hi"}, {"role": "assistant", "content": "A cat. "}]
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"id": "q", "image": "x.png", "messages": turns}) + "\n")
    (ctx,) = conversation_contexts(chat)  # chat JSONL, not only LLaVA JSON
    assert ctx.captions == ["A cat."] and ctx.image == str((tmp_path / "x.png").resolve())
    chat.write_text(json.dumps({"id": "q", "image": "x.png", "messages": turns}) + "\n[1]\n")
    with pytest.raises(ValueError, match=f"{chat}:2: expected a JSON object"):
        conversation_contexts(chat)


def test_incontext_reads_llava_json_with_the_conversation_reader(tmp_path):
    from vlkit.instruct import generate_incontext

    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "bot", "value": "A cat."}]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps([{"id": "q", "image": "x.png", "conversations": turns}]))
    with pytest.raises(ValueError, match=r"record 0 \(id 'q'\): conversations\[1\]\.from must be one of"):
        generate_incontext(path, tmp_path / "icl")
