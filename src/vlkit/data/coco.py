"""COCO annotation files, read one way everywhere (instruction contexts, caption benchmarks,
RefCOCO's instances): `read_coco(files)` merges them by image id.

    captions_<split>.json    {"images": [{"id", "file_name", ...}],
                              "annotations": [{"id", "image_id", "caption"}]}
    instances_<split>.json   {"images": [{"id", "file_name", "width", "height"}],
                              "categories": [{"id", "name"}],
                              "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h]}]}

Errors name the file and the record at fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Coco:
    """What a set of COCO files holds, merged by image id (a captions file omits image sizes)."""

    images: dict[int, dict] = field(default_factory=dict)  # id → {"file_name", "width", "height", ...}
    categories: dict[int, str] = field(default_factory=dict)  # category id → name
    captions: dict[int, list[str]] = field(default_factory=dict)  # image id → captions, as written
    instances: list[dict] = field(default_factory=list)  # annotations with a "bbox" (pixels, x y w h)

    def size(self, image_id: int, where: str) -> tuple[int, int]:
        """(width, height) of an image; an error naming `where` if the files do not give them."""
        im = self.images.get(image_id)
        if im is None or not im.get("width") or not im.get("height"):
            raise ValueError(f"{where}: image {image_id} has no width/height in 'images'")
        return im["width"], im["height"]


def read_json(path: Path) -> Any:
    """A JSON file; a parse error names the file and the line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def read_coco(files: Iterable[Path], need: tuple[str, ...] = ("images",)) -> Coco:
    """Merges COCO files. A file missing a key of `need` is an error, except that a JSON file
    without "images" is skipped when reading a whole folder (`need=()`)."""
    coco = Coco()
    for file in files:
        data = read_json(file)
        missing = [k for k in need if not isinstance(data, dict) or k not in data]
        if missing:
            have = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{file}: missing field(s) {missing}; has {have}")
        if not isinstance(data, dict) or "images" not in data:
            continue
        for im in data["images"]:
            coco.images.setdefault(im["id"], {}).update(im)
        coco.categories.update({c["id"]: c["name"] for c in data.get("categories", [])})
        for ann in data.get("annotations", []):
            if "caption" in ann:
                coco.captions.setdefault(ann["image_id"], []).append(ann["caption"])
            elif "bbox" in ann:
                coco.instances.append(ann | {"file": str(file)})
    return coco
