"""WebDataset tar shards, read with random access and written in the same convention.

A shard is a plain tar file whose members are grouped into samples by key: the member path
up to the first dot of its basename (`0001.jpg`, `0001.json`, `0001.txt` → key `0001`).
A sample needs an image (.jpg .jpeg .png .webp) and a caption: `.json` with "caption" (str)
or "captions" (list[str]), else `.txt`. A `.json` "label"/"boxes" or a `.cls` member pass
through.

Training needs `dataset[i]`, not a stream: a shard's tar headers are scanned for each member's
byte offset, and `__getitem__` then reads exactly the bytes it needs. That is lazy, so a data set
of thousands of shards opens only the shards it reads: construction needs each shard's sample
count, which the shard's index file (`<shard>.idx`, written by `write_shards` and
`write_shard_index`) holds on its first line; a shard without one (or with a stale one: its tar
changed size) is scanned once to count. The offsets of at most `cached_shards` shards are kept.
"""

from __future__ import annotations

import bisect
import glob
import io
import itertools
import json
import tarfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import braceexpand
import numpy as np
from PIL import Image

from vlkit.data.contract import check_index
from vlkit.data.folder import caption_list
from vlkit.data.images import load_image

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # preference order when a key has several
WRITE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int  # byte offset of the member's data inside the shard
    size: int


@dataclass(frozen=True, slots=True)
class _Sample:
    shard: int  # index into WebDatasetShards.shards
    key: str
    image_ext: str
    image: _Member
    json: _Member | None
    txt: _Member | None
    cls: _Member | None


class WebDatasetShards:
    """Samples `{"image": uint8[H, W, 3], "captions": list[str], "key": "<shard>#<key>", "label"?}`.

    `pattern_or_paths`: a brace pattern ("data/shard-{000000..000003}.tar"), a glob
    ("data/*.tar"), or a list of either. Shards must be uncompressed tars (random access).
    Sample `i` is the shards' samples in order (shard by shard, each in its tar's order).
    """

    def __init__(self, pattern_or_paths: str | Path | Sequence[str | Path], cached_shards: int = 16):
        self.shards = expand_shards(pattern_or_paths)
        self.cached_shards = max(1, cached_shards)
        self._indexed: OrderedDict[int, list[_Sample]] = OrderedDict()  # shard → its samples, LRU
        self._starts = [0]  # sample number of each shard's first sample, then the total
        for shard_index, shard in enumerate(self.shards):
            count = _indexed_count(shard)
            if count is None:  # no index file: scan it now, and keep the scan while it is recent
                count = len(self._remember(shard_index, _index_shard(shard, shard_index)))
            self._starts.append(self._starts[-1] + count)
        if not self._starts[-1]:
            raise ValueError(f"no samples in shards {pattern_or_paths!r}")

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        entry = self._entry(self._check_index(i))
        name = self._name(entry)
        sample = self._metadata(entry)
        sample["image"] = load_image(self._read(entry, entry.image), name=name)
        sample["key"] = name
        return sample

    def captions(self, i: int) -> list[str]:
        """The captions of sample `i` without decoding its image."""
        return self._metadata(self._entry(self._check_index(i)))["captions"]

    def _entry(self, i: int) -> _Sample:
        shard = bisect.bisect_right(self._starts, i) - 1
        samples = self._indexed.get(shard)
        if samples is None:
            samples = self._remember(shard, _read_index(self.shards[shard], shard))
        self._indexed.move_to_end(shard)
        return samples[i - self._starts[shard]]

    def _remember(self, shard: int, samples: list[_Sample]) -> list[_Sample]:
        self._indexed[shard] = samples
        while len(self._indexed) > self.cached_shards:
            self._indexed.popitem(last=False)
        return samples

    def _metadata(self, entry: _Sample) -> dict[str, Any]:
        """{"captions", "label"?, "boxes"?} from the sample's .json / .txt / .cls members."""
        where = self._name(entry)
        meta: dict[str, Any] = {}
        captions = None
        if entry.json is not None:
            try:
                record = json.loads(self._read(entry, entry.json))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{where}.json: invalid JSON ({e})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}.json: expected a JSON object, got {type(record).__name__}")
            captions = caption_list(record, f"{where}.json")
            meta.update({f: record[f] for f in ("label", "boxes") if f in record})
        if captions is None and entry.txt is not None:
            captions = [self._read(entry, entry.txt).decode("utf-8").strip()]
        if captions is None:
            raise ValueError(f"{where}: no caption; the .json member has neither 'caption' nor 'captions'")
        if entry.cls is not None and "label" not in meta:
            text = self._read(entry, entry.cls).decode("ascii", errors="replace").strip()
            try:
                meta["label"] = int(text)
            except ValueError:
                raise ValueError(f"{where}.cls: expected an integer class id, got {text!r}") from None
        meta["captions"] = captions
        return meta

    def _read(self, entry: _Sample, member: _Member) -> bytes:
        # Reopening per read keeps the dataset picklable and fork-safe for DataLoader workers;
        # the OS page cache makes it cheap.
        with open(self.shards[entry.shard], "rb") as f:
            f.seek(member.offset)
            return f.read(member.size)

    def _name(self, entry: _Sample) -> str:
        return f"{self.shards[entry.shard]}#{entry.key}"

    def _check_index(self, i: int) -> int:
        return check_index(i, len(self), f"samples in {len(self.shards)} shards")


def expand_shards(pattern_or_paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Brace patterns and globs → existing shard paths, in the order given (globs sorted)."""
    patterns = [pattern_or_paths] if isinstance(pattern_or_paths, str | Path) else list(pattern_or_paths)
    if not patterns:
        raise ValueError("no shard paths given")
    shards: list[Path] = []
    for pattern in patterns:
        for expanded in braceexpand.braceexpand(str(pattern)):
            if glob.has_magic(expanded):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise FileNotFoundError(f"no shard matches {expanded!r} (from {str(pattern)!r})")
                shards.extend(Path(m) for m in matches)
            elif Path(expanded).is_file():
                shards.append(Path(expanded))
            else:
                raise FileNotFoundError(f"shard not found: {expanded} (from {str(pattern)!r})")
    return shards


def index_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".idx")


def write_shard_index(shard: str | Path) -> Path:
    """Writes `<shard>.idx`: a first line {"samples": n, "tar_bytes": size} (all construction
    reads), then one JSON line per sample: its key and members' (offset, size)."""
    shard = Path(shard)
    samples = _index_shard(shard, 0)
    lines = [json.dumps({"samples": len(samples), "tar_bytes": shard.stat().st_size})]
    for s in samples:
        members = [s.image, s.json, s.txt, s.cls]
        lines.append(json.dumps([s.key, s.image_ext, *[[m.offset, m.size] if m else None for m in members]]))
    path = index_path(shard)
    path.write_text("\n".join(lines) + "\n")
    return path


def _indexed_count(shard: Path) -> int | None:
    """The sample count on the first line of the shard's index file; None without a current one."""
    path = index_path(shard)
    if not path.is_file():
        return None
    with open(path) as f:
        try:
            head = json.loads(f.readline())
        except json.JSONDecodeError:
            raise ValueError(
                f"{path}: not a shard index (first line is not JSON); delete it to rescan"
            ) from None
    return head["samples"] if head.get("tar_bytes") == shard.stat().st_size else None


def _read_index(shard: Path, shard_index: int) -> list[_Sample]:
    """The shard's samples from its index file when current, else from a scan of its headers."""
    if _indexed_count(shard) is None:
        return _index_shard(shard, shard_index)
    samples = []
    with open(index_path(shard)) as f:
        next(f)
        for line in f:
            key, ext, *members = json.loads(line)
            image, meta, txt, cls = (_Member(*m) if m else None for m in members)
            samples.append(_Sample(shard_index, key, ext, image, meta, txt, cls))
    return samples


def _split_key(member_name: str) -> tuple[str, str] | None:
    """'dir/0001.seg.jpg' → ('dir/0001', 'seg.jpg'), the webdataset convention; None without a dot."""
    directory, _, basename = member_name.rpartition("/")
    stem, dot, extension = basename.partition(".")
    if not dot or not stem:
        return None
    return (f"{directory}/{stem}" if directory else stem), extension.lower()


def _index_shard(shard: Path, shard_index: int) -> list[_Sample]:
    """Scans the tar headers of one shard (not its data) and groups members by key."""
    members: dict[str, dict[str, _Member]] = {}
    try:
        with tarfile.open(shard, "r:") as tar:  # "r:" refuses compressed tars: no random access
            for info in tar:
                split = _split_key(info.name) if info.isfile() else None
                if split is None:
                    continue
                by_ext = members.setdefault(split[0], {})
                if split[1] in by_ext:
                    raise ValueError(f"{shard}: duplicate member {info.name!r}")
                by_ext[split[1]] = _Member(info.offset_data, info.size)
    except tarfile.TarError as e:
        raise ValueError(f"{shard}: not a readable uncompressed tar file ({e})") from e
    samples = []
    for key, by_ext in members.items():
        image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in by_ext), None)
        if image_ext is None:
            raise ValueError(
                f"{shard}#{key}: no image member (found .{', .'.join(sorted(by_ext))}); "
                f"expected one of .{', .'.join(IMAGE_EXTENSIONS)}"
            )
        if "json" not in by_ext and "txt" not in by_ext:
            raise ValueError(f"{shard}#{key}: no caption member (.json or .txt)")
        samples.append(
            _Sample(
                shard_index,
                key,
                image_ext,
                by_ext[image_ext],
                by_ext.get("json"),
                by_ext.get("txt"),
                by_ext.get("cls"),
            )
        )
    return samples


def write_shards(
    samples: Iterable[dict[str, Any]],
    out_pattern_or_dir: str | Path,
    max_per_shard: int = 1000,
    image_format: str = "png",
) -> list[Path]:
    """Writes samples (the dataset contract) as webdataset tar shards; returns the shard paths.

    `out_pattern_or_dir`: a pattern with a printf field for the shard number
    ("out/shard-%06d.tar", webdataset's ShardWriter convention) or a directory, which gets
    shard-000000.tar, shard-000001.tar, ... (each with its `.idx`, `write_shard_index`). Each sample becomes `<n>.<image_format>`,
    `<n>.json` ({"captions": [...], "label"?: int, "boxes"?: ...}) and `<n>.txt` (the first
    caption), with `n` its running index, zero-padded.
    """
    if image_format not in WRITE_FORMATS:
        raise ValueError(
            f"image_format {image_format!r} not supported; use one of {', '.join(WRITE_FORMATS)}"
        )
    if max_per_shard < 1:
        raise ValueError(f"max_per_shard must be >= 1, got {max_per_shard}")
    pattern = str(out_pattern_or_dir)
    if "%" not in pattern:
        pattern = str(Path(pattern) / "shard-%06d.tar")
    paths: list[Path] = []
    numbered = enumerate(samples)
    for first in numbered:  # each turn opens a shard and streams up to max_per_shard samples in
        paths.append(Path(pattern % len(paths)))
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(paths[-1], "w", format=tarfile.USTAR_FORMAT) as tar:
            for n, sample in itertools.chain([first], itertools.islice(numbered, max_per_shard - 1)):
                for extension, data in _encode_sample(sample, n, image_format).items():
                    _add_member(tar, f"{n:09d}.{extension}", data)
        write_shard_index(paths[-1])
    if not paths:
        raise ValueError("write_shards: no samples to write")
    return paths


def _encode_sample(sample: dict[str, Any], n: int, image_format: str) -> dict[str, bytes]:
    where = f"sample {n} (key {sample.get('key', '?')!r})"
    image = sample.get("image")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = (
            f"{image.dtype}{list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        )
        raise ValueError(f"{where}: 'image' must be uint8[H, W, 3], got {described}")
    captions = sample.get("captions")
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{where}: 'captions' must be a non-empty list of strings, got {captions!r}")
    record: dict[str, Any] = {"captions": captions}
    if sample.get("label") is not None:
        record["label"] = int(sample["label"])
    if sample.get("boxes") is not None:
        boxes = sample["boxes"]
        record["boxes"] = boxes.tolist() if isinstance(boxes, np.ndarray) else boxes
    buffer = io.BytesIO()
    options = {"quality": 95} if image_format != "png" else {}
    Image.fromarray(image).save(buffer, format=WRITE_FORMATS[image_format], **options)
    return {
        image_format: buffer.getvalue(),
        "json": json.dumps(record, ensure_ascii=False).encode("utf-8"),
        "txt": captions[0].encode("utf-8"),
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0  # fixed so the same samples always give byte-identical shards
    tar.addfile(info, io.BytesIO(data))
