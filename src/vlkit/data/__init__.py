"""Data sets: embedded ones (scenes, photos, fashion-mnist) and your own (folder, webdataset, hf,
conversations, coco).

Every data set follows one contract: `len(ds)` and `ds[i]` → a dict with
    "image": uint8[H, W, 3] RGB, "captions": list[str] (>= 1), "key": str (a stable id),
and optionally "label": int, "qa": [{"question", "answer", "type"}] (scenes) and "messages":
[{"role", "content"}] (conversation files; their "captions" may be empty). An index out of
range raises IndexError. Sets that can give captions without decoding images also have
`captions(i) -> list[str]`.

`build_dataset(cfg.data)` turns the config's sources into one data set, mixed by weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlkit.config import DataConfig, SourceConfig
from vlkit.data.folder import ImageFolderCaptions
from vlkit.data.images import MAX_PIXELS, ImageError, load_image
from vlkit.data.mix import MixedDataset
from vlkit.data.names import EMBEDDED_KINDS, resolve_name
from vlkit.data.shards import WebDatasetShards, write_shards

__all__ = [
    "EMBEDDED_KINDS",
    "MAX_PIXELS",
    "SOURCE_KINDS",
    "ImageError",
    "ImageFolderCaptions",
    "MixedDataset",
    "WebDatasetShards",
    "build_dataset",
    "build_source",
    "iter_captions",
    "iter_texts",
    "load_image",
    "open_named",
    "resolve_name",
    "write_shards",
]


# Imported only when asked for: the embedded sets load their own assets, and `datasets`
# takes about a second to import.
def _scenes(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.scenes import Scenes, ScenesConfig

    config = ScenesConfig(
        image_size=cfg.image_size,
        min_objects=source.min_objects or cfg.min_objects,
        max_objects=source.max_objects or cfg.max_objects,
        seed=cfg.seed,
        caption_styles=source.caption_styles,
        question_wordings=source.question_wordings or "templates",
        position_questions=source.position_questions,
        question_types=tuple(source.question_types),
    )
    return Scenes(config)


def _scenes_instruct(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.instruct_scenes import InstructScenes

    return InstructScenes(_scenes(source, cfg).config)


def _scenes_boxes(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.scenes_boxes import SceneBoxes

    return SceneBoxes(_scenes(source, cfg).config)


def _scenes_masks(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.scenes_boxes import SceneBoxes

    return SceneBoxes(_scenes(source, cfg).config, masks=True)


def _photos(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.photos import Photos

    return Photos(split=source.split)


def _fashion_mnist(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.fashion_mnist import FashionMNIST

    return FashionMNIST(split=source.split)


def _conversations(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.conversations import ConversationFile

    return ConversationFile(source.path)


def _coco(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.coco import CocoCaptions

    return CocoCaptions(source.path)


def _memes(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.memes import Memes

    return Memes(source.path, split=source.split)


def _hf(source: SourceConfig, cfg: DataConfig) -> Any:
    from vlkit.data.hf import HFDiskDataset

    return HFDiskDataset(source.path, split=source.split)


# kind → builder; the only registry of data sources. Kinds in USER_KINDS read `source.path`.
SOURCE_KINDS: dict[str, Callable[[SourceConfig, DataConfig], Any]] = {
    "scenes": _scenes,
    "scenes-instruct": _scenes_instruct,  # scenes with template-teacher conversations (3 LLaVA kinds)
    "scenes-boxes": _scenes_boxes,  # scenes with each object's colour, shape, size and box (detection)
    "scenes-masks": _scenes_masks,  # the same, each object with its mask (segmentation)
    "photos": _photos,
    "fashion-mnist": _fashion_mnist,
    "folder": lambda source, cfg: ImageFolderCaptions(source.path),
    "webdataset": lambda source, cfg: WebDatasetShards(source.path),
    "hf": _hf,
    "conversations": _conversations,  # LLaVA JSON or chat-messages JSONL
    "coco": _coco,  # COCO captions_*.json (or a folder of COCO files): images with their captions
    "hateful-memes": _memes,  # a Hateful Memes folder's <split>.jsonl (or one file): image, text, label
}
SCENES_KINDS = ("scenes", "scenes-instruct", "scenes-boxes", "scenes-masks")
USER_KINDS = ("folder", "webdataset", "hf", "conversations", "coco", "hateful-memes")


def build_source(source: SourceConfig, cfg: DataConfig, where: str = "data.sources[0]") -> Any:
    """One SourceConfig → its data set; `where` names it in errors."""
    if source.kind not in SOURCE_KINDS:
        raise ValueError(
            f"{where}.kind: unknown kind {source.kind!r}; valid kinds: {', '.join(SOURCE_KINDS)}"
        )
    if source.kind in USER_KINDS and not source.path:
        raise ValueError(f"{where}.path: kind {source.kind!r} needs a path to the data")
    if source.kind not in USER_KINDS and source.path:
        raise ValueError(
            f"{where}.path: kind {source.kind!r} is embedded and takes no path (got {source.path!r}); "
            f"paths are for kinds {', '.join(USER_KINDS)}"
        )
    scenes_only = (
        "min_objects",
        "max_objects",
        "caption_styles",
        "question_wordings",
        "position_questions",
        "question_types",
    )
    for key in scenes_only:
        value = getattr(source, key)
        if value and source.kind not in SCENES_KINDS:
            raise ValueError(f"{where}.{key}: {value!r} applies to scenes sources only, not {source.kind!r}")
    try:
        return SOURCE_KINDS[source.kind](source, cfg)
    except ValueError as e:  # ScenesConfig's range checks: say which source
        raise ValueError(f"{where}: {e}") from None


def build_dataset(cfg: DataConfig) -> Any:
    """All sources of `cfg`; one source is returned as is, several are mixed by weight."""
    if not cfg.sources:
        raise ValueError("data.sources: empty; give at least one source")
    for s, source in enumerate(cfg.sources):
        if not source.weight > 0:
            raise ValueError(f"data.sources[{s}].weight: must be > 0, got {source.weight}")
    built = [build_source(source, cfg, f"data.sources[{s}]") for s, source in enumerate(cfg.sources)]
    if len(built) == 1:
        return built[0]
    return MixedDataset(built, [source.weight for source in cfg.sources], seed=cfg.seed)


def iter_captions(dataset: Any, n: int) -> list[str]:
    """All captions of the first `n` samples (e.g. to train a tokenizer); undecodable images
    are skipped. Uses `dataset.captions(i)` when present, so no image is decoded at all."""
    captions: list[str] = []
    fast = getattr(dataset, "captions", None)
    for i in range(min(n, len(dataset))):
        try:
            captions.extend(fast(i) if callable(fast) else dataset[i]["captions"])
        except ImageError:  # a mix may fall back to decoding for sources without captions()
            continue
    return captions


def iter_texts(dataset: Any, n: int) -> list[str]:
    """Every text of the first `n` samples: captions, QA pairs and conversation turns (to train a
    generative model's tokenizer); undecodable images are skipped."""
    texts: list[str] = []
    fast = getattr(dataset, "texts", None)
    for i in range(min(n, len(dataset))):
        if callable(fast):
            texts.extend(fast(i))
            continue
        try:
            sample = dataset[i]
        except ImageError:
            continue
        texts.extend(sample["captions"])
        texts.extend(f"{qa['question']} {qa['answer']}" for qa in sample.get("qa", ()))
        texts.extend(m["content"] for m in sample.get("messages", ()))
    return texts


def open_named(name: str, split: str = "train") -> Any:
    """A data set from a command-line name (`vlkit.data.names.resolve_name` says which kind;
    DataConfig's defaults for embedded sets). `split` applies to photos and fashion-mnist
    (train | test) and to a saved DatasetDict (one of its splits; a missing one is an error listing
    those it has, never a silent fall-back to "train")."""
    kind, path = resolve_name(name)
    has_splits = kind in ("photos", "fashion-mnist", "hf")
    source = SourceConfig(kind=kind, path=path, split=split if has_splits else "train")
    return build_source(source, DataConfig(), where=f"data {name!r}")
