"""Symbolic context: what a text-only teacher knows about an image (LLaVA's input).

A `Context` holds several captions and objects with normalised boxes `(x1, y1, x2, y2)` in
[0, 1]; for scenes it also holds the exact attributes (shape, colour, size), which the template
teacher writes from and the consistency check compares against. Sources are data names
(`vlkit.data.names`), with loaders for the kinds that carry more than captions:

    scenes                         the procedural world (exact truth; images rendered to PNG)
    COCO annotation file/folder    instances_*.json (+ captions_*.json), images next to them
    conversation file              LLaVA JSON / chat JSONL: assistant turns become captions
    folder with captions.jsonl     the foundation's image-folder format, optional "boxes"
    any other kind                 its captions (photos, fashion-mnist, saved HF datasets, shards)

`open_source(spec, count, seed)` resolves the name and picks the loader.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vlkit.data.coco import image_file, read_coco_path
from vlkit.data.conversations import IMAGE_PLACEHOLDER, read_conversations
from vlkit.data.folder import read_records
from vlkit.data.names import resolve_name


@dataclass
class ContextObject:
    """One object: a category name, a box in [0, 1]; attributes are known for scenes only."""

    category: str
    box: tuple[float, float, float, float]
    color: str = ""
    shape: str = ""
    size: str = ""


@dataclass
class Context:
    """image: a path (absolute, or relative to the output folder for rendered scenes)."""

    id: str
    image: str
    captions: list[str]
    objects: list[ContextObject] = field(default_factory=list)
    exact: bool = False  # attributes and counts are the ground truth (scenes)
    array: np.ndarray | None = None  # uint8[H, W, 3] when the image is in memory (scenes)

    def symbolic(self) -> str:
        """The LLaVA-style text description: captions, then one line per object with its box."""
        lines = list(self.captions)
        if self.objects:
            lines.append("")
            lines += [f"{o.category}: [{', '.join(f'{v:.3f}' for v in o.box)}]" for o in self.objects]
        return "\n".join(lines)


def scene_contexts(
    count: int, seed: int = 0, image_size: int = 64, max_objects: int = 3
) -> Iterator[Context]:
    """Scenes 0..count-1 of world `seed`; image paths are `images/<index>.png` (written by `save_images`)."""
    from vlkit.data.scenes import Scenes, ScenesConfig

    scenes = Scenes(ScenesConfig(image_size=image_size, max_objects=max_objects, seed=seed))
    for i in range(count):
        yield scene_context(scenes.scene(i), f"scenes-{seed}-{i:06d}", f"images/{i:06d}.png")


def scene_context(scene, id: str, image: str) -> Context:
    """One rendered scene (`vlkit.data.scenes.Scene`) as an exact symbolic context."""
    objects = [
        ContextObject(
            f"{o.size} {o.color} {o.shape}", tuple(round(v, 3) for v in o.box), o.color, o.shape, o.size
        )
        for o in scene.objects
    ]
    return Context(id, image, scene.captions, objects, True, scene.image)


def save_image(ctx: Context, out_dir: Path) -> None:
    """Writes an in-memory image as PNG under out_dir (once), so the data set is self-contained.
    The PNG appears whole or not at all: it is written to a `.tmp` file, then renamed."""
    if ctx.array is None:
        return
    path = out_dir / ctx.image
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two kinds of one image may be saved by two threads at once: each writes its own file.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            Image.fromarray(ctx.array).save(tmp, format="PNG")
            tmp.replace(path)
        except BaseException:  # a full disk, Ctrl-C: leave no partial file behind
            tmp.unlink(missing_ok=True)
            raise


def remove_partial_images(out_dir: Path) -> int:
    """Deletes the `.tmp` files that a killed run's `save_image` left under out_dir/images (a
    kill skips every cleanup); returns how many. Call it before writing into out_dir again."""
    partial = list((Path(out_dir) / "images").rglob("*.tmp"))
    for tmp in partial:
        tmp.unlink(missing_ok=True)
    return len(partial)


def coco_contexts(path: Path, images_dir: Path | None = None) -> list[Context]:
    """A COCO instances file (and its captions file) or a folder holding them.

    Boxes `[x, y, w, h]` in pixels become `(x1, y1, x2, y2)` in [0, 1] by the image's size.
    Image files are looked up in `images_dir` (default: the annotation folder, then `images/`).
    """
    coco = read_coco_path(path)
    boxes: dict[int, list[ContextObject]] = {}
    for ann in coco.instances:
        W, H = coco.size(ann["image_id"], f"{ann['file']}: annotation {ann.get('id')}")
        x, y, w, h = ann["bbox"]
        box = (x / W, y / H, (x + w) / W, (y + h) / H)
        name = coco.categories.get(ann.get("category_id"), "object")
        boxes.setdefault(ann["image_id"], []).append(ContextObject(name, tuple(round(v, 3) for v in box)))
    return [
        Context(
            f"coco-{image_id}",
            str(image_file(path, im["file_name"], images_dir).resolve()),
            [c.strip() for c in coco.captions.get(image_id, [])],
            boxes.get(image_id, []),
        )
        for image_id, im in coco.images.items()
    ]


def conversation_contexts(path: Path) -> list[Context]:
    """A LLaVA JSON or chat JSONL file: every assistant turn is a caption; images relative to
    the file's folder."""
    out = []
    for key, image, messages in read_conversations(path, check=False):
        answers = [
            (m["content"] or "").replace(IMAGE_PLACEHOLDER, "").strip()
            for m in messages
            if m["role"] == "assistant"
        ]
        out.append(Context(key, str(image.resolve()), [a for a in answers if a]))
    return out


def folder_contexts(root: Path) -> list[Context]:
    """The foundation's folder + captions.jsonl; "boxes" may be [[x1, y1, x2, y2], ...] or
    [{"label": str, "box": [x1, y1, x2, y2]}, ...] in [0, 1]."""
    out = []
    for n, rec in enumerate(read_records(root / "captions.jsonl", root)):
        objects = []
        for b in rec.get("boxes") or []:
            label, box = (
                (b.get("label") or b.get("category") or "object", b.get("box") or b.get("bbox"))
                if isinstance(b, dict)
                else ("object", b)
            )
            if not (isinstance(box, list | tuple) and len(box) == 4 and all(0 <= float(v) <= 1 for v in box)):
                raise ValueError(
                    f"{root / 'captions.jsonl'}:{rec['line']}: box {box!r} must be [x1, y1, x2, y2] in [0, 1]"
                )
            objects.append(ContextObject(str(label), tuple(float(v) for v in box)))
        out.append(Context(f"folder-{n:06d}", str(Path(rec["path"]).resolve()), rec["captions"], objects))
    return out


def dataset_contexts(name: str, kind: str, count: int | None = None) -> Iterator[Context]:
    """Any other data source (photos, fashion-mnist, a saved HF dataset, shards) by name: its
    captions, no objects; images in memory, saved as `images/<kind>/<index>.png`."""
    from vlkit.data import open_named

    dataset = open_named(name)
    for i in range(min(count or len(dataset), len(dataset))):
        sample = dataset[i]
        yield Context(
            f"{kind}-{i:06d}", f"images/{kind}/{i:06d}.png", sample["captions"], array=sample["image"]
        )


def open_source(spec: str, count: int | None = None, seed: int = 0) -> list[Context] | Iterator[Context]:
    """Instruction contexts from any data name (`vlkit.data.names`): scenes (needs count, exact
    attributes), COCO (captions and boxes), a conversation file (assistant turns as captions), a
    folder with captions.jsonl (optional boxes), or any other source kind (captions only)."""
    kind, path = resolve_name(spec, what="source")
    if kind == "scenes":
        if not count:
            raise ValueError("source 'scenes' is endless: pass a count (--count N)")
        return scene_contexts(count, seed)
    readers = {"coco": coco_contexts, "conversations": conversation_contexts, "folder": folder_contexts}
    if kind not in readers:
        return dataset_contexts(spec, kind, count)
    contexts = readers[kind](Path(path))
    return contexts[:count] if count else contexts
