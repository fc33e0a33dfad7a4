"""Images in requests: OpenAI's `image_url` parts, decoded inside the server's limits.

Inline data URLs (`data:image/png;base64,...`) are read. A remote `http(s)` URL is refused with a
400 rather than fetched, by default: a server that fetches what requests name can be pointed at
hosts only it can reach (SSRF). `vlkit serve --allow-url-fetch --allow-host HOST` fetches from the
hosts listed (`RemoteImages`; any other host is refused before a connection is made), without
following redirects or proxies, within a timeout and a size cap. Decoding is `vlkit.data.images.load_image`: every PIL mode to
RGB, and a pixel-count limit checked from the header before any pixel is decoded, so a
decompression bomb costs nothing; corrupt, truncated or non-image data is a 400 naming the part.
"""

from __future__ import annotations

import base64
import binascii
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from vlkit.data.images import ImageError, load_image
from vlkit.generation import RequestError

EXAMPLE = "data:image/png;base64,iVBORw0..."
CHUNK = 64 * 1024


@dataclass(frozen=True)
class RemoteImages:
    """Which remote image URLs the server fetches: those whose host (or host:port) is listed."""

    hosts: tuple[str, ...]
    timeout_s: float = 5.0  # connecting, and reading the whole image
    max_bytes: int = 10 * 2**20

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return bool(host) and (host in self.hosts or f"{host}:{parts.port}" in self.hosts)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect could lead to any host: not followed
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def image_url(part: dict, where: str) -> str:
    """The URL of an OpenAI image part: {"type": "image_url", "image_url": {"url": ...}}."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise RequestError(f"{where}: an image_url part needs 'image_url': {{'url': '{EXAMPLE}'}}", where)
    return url


def decode_image_url(url: str, where: str, max_pixels: int, remote: RemoteImages | None = None) -> np.ndarray:
    """A data URL (or an allowed remote URL) → uint8[H, W, 3]; anything else, or a bad image,
    raises `RequestError`."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        return _decoded(fetch(url, where, remote), where, max_pixels)
    header, comma, payload = url.partition(",")
    if scheme != "data" or not comma or not header.lower().endswith(";base64"):
        raise RequestError(f"{where}: an image must be a base64 data URL such as {EXAMPLE}", where)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"{where}: the data URL's payload is not valid base64 ({e})", where) from e
    return _decoded(raw, where, max_pixels)


def _decoded(raw: bytes, where: str, max_pixels: int) -> np.ndarray:
    try:
        return load_image(raw, name=where, max_pixels=max_pixels)
    except ImageError as e:
        raise RequestError(f"{where}: {e.reason}", where) from e


def fetch(url: str, where: str, remote: RemoteImages | None) -> bytes:
    """The bytes at an allowed remote URL; a refused host, an HTTP error, a redirect, a timeout or
    a body over `remote.max_bytes` is a `RequestError` (OpenAI's 400) naming the part."""
    if remote is None:
        raise RequestError(
            f"{where}: remote image URLs are not fetched by this server (a server that fetches "
            f"URLs can be made to reach private hosts); send the image inline as {EXAMPLE}",
            where,
        )
    if not remote.allows(url):
        host = urlsplit(url).netloc
        raise RequestError(f"{where}: the host {host!r} is not one this server fetches images from", where)
    deadline = time.monotonic() + remote.timeout_s
    try:
        with _opener.open(url, timeout=remote.timeout_s) as response:
            return _read_capped(response, remote.max_bytes, deadline, where)
    except urllib.error.HTTPError as e:
        raise RequestError(
            f"{where}: fetching the image gave HTTP {e.code} (redirects are not followed)", where
        ) from e
    except TimeoutError as e:
        raise RequestError(f"{where}: fetching the image took over {remote.timeout_s} s", where) from e
    except (urllib.error.URLError, OSError) as e:
        if isinstance(getattr(e, "reason", None), TimeoutError):
            raise RequestError(f"{where}: fetching the image took over {remote.timeout_s} s", where) from e
        raise RequestError(f"{where}: the image could not be fetched ({e})", where) from e


def _read_capped(response, max_bytes: int, deadline: float, where: str) -> bytes:
    too_large = RequestError(f"{where}: the image is over this server's limit of {max_bytes} bytes", where)
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks, size = [], 0
    while chunk := response.read1(CHUNK):  # what has arrived: a slow sender meets the deadline
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)
