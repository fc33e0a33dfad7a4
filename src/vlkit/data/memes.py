"""The Hateful Memes format (Kiela et al. 2020), read and written: a folder with `img/` and one
JSONL file per split (`train.jsonl`, `dev.jsonl`, `test.jsonl`; the challenge's later files are
`dev_seen.jsonl`, `test_unseen.jsonl`, ...), a line per meme:

    {"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character not their color"}

label 1 is the positive class (hateful; in the scenes task below, "the caption describes the
image"). `read_memes` checks every line (errors name file:line, the field and its value) and that
the image exists; `Memes` is a data set of one split (the data contract: image, captions = [text],
key = id, label); `write_memes` writes one split; `scene_memes` draws a scenes-derived binary task
in this format: does the caption describe the image? Label 1: one of the scene's own captions;
label 0: a hard negative in the same wording (colours swapped, a shape changed: the scenes' own
`negative_captions`) or another scene's caption (`vlkit.data.negatives`), in `shares`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlkit.data.contract import check_index
from vlkit.data.images import load_image
from vlkit.data.negatives import pick_negative
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.jsonl import iter_jsonl

MEMES_SPLITS = ("train", "dev", "test")  # what `write_scene_memes` writes, as the first release did
MEMES_FIELDS = ("id", "img", "label", "text")
# each split's scenes world is its own: seed + this (dev and test never share a scene with train)
SPLIT_SEED_OFFSETS = {"train": 0, "dev": 1_000_003, "test": 2_000_006}


def direct_image(folder: Path) -> Callable[[str, str], str]:
    """The image finder `read_memes` uses by default: `img` relative to the JSONL's folder."""

    def find(name: str, where: str) -> str:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{where}: field 'img': {name!r} not found (no file {path})")
        return str(path)

    return find


def read_memes(path: str | Path, find: Callable[[str, str], str] | None = None) -> list[dict[str, Any]]:
    """Every meme of one JSONL file → [{"id": str, "image": path, "text", "label": 0 | 1}].
    `find(img, where)` → the image's path (default: `img` relative to the file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a Hateful Memes split: one of {MEMES_SPLITS}.jsonl)")
    find = find or direct_image(path.parent)
    memes, seen = [], {}
    for line, row in iter_jsonl(path):
        where = f"{path}:{line}"
        check_meme(row, where)
        key = str(row["id"])
        if key in seen:
            raise ValueError(
                f"{where}: field 'id': {row['id']!r} repeats line {seen[key]}; ids must be unique"
            )
        seen[key] = line
        memes.append(
            {"id": key, "image": find(row["img"], where), "text": row["text"], "label": row["label"]}
        )
    if not memes:
        raise ValueError(f"{path}: no memes in the file")
    return memes


def check_meme(row: dict[str, Any], where: str) -> None:
    """Raises ValueError naming `where` (file:line), the field and its value for a bad line."""
    missing = [k for k in MEMES_FIELDS if k not in row]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {missing}; a meme has {list(MEMES_FIELDS)}, this one {sorted(row)}"
        )
    if isinstance(row["label"], bool) or row["label"] not in (0, 1):
        raise ValueError(f"{where}: label must be 0 or 1, got {row['label']!r} (field 'label')")
    for name, types in (("id", (int, str)), ("img", (str,)), ("text", (str,))):
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, types) or value == "":
            valid = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{where}: field {name!r} must be a non-empty {valid}, got {value!r}")


class Memes:
    """One split of a Hateful Memes folder as a data set: samples {"image": uint8[H, W, 3],
    "captions": [text], "key": id, "label": 0 | 1}. `path`: the folder (its `<split>.jsonl`) or
    one of its JSONL files."""

    def __init__(self, path: str | Path, split: str = "train"):
        path = Path(path)
        self.file = path if path.suffix == ".jsonl" else path / f"{split}.jsonl"
        self.memes = read_memes(self.file)

    def __len__(self) -> int:
        return len(self.memes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        meme = self.memes[check_index(i, len(self.memes), f"memes in {self.file}")]
        image = load_image(meme["image"])
        return {"image": image, "captions": [meme["text"]], "key": meme["id"], "label": meme["label"]}

    def captions(self, i: int) -> list[str]:
        """The text of meme `i` without decoding its image."""
        return [self.memes[check_index(i, len(self.memes), f"memes in {self.file}")]["text"]]


def write_memes(memes: Iterable[dict[str, Any]], folder: str | Path, split: str) -> Path:
    """Writes memes {"id", "image": uint8[H, W, 3], "text", "label"} as `folder/img/<id>.png` and
    `folder/<split>.jsonl` (renamed into place when complete); returns the JSONL file."""
    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    out = folder / f"{split}.jsonl"
    partial = out.with_suffix(".jsonl.tmp")
    with partial.open("w", encoding="utf-8") as f:
        for meme in memes:
            name = f"{meme['id']:05d}" if isinstance(meme["id"], int) else str(meme["id"])
            img = f"img/{name}.png"  # as the challenge names them: id 1235 → img/01235.png
            Image.fromarray(meme["image"]).save(folder / img)
            row = {"id": meme["id"], "img": img, "label": int(meme["label"]), "text": meme["text"]}
            f.write(json.dumps(row) + "\n")
    os.replace(partial, out)
    return out


def scene_memes(
    scenes: Sequence[dict],
    count: int,
    seed: int,
    positive_share: float,
    shares: list[float],
    first_id: int = 0,
) -> Iterator[dict[str, Any]]:
    """`count` memes from scenes 0..count-1 (and scene `count`, whose caption scene count-1 may
    borrow): each with one of its captions (label 1, with probability `positive_share`) or a hard
    negative drawn by `pick_negative` in `shares` (colour swap, shape changed, another scene's
    caption; label 0). Deterministic in (seed, index); ids count up from `first_id`."""
    if not 0.0 < positive_share < 1.0:
        raise ValueError(f"positive_share: {positive_share!r}; give a share in (0, 1) (both labels occur)")
    following = scenes[0]
    for i in range(count):
        sample, following = following, scenes[i + 1]
        rng = np.random.default_rng([seed, i])
        pick = int(rng.integers(len(sample["captions"])))
        other = following["captions"][0]
        other = None if other in sample["captions"] else other
        label = int(rng.random() < positive_share)
        text = sample["captions"][pick] if label else pick_negative(sample, pick, other, shares, rng)
        yield {"id": first_id + i, "image": sample["image"], "text": text, "label": label}


def write_scene_memes(
    folder: str | Path,
    counts: dict[str, int],
    image_size: int = 64,
    seed: int = 0,
    positive_share: float = 0.5,
    shares: Sequence[float] = (0.5, 0.25, 0.25),
) -> dict[str, Path]:
    """The scenes task (`scene_memes`) as a Hateful Memes folder: `counts` memes per split, each
    split from its own scenes world (`SPLIT_SEED_OFFSETS`), ids unique across splits; → split → file."""
    unknown = set(counts) - set(SPLIT_SEED_OFFSETS)
    if unknown:
        raise ValueError(f"splits {sorted(unknown)}: valid splits are {', '.join(SPLIT_SEED_OFFSETS)}")
    files, first_id = {}, 0
    for split, count in counts.items():
        world = seed + SPLIT_SEED_OFFSETS[split]
        scenes = Scenes(ScenesConfig(image_size=image_size, seed=world))
        memes = scene_memes(scenes, count, world, positive_share, list(shares), first_id)
        files[split] = write_memes(memes, folder, split)
        first_id += count
    return files
