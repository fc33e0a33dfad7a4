"""Data by name: the one place that turns a command-line name into a data source kind and path.

    scenes | photos | fashion-mnist            the embedded sets (no path)
    a folder holding captions.jsonl            folder
    a folder written by `datasets`' save_to_disk  hf
    a folder of .tar shards, a .tar, a pattern  webdataset
    a .jsonl file, or a .json list              conversations (chat JSONL, LLaVA JSON)
    a .json object, or a folder of .json files  coco (captions_*.json / instances_*.json)
    a folder with img/ and train.jsonl          hateful-memes (its train split)

`vlkit.data.open_named` (data sets), `vlkit.data.contexts.open_source` (instruction sources) and
`vlkit.eval.run.open_benchmarks` (after the benchmarks' own layouts) all resolve names here.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED_KINDS = ("scenes", "photos", "fashion-mnist")
PATTERN_CHARS = "*?[{"


def resolve_name(name: str, what: str = "data") -> tuple[str, str]:
    """(source kind, path) for `name` (path "" for an embedded set); `what` names it in errors."""
    if name in EMBEDDED_KINDS:
        return name, ""
    path = Path(name)
    if not path.exists() and not any(c in name for c in PATTERN_CHARS):
        raise FileNotFoundError(
            f"{what} {name!r}: no such file or folder, and not an embedded set ({', '.join(EMBEDDED_KINDS)})"
        )
    kind = _kind_of_folder(path) if path.is_dir() else _kind_of_file(path, name)
    if kind is None:
        raise ValueError(
            f"{what} {name!r}: not an embedded set ({', '.join(EMBEDDED_KINDS)}), nor a folder with "
            "captions.jsonl, a saved Hugging Face dataset, a directory of .tar shards or a shard pattern, "
            "a conversation file (chat .jsonl, LLaVA .json), COCO annotations or a Hateful Memes folder"
        )
    return kind, str(path / "*.tar") if kind == "webdataset" and path.is_dir() else name


def _kind_of_folder(path: Path) -> str | None:
    if (path / "captions.jsonl").is_file():
        return "folder"
    if (path / "img").is_dir() and (path / "train.jsonl").is_file():
        return "hateful-memes"
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "hf"
    if any(path.glob("*.tar")):
        return "webdataset"
    if any(path.glob("*.json")):
        return "coco"
    return None


def _kind_of_file(path: Path, name: str) -> str | None:
    if path.suffix == ".tar" or not path.exists():  # a pattern
        return "webdataset"
    if path.suffix == ".jsonl":
        return "conversations"
    with path.open("rb") as f:
        head = f.read(256).lstrip()[:1]
    return {b"[": "conversations", b"{": "coco"}.get(head)
