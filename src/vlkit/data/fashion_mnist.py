"""Fashion-MNIST from Debian's dataset-fashion-mnist package: 70k 28x28 clothing images, 10 classes.

A real (if tiny) zero-shot and linear-probe benchmark that needs no download: the package puts
the four original IDX files in /usr/share/datasets/fashion-mnist. The split is decompressed once
per process and held in memory (47 MB for train).

    train = FashionMNIST("train")
    sample = train[5]  # {"image": uint8[28, 28, 3], "label": 2, "captions": [...], "key": "fashion-mnist/train/5"}
"""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
# The official class names, in label order (github.com/zalandoresearch/fashion-mnist).
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# The same classes as a caption would say them.
CAPTION_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
FILES = [
    f"{prefix}-{kind}.gz"
    for prefix in ("train", "t10k")
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
]
# IDX magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def captions_for(label: int) -> list[str]:
    """Two captions for a class: "a photo of a trouser", "a black and white photo of a trouser"."""
    name = CAPTION_NAMES[label]
    article = "an" if name[0] in "aeiou" else "a"
    return [f"a photo of {article} {name}", f"a black and white photo of {article} {name}"]


@functools.lru_cache(maxsize=4)
def read_idx(path: Path, magic: int) -> np.ndarray:
    """uint8 array of a gzipped IDX file: [N, 28, 28] for images, [N] for labels."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found, *shape = struct.unpack(f">I{ndim}I", data[:header])
    if found != magic or len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"{path}: not an IDX file of {ndim} uint8 dimensions (magic {found:#010x}, {len(data)} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


class FashionMNIST:
    """One split of Fashion-MNIST.

    __getitem__(i) -> {"image": uint8[28, 28, 3] (grey repeated), "label": int in [0, 10),
    "captions": list[str], "key": "fashion-mnist/<split>/<i>"}. Items are white on black.
    """

    classes = CLASSES

    def __init__(self, split: str = "train", root: str | Path = DEFAULT_ROOT) -> None:
        if split not in SPLIT_PREFIX:
            raise ValueError(f"FashionMNIST split={split!r} unknown; valid: {list(SPLIT_PREFIX)}")
        self.split = split
        root = Path(root)
        prefix = SPLIT_PREFIX[split]
        images_path, labels_path = (
            root / f"{prefix}-images-idx3-ubyte.gz",
            root / f"{prefix}-labels-idx1-ubyte.gz",
        )
        missing = [str(p) for p in (images_path, labels_path) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST files not found: {', '.join(missing)}. Install them with "
                f"`sudo apt-get install dataset-fashion-mnist` (files go to {DEFAULT_ROOT}), or pass "
                f"root=... pointing at a folder with the four .gz files: {', '.join(FILES)}."
            )
        self.images = read_idx(images_path, IMAGES_MAGIC)  # (N, 28, 28) uint8
        self.labels = read_idx(labels_path, LABELS_MAGIC)  # (N,) uint8
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"{root}: {len(self.images)} images but {len(self.labels)} labels for split {split!r}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"Fashion-MNIST {self.split} index {i} out of range for {len(self)} images")
        i %= len(self)
        label = int(self.labels[i])
        image = np.repeat(self.images[i][:, :, None], 3, axis=2)  # (28, 28, 3)
        return {
            "image": image,
            "label": label,
            "captions": captions_for(label),
            "key": f"fashion-mnist/{self.split}/{i}",
        }
