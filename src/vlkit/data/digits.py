"""sklearn's handwritten digits (1,797 8x8 greyscale images, 10 classes) as pictures an ImageNet
network can read: the zero-shot benchmark for training-free models (`benchmarks/training_free.py`).

The 8x8 images are cropped to the digit: its strokes touch the frame. Upscaled to 224 px as they
are, the digit fills the whole input, which ImageNet photographs rarely do, and the pretrained
features separate the classes worse (nearest-neighbour accuracy between images, measured on a
validation split of the anchors' half: `benchmarks/training_free.py` records it per margin).
`render_digit` draws the ink dark on white, as handwriting is seen, and adds a white margin first
(4 px: the digit spans half the picture); margin and ink colour were chosen on that validation
split, never on the test half.

    digits = Digits("train")  # half of the 1,797, fixed by seed 0; "test" is the other half
    sample = digits[0]  # {"image": uint8[16, 16, 3], "label": 7, "captions": ["a handwritten digit seven"], ...}

scikit-learn is an optional dependency (`pip install vlkit[test]`).
"""

from __future__ import annotations

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CAPTION = "a handwritten digit {}"
MARGIN = 4
SPLITS = ("train", "test")


def render_digit(pixels: np.ndarray, margin: int = MARGIN) -> np.ndarray:
    """pixels: float[8, 8] ink in 0..16 (sklearn's scale) → uint8[8 + 2m, 8 + 2m, 3]: ink dark on
    white, with a white margin of `margin` pixels on every side."""
    if pixels.ndim != 2 or pixels.min() < 0 or pixels.max() > 16:
        raise ValueError(f"a digit is float[H, W] in 0..16; got shape {pixels.shape}, range "
                         f"{pixels.min()}..{pixels.max()}")  # fmt: skip
    grey = np.round(255 - pixels * 255 / 16).astype(np.uint8)
    grey = np.pad(grey, margin, constant_values=255)
    return np.repeat(grey[:, :, None], 3, axis=2)


class Digits:
    """One half of sklearn's digits (a permutation by `seed`: the first half "train", the rest
    "test"), rendered by `render_digit`, each captioned with one wording ("a handwritten digit
    seven"). __getitem__(i) -> {"image", "label", "captions", "key": "digits/<sklearn index>"}."""

    classes = WORDS

    def __init__(self, split: str = "train", margin: int = MARGIN, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"Digits split {split!r} unknown; valid: {', '.join(SPLITS)}")
        from sklearn.datasets import load_digits

        data = load_digits()
        order = np.random.default_rng(seed).permutation(len(data.images))
        half = len(order) // 2
        self.split, self.margin = split, margin
        self.rows = order[:half] if split == "train" else order[half:]
        self.pixels, self.labels = data.images[self.rows], data.target[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"digit index {i} out of range for {len(self)} digits")
        label = int(self.labels[i])
        return {
            "image": render_digit(self.pixels[i], self.margin),
            "label": label,
            "captions": [CAPTION.format(WORDS[label])],
            "key": f"digits/{self.rows[i]}",
        }
