"""Conversation data for instruction tuning: LLaVA's JSON and Hugging Face chat-messages JSONL.

    llava.json      [{"id": "17", "image": "images/17.png",
                      "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                                        {"from": "gpt", "value": "A red circle."}, ...]}, ...]
    chat.jsonl      {"id": "17", "images": ["images/17.png"],
                     "messages": [{"role": "user", "content": "<image>\\nWhat is this?"},
                                  {"role": "assistant", "content": "A red circle."}]}

Image paths are relative to the file's folder (or absolute). Samples follow the data contract
with "captions": [] and "messages": [{"role": "user" | "assistant" | "system", "content": str}].
The whole file is validated at construction, naming the record and field at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlkit.data.coco import read_json
from vlkit.data.contract import check_index
from vlkit.data.images import load_image
from vlkit.jsonl import iter_jsonl

IMAGE_PLACEHOLDER = "<image>"
LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
# The fixed prompts generative models are trained on and asked with (training and inference).
CAPTION_PROMPT = "Describe the image in one sentence."
SHORT_ANSWER = "Answer with a single word or number."  # LLaVA-1.5's short-answer VQA suffix, shortened


# At least 16 ways of asking for a detailed description (LLaVA samples one per record).
DETAIL_QUESTIONS = (
    "Describe the image in detail.",
    "Describe the following image in detail.",
    "Give a detailed description of this picture.",
    "What do you see in this image? Please describe it thoroughly.",
    "Explain the contents of the image in detail.",
    "Write a detailed account of everything shown in the image.",
    "Can you describe this picture as completely as possible?",
    "Provide a thorough description of the scene in the image.",
    "Tell me about this image in as much detail as you can.",
    "Describe everything you can see in the picture.",
    "Walk me through the contents of this image in detail.",
    "Give an elaborate description of the given image.",
    "Analyze the image and describe it in a detailed way.",
    "What is shown in this picture? Describe it in full.",
    "Paint a clear picture in words of what this image shows.",
    "Describe the scene in this image, mentioning every object.",
    "Offer a detailed explanation of the image's visual content.",
    "Please describe the picture carefully and in detail.",
)


def vqa_prompt(question: str) -> str:
    return f"{question} {SHORT_ANSWER}"


def check_messages(messages: list[dict], where: str) -> None:
    """Roles alternate user/assistant (after an optional system turn), the placeholder appears
    exactly once, and the conversation ends with a non-empty assistant answer."""
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"{where}: a conversation must end with an assistant turn")
    for k, m in enumerate(turns):
        want = "user" if k % 2 == 0 else "assistant"
        if m["role"] != want:
            raise ValueError(f"{where}: turn {k} is {m['role']!r}, expected {want!r} (roles alternate)")
        if not isinstance(m["content"], str) or (want == "assistant" and not m["content"].strip()):
            raise ValueError(f"{where}: turn {k} ({want}) has empty or non-text content")
    count = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if count != 1:
        raise ValueError(f"{where}: {IMAGE_PLACEHOLDER} appears {count} times; exactly once is supported")


class ConversationFile:
    """LLaVA JSON (`.json`) or chat-messages JSONL (`.jsonl`) → samples with "messages"."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"conversation file not found: {self.path}")
        self._records = read_conversations(self.path)
        if not self._records:
            raise ValueError(f"{self.path}: no conversations in the file")

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        key, image, messages = self._records[
            check_index(i, len(self._records), f"conversations in {self.path}")
        ]
        return {"image": load_image(image), "captions": [], "messages": messages, "key": key}

    def texts(self, i: int) -> list[str]:
        """The conversation's texts without decoding the image (tokenizer training)."""
        return [m["content"].replace(IMAGE_PLACEHOLDER, "") for m in self._records[i][2]]


def read_conversations(path: Path, check: bool = True) -> list[tuple[str, Path, list[dict]]]:
    """(key, image path, messages) per record of a LLaVA JSON (`.json`) or chat JSONL (`.jsonl`)
    file; `check`: each conversation must be one a model can be trained on (`check_messages`)."""
    reader = _read_chat_jsonl if Path(path).suffix == ".jsonl" else _read_llava_json
    return reader(Path(path), check)


def _image_path(folder: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: 'image' must be a path string, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else folder / path


def llava_messages(turns: list[dict], where: str) -> list[dict]:
    """LLaVA's turns ({"from": "human" | "gpt" | "system", "value"}) as chat messages."""
    messages = []
    for t, turn in enumerate(turns):
        role = LLAVA_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None:
            raise ValueError(f"{where}: conversations[{t}].from must be one of {list(LLAVA_ROLES)}")
        messages.append({"role": role, "content": turn.get("value")})
    return messages


def _read_llava_json(path: Path, check: bool) -> list[tuple[str, Path, list[dict]]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records (LLaVA format)")
    records = []
    for n, record in enumerate(data):
        where = (
            f"{path} record {n} (id {record.get('id', '?')!r})"
            if isinstance(record, dict)
            else f"{path}[{n}]"
        )
        if not isinstance(record, dict) or "image" not in record or "conversations" not in record:
            raise ValueError(f"{where}: needs 'image' and 'conversations'")
        messages = llava_messages(record["conversations"], where)
        if check:
            check_messages(messages, where)
        key = str(record.get("id", n))
        records.append((key, _image_path(path.parent, record["image"], where), messages))
    return records


def _read_chat_jsonl(path: Path, check: bool) -> list[tuple[str, Path, list[dict]]]:
    records = []
    for n, record in iter_jsonl(path):
        where = f"{path}:{n}"
        images = record.get("images") or ([record["image"]] if "image" in record else [])
        if len(images) != 1:
            raise ValueError(f"{where}: exactly one image per conversation is supported, got {len(images)}")
        messages = record.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError(f"{where}: 'messages' must be a list of {{'role', 'content'}}")
        messages = [{"role": m["role"], "content": m.get("content")} for m in messages]
        if check:
            check_messages(messages, where)
        records.append((str(record.get("id", n)), _image_path(path.parent, images[0], where), messages))
    return records
