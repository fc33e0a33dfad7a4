"""Images in requests: OpenAI's `image_url` parts, decoded inside the server's limits.

Only inline data URLs (`data:image/png;base64,...`) are read. A remote `http(s)` URL is refused
with a 400 rather than fetched: a server that fetches what requests name can be pointed at
hosts only it can reach (SSRF). Decoding is `vlkit.data.images.load_image`: every PIL mode to
RGB, and a pixel-count limit checked from the header before any pixel is decoded, so a
decompression bomb costs nothing; corrupt, truncated or non-image data is a 400 naming the part.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from vlkit.data.images import ImageError, load_image
from vlkit.generation import RequestError

EXAMPLE = "data:image/png;base64,iVBORw0..."


def image_url(part: dict, where: str) -> str:
    """The URL of an OpenAI image part: {"type": "image_url", "image_url": {"url": ...}}."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise RequestError(f"{where}: an image_url part needs 'image_url': {{'url': '{EXAMPLE}'}}", where)
    return url


def decode_image_url(url: str, where: str, max_pixels: int) -> np.ndarray:
    """A data URL → uint8[H, W, 3]; anything else, or a bad image, raises `RequestError`."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        raise RequestError(
            f"{where}: remote image URLs are not fetched by this server (a server that fetches "
            f"URLs can be made to reach private hosts); send the image inline as {EXAMPLE}",
            where,
        )
    header, comma, payload = url.partition(",")
    if scheme != "data" or not comma or not header.lower().endswith(";base64"):
        raise RequestError(f"{where}: an image must be a base64 data URL such as {EXAMPLE}", where)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"{where}: the data URL's payload is not valid base64 ({e})", where) from e
    try:
        return load_image(raw, name=where, max_pixels=max_pixels)
    except ImageError as e:
        raise RequestError(f"{where}: {e.reason}", where) from e
