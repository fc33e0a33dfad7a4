"""Benchmarks read from the files users download, in their original layouts, from local paths.

Every loader returns a `Benchmark`: a task name and a list of examples (plain dicts). Images
are file paths, loaded when a model needs them, or uint8[H, W, 3] arrays. Example keys per task:

    zero-shot      id, image, label (int index into Benchmark.classes)
    retrieval      id, image, captions (list[str])        caption: the same examples
    winoground     id, images (2), captions (2), tag
    vqa            id, image, question, answers (list[str], 10 in VQA v2), question_type, answer_type
    grounding      id, image, phrase, box (x1, y1, x2, y2 pixels), candidates (list of boxes)
    segmentation   id, image, phrase, mask (bool[H, W])
    hateful-memes  id, image, text, label (0 / 1)
    snli-ve        id, image, hypothesis, label (entailment | neutral | contradiction)
    nlvr2          id, images (left, right), sentence, label (true | false)

Formats (file names as the benchmarks ship them):
- VQAv2: v2_OpenEnded_mscoco_<split>_questions.json + v2_mscoco_<split>_annotations.json, images
  COCO_<split>_<image_id:012d>.jpg anywhere under the folder.
- COCO captions: annotations captions_<split>.json; Karpathy splits: dataset_coco.json,
  dataset_flickr30k.json (images[].filepath/filename/split/sentences[].raw), test split.
- Winoground: examples.jsonl + images/<image_0>.png. Hateful Memes: dev_seen.jsonl, dev.jsonl,
  test_seen.jsonl, test.jsonl or train.jsonl (id, img, label, text) + img/ (`vlkit.data.memes`).
  SNLI-VE: snli_ve_<split>.jsonl (Flickr30K_ID, sentence2, gold_label) + <Flickr30K_ID>.jpg. NLVR2: <split>.json, one JSON per
  line (identifier, sentence, label, left/right image names or derived from identifier).
- RefCOCO-style: refs(<who>).p (the refer toolkit's pickle, read as plain data only) or
  refs*.json, with instances.json (COCO boxes in x, y, w, h).
- ImageNet-style: one folder per class; class names from classnames.txt (one per line, in sorted
  folder order) or class_names.json ({folder: name}), else the folder names.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlkit.data.coco import read_coco, read_json
from vlkit.data.memes import read_memes
from vlkit.jsonl import iter_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
HATEFUL_MEMES_FILES = (
    "dev_seen.jsonl", "dev.jsonl", "dev_unseen.jsonl", "test_seen.jsonl", "test.jsonl", "test_unseen.jsonl",
    "train.jsonl",
)  # fmt: skip


@dataclass
class Benchmark:
    name: str  # e.g. "vqav2", "coco-karpathy", "scenes"
    task: str  # one of vlkit.eval.tasks.TASKS
    examples: list[dict]
    classes: list[str] | None = None  # zero-shot class names
    split: str = "test"
    source: str = ""  # the file or folder it came from
    info: dict[str, Any] = field(default_factory=dict)

    def limited(self, limit: int | None) -> Benchmark:
        if not limit:
            return self
        return Benchmark(
            self.name, self.task, self.examples[:limit], self.classes, self.split, self.source, self.info
        )


class ImageFinder:
    """Finds an image by relative path, or by file name anywhere under `root` (benchmarks ship
    images in differing sub-folders: val2014/, images/, flickr30k-images/, numbered NLVR2 folders)."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, Path] | None = None

    def __call__(self, name: str, where: str) -> str:
        direct = self.root / name
        if direct.is_file():
            return str(direct)
        if self._by_name is None:
            self._by_name = {p.name: p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        found = self._by_name.get(Path(name).name)
        if found is None:
            raise FileNotFoundError(f"{where}: image {name!r} not found under {self.root}")
        return str(found)


def _need(record: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; has {sorted(record)}")


def _one(folder: Path, pattern: str) -> Path | None:
    matches = sorted(p for p in folder.glob(pattern) if p.name not in HF_METADATA)
    return matches[0] if matches else None


# --- VQAv2 -----------------------------------------------------------------------------------


def load_vqav2(questions: Path, annotations: Path, image_root: Path | None = None) -> Benchmark:
    q, a = read_json(questions), read_json(annotations)
    _need(q, ("questions",), str(questions))
    _need(a, ("annotations",), str(annotations))
    subtype = q.get("data_subtype", "val2014")
    by_id = {ann["question_id"]: ann for ann in a["annotations"]}
    find = ImageFinder(image_root or questions.parent)
    examples = []
    for i, item in enumerate(q["questions"]):
        where = f"{questions}: questions[{i}]"
        _need(item, ("question_id", "image_id", "question"), where)
        ann = by_id.get(item["question_id"])
        if ann is None:
            raise ValueError(f"{where}: question_id {item['question_id']} has no entry in {annotations}")
        _need(ann, ("answers",), f"{annotations}: question_id {item['question_id']}")
        image = find(f"{subtype}/COCO_{subtype}_{item['image_id']:012d}.jpg", where)
        examples.append(
            {
                "id": str(item["question_id"]),
                "image": image,
                "question": item["question"],
                "answers": [x["answer"] for x in ann["answers"]],
                "question_type": ann.get("question_type", ""),
                "answer_type": ann.get("answer_type", ""),
            }
        )
    return Benchmark("vqav2", "vqa", examples, split=subtype, source=str(questions))


# --- captions: COCO and Karpathy splits --------------------------------------------------------


def load_coco_captions(annotations: Path, image_root: Path | None = None) -> list[Benchmark]:
    """captions_<split>.json → the same examples for captioning and retrieval."""
    coco = read_coco([annotations], need=("images", "annotations"))
    find = ImageFinder(image_root or annotations.parent)
    examples = [
        {"id": str(i), "image": find(im["file_name"], str(annotations)), "captions": coco.captions[i]}
        for i, im in coco.images.items()
        if i in coco.captions
    ]
    split = annotations.stem.removeprefix("captions_")
    return [
        Benchmark("coco-captions", t, examples, split=split, source=str(annotations))
        for t in ("caption", "retrieval")
    ]


def load_karpathy(path: Path, split: str = "test", image_root: Path | None = None) -> list[Benchmark]:
    """dataset_coco.json / dataset_flickr30k.json (Karpathy splits) → captioning and retrieval
    (the 5k COCO / 1k Flickr30k test images, five captions each)."""
    data = read_json(path)
    _need(data, ("images",), str(path))
    find = ImageFinder(image_root or path.parent)
    examples = []
    for i, im in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        _need(im, ("filename", "split", "sentences"), where)
        if im["split"] != split:
            continue
        name = f"{im['filepath']}/{im['filename']}" if im.get("filepath") else im["filename"]
        key = im.get("cocoid", im.get("imgid", im["filename"]))
        examples.append(
            {"id": str(key), "image": find(name, where), "captions": [s["raw"] for s in im["sentences"]]}
        )
    if not examples:
        raise ValueError(f"{path}: no images with split {split!r}")
    name = "karpathy-" + path.stem.removeprefix("dataset_")
    return [Benchmark(name, t, examples, split=split, source=str(path)) for t in ("caption", "retrieval")]


# --- Winoground, Hateful Memes, SNLI-VE, NLVR2 ------------------------------------------------


def load_winoground(path: Path) -> Benchmark:
    find = ImageFinder(path.parent / "images" if (path.parent / "images").is_dir() else path.parent)
    examples = []
    for line, row in iter_jsonl(path):
        where = f"{path}:{line}"
        _need(row, ("id", "image_0", "image_1", "caption_0", "caption_1"), where)
        images = [find(f"{row[k]}.png", where) for k in ("image_0", "image_1")]
        examples.append(
            {
                "id": str(row["id"]),
                "images": images,
                "captions": [row["caption_0"], row["caption_1"]],
                "tag": row.get("collapsed_tag") or row.get("tag", ""),
            }
        )
    return Benchmark("winoground", "winoground", examples, source=str(path))


def load_hateful_memes(path: Path) -> Benchmark:
    """One Hateful Memes file (`vlkit.data.memes.read_memes`: every line checked), images found
    by relative path or by name anywhere under its folder."""
    examples = read_memes(path, find=ImageFinder(path.parent))
    return Benchmark("hateful-memes", "hateful-memes", examples, split=path.stem, source=str(path))


SNLI_VE_LABELS = ("entailment", "neutral", "contradiction")


def load_snli_ve(path: Path) -> Benchmark:
    find = ImageFinder(path.parent)
    examples = []
    for i, (line, row) in enumerate(iter_jsonl(path)):
        where = f"{path}:{line}"
        _need(row, ("Flickr30K_ID", "sentence2", "gold_label"), where)
        if row["gold_label"] not in SNLI_VE_LABELS:
            raise ValueError(f"{where}: gold_label {row['gold_label']!r}; valid: {SNLI_VE_LABELS}")
        examples.append(
            {
                "id": str(row.get("pairID", i)),
                "image": find(f"{row['Flickr30K_ID']}.jpg", where),
                "hypothesis": row["sentence2"],
                "label": row["gold_label"],
            }
        )
    split = path.stem.removeprefix("snli_ve_")
    return Benchmark("snli-ve", "snli-ve", examples, split=split, source=str(path))


def load_nlvr2(path: Path) -> Benchmark:
    find = ImageFinder(path.parent)
    examples = []
    for line, row in iter_jsonl(path):
        where = f"{path}:{line}"
        _need(row, ("identifier", "sentence", "label"), where)
        # "dev-850-0-1" → dev-850-0-img0.png / dev-850-0-img1.png unless the names are given
        stem = row["identifier"].rsplit("-", 1)[0]
        left = row.get("left_image") or f"{stem}-img0.png"
        right = row.get("right_image") or f"{stem}-img1.png"
        examples.append(
            {
                "id": row["identifier"],
                "images": [find(left, where), find(right, where)],
                "sentence": row["sentence"],
                "label": str(row["label"]).lower(),
            }
        )
    return Benchmark("nlvr2", "nlvr2", examples, split=path.stem, source=str(path))


# --- RefCOCO-style referring expressions ----------------------------------------------------


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: a pickle that names any class or function (which is how a
    crafted file runs code) is refused. Lists, dicts, tuples, strings, numbers, None and bools
    need no global, so the refer toolkit's refs(*).p files load."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it names {module}.{name}; only plain data is read")


def read_plain_pickle(path: Path):
    """The refer toolkit's pickle, read without running any code from it (see `_PlainUnpickler`)."""
    try:
        with path.open("rb") as f:
            return _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path}: refused: not a plain-data pickle ({e}); convert it to JSON (refs.json) to load it"
        ) from None


def load_refcoco(refs_path: Path, instances_path: Path, split: str = "val") -> Benchmark:
    """refs + instances → grounding examples, one per referring sentence. Candidates are every
    annotated box of the image (the ground-truth-proposal setting)."""
    if refs_path.suffix == ".p":
        refs = read_plain_pickle(refs_path)
    else:
        refs = read_json(refs_path)
    coco = read_coco([instances_path], need=("images", "annotations"))
    images = coco.images
    anns = {a["id"]: a for a in coco.instances}
    boxes_of_image: dict[int, list[list[float]]] = {}
    for a in coco.instances:
        boxes_of_image.setdefault(a["image_id"], []).append(_xyxy(a["bbox"]))
    find = ImageFinder(refs_path.parent)
    examples = []
    for r, ref in enumerate(refs):
        where = f"{refs_path}: refs[{r}]"
        _need(ref, ("ann_id", "image_id", "split", "sentences"), where)
        if ref["split"] != split:
            continue
        if ref["ann_id"] not in anns:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} is not in {instances_path}")
        image = find(images[ref["image_id"]]["file_name"], where)
        for s, sent in enumerate(ref["sentences"]):
            examples.append(
                {
                    "id": f"{ref.get('ref_id', r)}/{s}",
                    "image": image,
                    "phrase": sent.get("raw") or sent["sent"],
                    "box": _xyxy(anns[ref["ann_id"]]["bbox"]),
                    "candidates": boxes_of_image[ref["image_id"]],
                }
            )
    if not examples:
        raise ValueError(f"{refs_path}: no referring expressions with split {split!r}")
    return Benchmark(
        refs_path.parent.name or "refcoco", "grounding", examples, split=split, source=str(refs_path)
    )


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


# --- ImageNet-style class folders -----------------------------------------------------------


def load_class_folders(root: Path) -> Benchmark:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if (root / "classnames.txt").is_file():
        names = [n.strip() for n in (root / "classnames.txt").read_text().splitlines() if n.strip()]
        if len(names) != len(dirs):
            raise ValueError(f"{root / 'classnames.txt'}: {len(names)} names for {len(dirs)} class folders")
    elif (root / "class_names.json").is_file():
        mapping = read_json(root / "class_names.json")
        names = [mapping.get(d.name, d.name) for d in dirs]
    else:
        names = [d.name.replace("_", " ") for d in dirs]
    examples = [
        {"id": f"{d.name}/{p.name}", "image": str(p), "label": label}
        for label, d in enumerate(dirs)
        for p in sorted(d.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not examples:
        raise ValueError(f"{root}: no images in class folders")
    return Benchmark(root.name, "zero-shot", examples, classes=names, source=str(root))


# --- dispatch -------------------------------------------------------------------------------


# Written by `datasets`' save_to_disk; they match Karpathy's dataset_<name>.json pattern.
HF_METADATA = ("dataset_info.json", "dataset_dict.json")


def open_files(path: Path, split: str | None = None) -> list[Benchmark]:
    """Every benchmark recognised at `path` (a folder, or one annotation file); [] for a saved
    Hugging Face dataset, which `named_benchmarks` reads as data."""
    if path.is_dir() and any((path / n).is_file() for n in ("state.json", "dataset_dict.json")):
        return []
    folder, file = (path, None) if path.is_dir() else (path.parent, path)
    name = file.name if file else ""

    def pick(pattern: str) -> Path | None:
        return file if file and file.match(pattern) else (None if file else _one(folder, pattern))

    if (q := pick("*questions*.json")) or name.endswith("annotations.json"):
        q = q or _one(folder, "*questions*.json")
        a = _one(folder, "*annotations*.json")
        if q and a:
            return [load_vqav2(q, a)]
    if (k := pick("dataset_*.json")) and k.name not in HF_METADATA:
        return load_karpathy(k, split or "test")
    if c := pick("captions_*.json"):
        return load_coco_captions(c)
    if w := pick("examples.jsonl"):
        return [load_winoground(w)]
    if s := pick("snli_ve_*.jsonl"):
        return [load_snli_ve(s)]
    if r := pick("refs*"):
        inst = folder / "instances.json"
        if not inst.is_file():
            raise FileNotFoundError(f"{r}: needs instances.json beside it")
        return [load_refcoco(r, inst, split or "val")]
    hm = file if file and file.name in HATEFUL_MEMES_FILES else None
    hm = hm or next((folder / n for n in HATEFUL_MEMES_FILES if not file and (folder / n).is_file()), None)
    if hm and (folder / "img").is_dir():
        return [load_hateful_memes(hm)]
    nl = file if file and file.suffix == ".json" else None
    if nl is None and not file:
        nl = next((p for p in sorted(folder.glob("*.json")) if _first_line_has(p, "identifier")), None)
    if nl and _first_line_has(nl, "identifier"):
        return [load_nlvr2(nl)]
    if not file and any(p.is_dir() for p in folder.iterdir()) and not (folder / "captions.jsonl").is_file():
        return [load_class_folders(folder)]
    return []


def _first_line_has(path: Path, key: str) -> bool:
    with path.open() as f:
        line = f.readline()
    try:
        return key in json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return False
