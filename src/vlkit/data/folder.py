"""A folder of images plus a JSONL file of captions: the simplest way to bring your own data.

    root/
      captions.jsonl      {"image": "cats/001.jpg", "caption": "a cat on a sofa"}
      cats/001.jpg        {"image": "cats/001.jpg", "captions": ["a tabby", "a sleepy cat"]}

Every line names an image (relative to `root`) and a caption or a list of captions; lines
for the same image merge. Optional "label" (int) and "boxes" pass through to the sample.
The whole file is validated at construction; images are decoded lazily in `__getitem__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlkit.data.contract import check_index
from vlkit.data.images import load_image
from vlkit.jsonl import iter_jsonl

PASSTHROUGH_FIELDS = ("label", "boxes")


class ImageFolderCaptions:
    """Samples `{"image": uint8[H, W, 3], "captions": list[str], "key": path, "label"?, "boxes"?}`."""

    def __init__(self, root: str | Path, captions_file: str | Path = "captions.jsonl"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.captions_file = self.root / captions_file  # an absolute captions_file wins
        if not self.captions_file.is_file():
            raise FileNotFoundError(f"captions file not found: {self.captions_file}")
        self._records = read_records(self.captions_file, self.root)
        if not self._records:
            raise ValueError(f"{self.captions_file}: no captioned images in the file")

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self._records[self._check_index(i)]
        sample: dict[str, Any] = {
            "image": load_image(record["path"]),
            "captions": list(record["captions"]),
            "key": str(record["path"]),
        }
        sample.update({f: record[f] for f in PASSTHROUGH_FIELDS if f in record})
        return sample

    def captions(self, i: int) -> list[str]:
        """The captions of sample `i` without decoding its image."""
        return list(self._records[self._check_index(i)]["captions"])

    def _check_index(self, i: int) -> int:
        return check_index(i, len(self._records), f"images in {self.root}")


def read_records(captions_file: Path, root: Path) -> list[dict[str, Any]]:
    """Parses and validates every line; one record per distinct image, in first-seen order."""
    by_image: dict[str, dict[str, Any]] = {}
    for line_no, obj in iter_jsonl(captions_file):
        where = f"{captions_file}:{line_no}"
        entry = _parse_line(obj, where)
        rel = entry["image"]
        record = by_image.get(rel)
        if record is None:
            path = root / rel
            if not path.is_file():
                raise FileNotFoundError(f"{where}: image {rel!r} not found (looked for {path})")
            record = by_image[rel] = {"path": path, "captions": [], "line": line_no}
        record["captions"].extend(entry["captions"])
        for field in PASSTHROUGH_FIELDS:
            if field not in entry:
                continue
            if field in record and record[field] != entry[field]:
                raise ValueError(
                    f"{where}: field {field!r} = {entry[field]!r} contradicts {record[field]!r} "
                    f"given for {rel!r} on line {record['line']}"
                )
            record[field] = entry[field]
    return list(by_image.values())


def _parse_line(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """One JSONL object → {"image": str, "captions": list[str], "label"?: int, "boxes"?: ...}."""
    if "image" not in entry:
        raise ValueError(f"{where}: missing field 'image' (the image path relative to the folder)")
    image = entry["image"]
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}: field 'image' must be a non-empty relative path, got {image!r}")
    captions = caption_list(entry, where)
    if captions is None:
        raise ValueError(f"{where}: missing field 'caption' (a string) or 'captions' (a list of strings)")
    parsed: dict[str, Any] = {"image": image, "captions": captions}
    if "label" in entry:
        label = entry["label"]
        if type(label) is not int:  # bool is an int subclass but never a class id
            raise ValueError(f"{where}: field 'label' must be an integer, got {label!r}")
        parsed["label"] = int(label)
    if "boxes" in entry:
        parsed["boxes"] = entry["boxes"]
    return parsed


def caption_list(entry: dict[str, Any], where: str) -> list[str] | None:
    """Captions from a record's "caption" (str) and/or "captions" (list[str]); None if neither.

    Shared by the JSONL folder and the JSON members of tar shards, which use the same fields.
    """
    if "caption" not in entry and "captions" not in entry:
        return None
    captions: list[str] = []
    if "caption" in entry:
        if not isinstance(entry["caption"], str):
            raise ValueError(f"{where}: field 'caption' must be a string, got {entry['caption']!r}")
        captions.append(entry["caption"])
    if "captions" in entry:
        many = entry["captions"]
        if not isinstance(many, list) or not many or not all(isinstance(c, str) for c in many):
            raise ValueError(f"{where}: field 'captions' must be a non-empty list of strings, got {many!r}")
        captions.extend(many)
    return captions
