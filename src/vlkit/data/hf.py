"""Hugging Face `datasets` saved with `save_to_disk`: an image column plus a caption column.

Columns are found by type and name when not given: the image column is the one with an
`Image` feature, the caption column the first of CAPTION_COLUMNS present. Images are read
undecoded (raw bytes) and decoded by `load_image`, so they get the same EXIF handling,
mode conversion and error messages as every other vlkit source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from vlkit.data.contract import check_index
from vlkit.data.images import ImageError, load_image

CAPTION_COLUMNS = ("caption", "captions", "text", "sentences")


class HFDiskDataset:
    """Samples `{"image": uint8[H, W, 3], "captions": list[str], "key": "<path>#<row>", "label"?}`.

    `split` picks from a saved DatasetDict ("train" when None); a saved single Dataset has
    no splits and ignores it. A "label" column of integers passes through.
    """

    def __init__(
        self,
        path: str | Path,
        image_column: str | None = None,
        caption_column: str | None = None,
        split: str | None = None,
    ):
        self.path = Path(path)
        self.name = str(self.path)
        table = _load(self.path)
        if isinstance(table, datasets.DatasetDict):
            split = split or "train"
            if split not in table:
                raise ValueError(f"{self.path}: no split {split!r}; available splits: {', '.join(table)}")
            table, self.name = table[split], f"{self.path}[{split}]"
        self.image_column = image_column or _find_image_column(table, self.name)
        self.caption_column = caption_column or _find_caption_column(table, self.name)
        for role, column in (("image", self.image_column), ("caption", self.caption_column)):
            if column not in table.column_names:
                raise ValueError(
                    f"{self.name}: {role} column {column!r} not found; columns: {_describe(table)}"
                )
        if not isinstance(table.features[self.image_column], datasets.Image):
            raise ValueError(
                f"{self.name}: image column {self.image_column!r} is "
                f"{table.features[self.image_column]}, not an Image feature"
            )
        columns = [self.image_column, self.caption_column]
        self._has_label = "label" in table.column_names and "label" not in columns
        if self._has_label:
            columns.append("label")
        # decode=False: rows come back as {"bytes", "path"} and load_image does the decoding.
        self._table = table.select_columns(columns).cast_column(
            self.image_column, datasets.Image(decode=False)
        )
        self._text = table.select_columns([self.caption_column])  # captions without touching images

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._check_index(i)
        row = self._table[i]
        key = f"{self.name}#{i}"
        sample: dict[str, Any] = {
            "image": load_image(_image_source(row[self.image_column], key), name=key),
            "captions": _to_captions(row[self.caption_column], key, self.caption_column),
            "key": key,
        }
        if self._has_label and row["label"] is not None:
            sample["label"] = int(row["label"])
        return sample

    def captions(self, i: int) -> list[str]:
        """The captions of row `i` without decoding its image."""
        i = self._check_index(i)
        return _to_captions(self._text[i][self.caption_column], f"{self.name}#{i}", self.caption_column)

    def _check_index(self, i: int) -> int:
        return check_index(i, len(self._table), f"rows in {self.name}")


def _load(path: Path) -> datasets.Dataset | datasets.DatasetDict:
    if not path.exists():
        raise FileNotFoundError(f"saved Hugging Face dataset not found: {path}")
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as e:  # what datasets raises for a directory it does not recognise
        raise ValueError(f"{path}: not a dataset saved with save_to_disk ({e})") from e


def _describe(table: datasets.Dataset) -> str:
    return ", ".join(f"{name} ({feature})" for name, feature in table.features.items())


def _find_image_column(table: datasets.Dataset, name: str) -> str:
    found = [c for c, feature in table.features.items() if isinstance(feature, datasets.Image)]
    if len(found) == 1:
        return found[0]
    if "image" in found:
        return "image"
    problem = "no column has an Image feature" if not found else f"several Image columns ({', '.join(found)})"
    raise ValueError(f"{name}: {problem}; pass image_column. Columns: {_describe(table)}")


def _find_caption_column(table: datasets.Dataset, name: str) -> str:
    for column in CAPTION_COLUMNS:
        if column in table.column_names:
            return column
    raise ValueError(
        f"{name}: no caption column (looked for {', '.join(CAPTION_COLUMNS)}); pass caption_column. "
        f"Columns: {_describe(table)}"
    )


def _image_source(cell: dict[str, Any] | None, key: str) -> bytes | str:
    """An undecoded Image cell {"bytes", "path"} → what load_image accepts."""
    if cell and cell.get("bytes"):
        return cell["bytes"]
    if cell and cell.get("path"):
        return cell["path"]
    raise ImageError(key, "the image cell is empty")


def _to_captions(value: Any, key: str, column: str) -> list[str]:
    """str, list[str], or a list of {"raw": str} (the Karpathy-split 'sentences' format)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        captions = [v["raw"] if isinstance(v, dict) and "raw" in v else v for v in value]
        if all(isinstance(c, str) for c in captions):
            return captions
    raise ValueError(
        f"{key}: column {column!r} must hold a string or a non-empty list of strings, got {value!r}"
    )
