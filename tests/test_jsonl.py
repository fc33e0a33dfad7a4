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
