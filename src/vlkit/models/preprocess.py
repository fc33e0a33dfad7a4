"""Image preprocessing: uint8 RGB arrays → normalised float batches.

Same steps and arithmetic as transformers' CLIPImageProcessor (resize the shortest edge with
bicubic, centre crop, scale to [0, 1], normalise), so an exported model gives the same pixels in
a transformers pipeline; done batched in torch because per-image processors dominate inference
time for small models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocess:
    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def resize_crop(self, image: np.ndarray) -> np.ndarray:
        """image: uint8[H, W, 3] → uint8[size, size, 3]."""
        h, w = image.shape[:2]
        if (h, w) == (self.size, self.size):
            return image
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(self.size * long / short)
        new_h, new_w = (self.size, new_long) if h <= w else (new_long, self.size)
        pil = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC)
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        return np.asarray(pil)[top : top + self.size, left : left + self.size]

    def __call__(self, images: list[np.ndarray]) -> torch.Tensor:
        """images: list of uint8[H, W, 3] → float32[B, 3, size, size]."""
        batch = torch.from_numpy(np.stack([self.resize_crop(im) for im in images]))  # (B, S, S, 3)
        x = batch.permute(0, 3, 1, 2).float().mul_(1 / 255)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std
