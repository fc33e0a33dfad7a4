"""Robust image decoding: any file, byte string or PIL image in, `uint8[H, W, 3]` RGB out.

Real image collections hold every PIL mode, EXIF-rotated phone photos, truncated downloads
and the odd decompression bomb. `load_image` turns all of them into one array contract or
an `ImageError` naming the file and the reason, so a data set fails at the bad sample
instead of deep inside a collate function.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# PIL's own default (`Image.MAX_IMAGE_PIXELS`): ~0.25 GB of RGBA, enough for any real photo.
MAX_PIXELS = 89_478_485

ImageSource = str | Path | bytes | Image.Image
ImageInput = str | Path | Image.Image | np.ndarray  # what inference and evaluation take

# Modes that carry alpha; they are composited on white, since a transparent background
# most often means "paper" (logos, product shots) and black would invent dark images.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa"}


class ImageError(ValueError):
    """An image that cannot be decoded; `path` names the file (or shard member, row, ...)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keeps the two-argument form picklable across worker processes
        return (type(self), (self.path, self.reason))


def load_image(
    source: ImageSource, *, name: str | None = None, max_pixels: int | None = MAX_PIXELS
) -> np.ndarray:
    """Decodes `source` fully and returns `uint8[H, W, 3]` RGB, upright per its EXIF tag.

    `name` is what errors call the image (defaults to the path); `max_pixels` (None = no
    limit) rejects decompression bombs before their pixels are decoded.
    """
    if name is None:
        name = str(source) if isinstance(source, str | Path) else f"<{type(source).__name__}>"
    if isinstance(source, str | Path) and not Path(source).is_file():
        raise ImageError(name, "file not found")
    # PIL signals bombs with a warning (> its limit) or an error (> twice it); both must
    # reject the sample rather than print once and carry on. (catch_warnings is process-wide;
    # a thread race can at worst leave this one warning type set to "error".)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if isinstance(source, Image.Image):  # may still be lazy: decoding can fail here too
                return _decode(source, name, max_pixels)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                return _decode(img, name, max_pixels)
        except ImageError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ImageError(name, f"rejected as a possible decompression bomb: {e}") from e
        except Exception as e:
            # PIL's plugins raise a zoo of types on bad data (UnidentifiedImageError, OSError
            # for truncation, SyntaxError, struct.error, IndexError, ...); all mean "bad file".
            raise ImageError(name, f"cannot decode image ({type(e).__name__}: {e})") from e


def as_array(image: ImageInput) -> np.ndarray:
    """A path or PIL image (decoded by `load_image`), or an array that must already be
    `uint8[H, W, 3]`, → `uint8[H, W, 3]` RGB."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image arrays must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}")
        return image
    return load_image(image)


def read_images(
    images: Sequence[ImageInput], strict: bool = True
) -> tuple[list[np.ndarray], list[int], list[ImageError]]:
    """Decodes a batch → (arrays `uint8[H, W, 3]`, their positions in `images`, the errors of the rest).

    strict: the first unreadable image raises its `ImageError`; otherwise it is skipped and its
    error returned (skip-and-report). An array of the wrong type is a caller's bug: it always raises.
    """
    arrays, positions, failures = [], [], []
    for position, image in enumerate(images):
        try:
            arrays.append(as_array(image))
        except ImageError as e:
            if strict:
                raise
            failures.append(e)
        else:
            positions.append(position)
    return arrays, positions, failures


def require_readable(total: int, failures: Sequence[ImageError]) -> None:
    """Skip-and-report still needs something to report on: a ValueError when all `total` failed."""
    if total and len(failures) == total:
        raise ValueError(f"none of the {total} images could be read: " + _listed(failures, 5))


def describe_failures(failures: Sequence[ImageError], total: int, listed_in: Path | None = None) -> str:
    """'2 of 5 images could not be read and were skipped: a.png: reason; ...' ('' when none)."""
    if not failures:
        return ""
    where = f" (listed in {listed_in})" if listed_in else ""
    return f"{len(failures)} of {total} images could not be read and were skipped{where}: " + _listed(
        failures, 20
    )


def write_failures(failures: Sequence[ImageError], path: str | Path) -> Path:
    """Writes one JSON line {"path", "reason"} per image, whole or not at all (temporary file +
    rename); no failures removes a stale file instead, so the file always describes the last run."""
    path = Path(path)
    if not failures:
        path.unlink(missing_ok=True)
        return path
    partial = path.with_name(path.name + ".partial")
    lines = "".join(json.dumps({"path": e.path, "reason": e.reason}) + "\n" for e in failures)
    partial.write_text(lines, encoding="utf-8")
    os.replace(partial, path)
    return path


def _listed(failures: Sequence[ImageError], most: int) -> str:
    shown = "; ".join(str(e) for e in failures[:most])
    return shown + (f"; ... ({len(failures) - most} more)" if len(failures) > most else "")


def _decode(img: Image.Image, name: str, max_pixels: int | None) -> np.ndarray:
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            name, f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    img.load()  # decode everything now, so truncated files fail here and not later
    img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode → `uint8[H, W, 3]`: alpha composited on white, high bit depths scaled."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        gray = _high_depth_to_uint8(img)  # (H, W)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
        alpha = rgba[:, :, 3:] / 255.0
        rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.round(rgb).astype(np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit maps its full range onto 8 bits; 32-bit int and float have no declared range,
    so floats in [0, 1] are scaled by 255 and anything else is stretched from min to max."""
    values = np.nan_to_num(np.asarray(img).astype(np.float64))  # (H, W)
    if img.mode.startswith("I;16"):
        scaled = values / 257.0  # 65535 → 255
    elif img.mode == "F" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
        scaled = values * 255.0
    else:
        low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)
