"""COCO annotation files, read one way everywhere (the `coco` data source, instruction contexts,
caption benchmarks, RefCOCO's instances): `read_coco(files)` merges them by image id.

    captions_<split>.json    {"images": [{"id", "file_name", ...}],
                              "annotations": [{"id", "image_id", "caption"}]}
    instances_<split>.json   {"images": [{"id", "file_name", "width", "height"}],
                              "categories": [{"id", "name"}],
                              "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h]}]}

Errors name the file and the record at fault. A folder's images are looked up next to its
annotation files, then in images/.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlkit.data.contract import check_index
from vlkit.data.images import load_image


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


def read_coco_path(path: Path) -> Coco:
    """A COCO file, or every COCO file in a folder; an error if none has an "images" list."""
    path = Path(path)
    coco = read_coco(sorted(path.glob("*.json")) if path.is_dir() else [path], need=())
    if not coco.images:
        raise ValueError(f"{path}: no COCO 'images' list found (expected instances_*.json / captions_*.json)")
    return coco


def image_file(path: Path, file_name: str, images_dir: Path | None = None) -> Path:
    """Where an image of the COCO file or folder `path` is: in `images_dir` if given, else next to
    the annotations, else in images/ (the first place when it is in neither)."""
    folder = path if path.is_dir() else path.parent
    roots = [images_dir] if images_dir else [folder, folder / "images"]
    return next((r / file_name for r in roots if (r / file_name).is_file()), roots[0] / file_name)


class CocoCaptions:
    """The `coco` data source: a captions_*.json file or a folder of COCO files → one sample per
    image that has captions ("key": "coco-<image id>")."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        coco = read_coco_path(self.path)
        self._items = [
            (image_id, image_file(self.path, im["file_name"]), [c.strip() for c in coco.captions[image_id]])
            for image_id, im in coco.images.items()
            if coco.captions.get(image_id)
        ]
        if not self._items:
            raise ValueError(f"{self.path}: no image has a caption (a COCO captions_*.json file gives them)")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_id, file, captions = self._items[check_index(i, len(self._items), f"images in {self.path}")]
        return {"image": load_image(file), "captions": list(captions), "key": f"coco-{image_id}"}

    def captions(self, i: int) -> list[str]:
        return list(self._items[i][2])
