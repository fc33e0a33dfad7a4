"""A disk cache of frozen-encoder features, memory-mapped, keyed by image content and encoder.

When the vision encoder is frozen its features never change: compute them once, keep them under
`root/<encoder_key>/`, and reuse them across epochs and runs. A different or fine-tuned encoder
has another `encoder_fingerprint`, hence another folder: stale features are never read.

Layout of `root/<encoder_key>/`:
- `features.bin`: fixed-size rows (`shape`, `dtype`) appended one after another, read through
  `np.memmap`;
- `index.txt`: one `<image sha1> <row>\\n` line per cached image;
- `meta.json`: shape and dtype (reopening with others is an error); `lock`: the append lock.

Crash safety: a writer appends rows, flushes and fsyncs them, and only then appends their index
lines, so an index line never points to a half-written row. On reading, a last index line
without its newline and rows past the end of the data file are ignored (those images are simply
computed again); the next writer trims a partial row and rewrites the index without such lines
before appending.

Several processes may share a folder: appends hold an exclusive `fcntl.flock` on `lock` and first
read what the others appended; readers take no lock (rows are complete before their index line
exists). Two processes missing the same image both compute it; only the first one stores it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def encoder_fingerprint(module: nn.Module, name: str) -> str:
    """`<name>-<16 hex>`: a digest of every parameter and buffer (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha1(name.encode())
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for key, tensor in sorted(tensors, key=lambda kv: kv[0]):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "encoder"
    return f"{safe}-{digest.hexdigest()[:16]}"


def image_key(image: np.ndarray) -> str:
    """sha1 of a uint8 image's bytes and shape."""
    if image.dtype != np.uint8:
        raise ValueError(
            f"feature cache: images must be uint8 arrays (the key hashes pixels), got {image.dtype}"
        )
    digest = hashlib.sha1(np.ascontiguousarray(image).tobytes())
    digest.update(str(image.shape).encode())
    return digest.hexdigest()


class FeatureCache:
    """Features `float[N, D]` (`shape`) per image, stored under `root/encoder_key`."""

    def __init__(self, root: Path | str, encoder_key: str, shape: tuple[int, int], dtype=np.float32):
        if not encoder_key or "/" in encoder_key or encoder_key.startswith("."):
            raise ValueError(f"feature cache: encoder_key {encoder_key!r} must be a plain folder name")
        self.dir = Path(root) / encoder_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.data_path, self.index_path = self.dir / "features.bin", self.dir / "index.txt"
        self.hits = self.misses = 0
        self._rows: dict[str, int] = {}
        self._index_offset = 0  # bytes of index.txt already read
        self._memmap: np.memmap | None = None
        self._check_meta()
        self._read_index()

    def __len__(self) -> int:
        return len(self._rows)

    def get_or_compute(
        self, images: list[np.ndarray], compute: Callable[[list[np.ndarray]], torch.Tensor]
    ) -> torch.Tensor:
        """images: uint8 arrays; compute(missing images) → float[n_missing, *shape], called once
        per call with the misses only (none: not called). Returns float[len(images), *shape] in
        the order of `images`, in the cache's dtype, on the CPU."""
        keys = [image_key(im) for im in images]
        self._read_index()  # another process may have added some
        missing = {k: im for k, im in zip(keys, images) if k not in self._rows}
        self.misses += sum(k in missing for k in keys)
        self.hits += len(keys) - sum(k in missing for k in keys)
        if missing:
            feats = compute(list(missing.values()))
            expected = (len(missing), *self.shape)
            if tuple(feats.shape) != expected:
                raise ValueError(
                    f"feature cache: compute returned shape {tuple(feats.shape)}, expected {expected}"
                )
            self._append(list(missing), feats.detach().cpu().numpy().astype(self.dtype, copy=False))
        rows = self._open()[[self._rows[k] for k in keys]]  # (B, *shape), a copy out of the memmap
        return torch.from_numpy(rows)

    # ------------------------------------------------------------------ storage

    def _check_meta(self) -> None:
        meta = {"shape": list(self.shape), "dtype": self.dtype.name}
        path = self.dir / "meta.json"
        with self._locked():
            if not path.exists():
                path.write_text(json.dumps(meta))
        stored = json.loads(path.read_text())
        if stored != meta:
            raise ValueError(f"feature cache {self.dir}: holds {stored}, opened with {meta}")

    def _locked(self):
        return _FileLock(self.dir / "lock")

    def _complete_rows(self) -> int:
        return self.data_path.stat().st_size // self.row_bytes if self.data_path.exists() else 0

    def _read_index(self) -> None:
        """Reads complete index lines added since the last read; skips lines that point past the data."""
        if not self.index_path.exists():
            return
        with open(self.index_path, "rb") as f:
            f.seek(self._index_offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a last line without its newline is a write in progress or a crash
        n_rows = self._complete_rows()
        for line in chunk[:end].splitlines():
            entry = _parse(line, n_rows)
            if entry is not None:
                self._rows.setdefault(*entry)
        self._index_offset += end

    def _append(self, keys: list[str], feats: np.ndarray) -> None:
        with self._locked():
            self._read_index()
            todo = [i for i, k in enumerate(keys) if k not in self._rows]
            if not todo:
                return
            first = self._complete_rows()
            with open(self.data_path, "ab") as f:
                f.truncate(first * self.row_bytes)  # drop a partial row left by a crash
                f.write(np.ascontiguousarray(feats[todo]).tobytes())
                f.flush()
                os.fsync(f.fileno())
            with open(self.index_path, "ab+") as f:
                f.seek(0)
                text = f.read()
                # After a crash (a cut last line) or a lost data tail (lines past the data), rewrite
                # the index without them, so that rows appended now are not claimed by stale lines.
                kept = b"".join(line + b"\n" for line in text.split(b"\n")[:-1] if _parse(line, first))
                if kept != text:
                    f.truncate(0)
                    f.write(kept)
                    self._rows, self._index_offset = {}, 0
                lines = "".join(f"{keys[i]} {first + j}\n" for j, i in enumerate(todo))
                f.write(lines.encode())
                f.flush()
                os.fsync(f.fileno())
            self._read_index()
        self._memmap = None  # the file grew: map it again

    def _open(self) -> np.memmap:
        n_rows = self._complete_rows()
        if self._memmap is None or self._memmap.shape[0] != n_rows:
            self._memmap = np.memmap(self.data_path, dtype=self.dtype, mode="r", shape=(n_rows, *self.shape))
        return self._memmap


def _parse(line: bytes, n_rows: int) -> tuple[str, int] | None:
    """`<40 hex> <row>` with row < n_rows, else None."""
    key, _, row = line.decode(errors="replace").partition(" ")
    if len(key) == 40 and row.isdigit() and int(row) < n_rows:
        return key, int(row)
    return None


class _FileLock:
    """An exclusive `fcntl.flock` on a file, as a context manager (Linux/macOS)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "a")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
