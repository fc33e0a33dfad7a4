"""Request bodies → what the models take, validated at the boundary (each error names its field).

    chat_request(body, limits)       /v1/chat/completions → messages (images decoded), Decoding
    embeddings_request(body, limits) /v1/embeddings → texts or images
    classify_request(body, limits)   /v1/classify → images, labels, templates

Errors are `RequestError`s (OpenAI's 400, `param` = the field). Messages keep OpenAI's shape
except that an `image_url` part becomes vlkit's {"type": "image", "image": uint8[H, W, 3]}:
`vlkit.generation.Engine` reads that. Over HTTP an image comes only as a data URL, never a path.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlkit.config import DEFAULT_TEMPLATES
from vlkit.decoding import Decoding
from vlkit.generation import RequestError
from vlkit.serve.images import decode_image_url, image_url

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (`vlkit serve`'s options)."""

    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 4096 * 4096
    max_tokens: int = 1024  # the most `max_tokens` a request may ask for
    default_max_tokens: int = 256
    max_inputs: int = 256  # texts or images per embeddings / classify request
    max_active: int = 64  # /v1/ requests in progress at once (read, prepared, queued, generating)

    @classmethod
    def from_options(cls, max_tokens: int, max_body_mb: float, max_pixels: int, max_queue: int) -> Limits:
        """`vlkit serve`'s options → limits."""
        return cls(
            int(max_body_mb * 2**20), max_pixels, max_tokens, min(256, max_tokens), max_active=max_queue
        )


def number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise RequestError(f"'{name}' must be {'an integer' if integer else 'a number'}, got {value!r}", name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be in [{lo}, {hi}], got {value}", name)
    return value


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    return body


def chat_request(body, limits: Limits = Limits()) -> dict:
    """A chat-completions body → {"messages", "decoding", "stream", "include_usage", "max_tokens_set"}."""
    body = require_object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    return {
        "messages": [_message(m, i, limits) for i, m in enumerate(messages)],
        "decoding": _decoding(body, limits),
        "stream": stream,
        "include_usage": isinstance(options, dict) and options.get("include_usage") is True,
        # unset: the default is an upper bound, lowered to what the model's context leaves
        "max_tokens_set": any(body.get(f) is not None for f in ("max_tokens", "max_completion_tokens")),
    }


def _decoding(body: dict, limits: Limits) -> Decoding:
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of at most 4 strings", "stop")
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = int(number(body, field, min(limits.default_max_tokens, limits.max_tokens), 1, 2**31))
    if max_tokens > limits.max_tokens:
        raise RequestError(f"'{field}' is {max_tokens}, over this server's cap of {limits.max_tokens}", field)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", "seed")
    return Decoding.from_openai(
        max_tokens=max_tokens,
        temperature=float(number(body, "temperature", 0.0, 0.0, 2.0)),
        top_p=float(number(body, "top_p", 1.0, 1e-6, 1.0)),
        stop=stop,
        seed=seed,
    )


def _message(m, i: int, limits: Limits) -> dict:
    if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
        raise RequestError(f"messages[{i}] needs 'role' in {tuple(ROLES)} and 'content'", f"messages[{i}]")
    content, where = m["content"], f"messages[{i}].content"
    if content is None and m["role"] == "assistant":
        content = ""
    if isinstance(content, str):
        return {"role": ROLES[m["role"]], "content": content}
    if not isinstance(content, list):
        raise RequestError(f"{where}: must be a string or a list of parts", where)
    return {"role": ROLES[m["role"]], "content": [_part(p, where, limits) for p in content]}


def _part(part, where: str, limits: Limits) -> dict:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        return {"type": "image", "image": decode_image_url(image_url(part, where), where, limits.max_pixels)}
    raise RequestError(
        f"{where}: a part must be {{'type': 'text', 'text': ...}} or {{'type': 'image_url', "
        f"'image_url': {{'url': 'data:...'}}}}, got {str(part)[:60]}",
        where,
    )


def _strings(body: dict, name: str, limits: Limits, required: bool = True) -> list[str]:
    value = body.get(name)
    if value is None and not required:
        return []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RequestError(f"'{name}' must be a string or a non-empty list of strings", name)
    if len(value) > limits.max_inputs:
        raise RequestError(f"'{name}' has {len(value)} entries, over the limit of {limits.max_inputs}", name)
    return value


def _images(urls: list[str], name: str, limits: Limits) -> list:
    return [decode_image_url(u, f"{name}[{i}]", limits.max_pixels) for i, u in enumerate(urls)]


def embeddings_request(body, limits: Limits = Limits()) -> dict:
    """An embeddings body: `input` texts (OpenAI's field) or data-URL images, one kind per request
    → {"texts"} or {"images"}, and "base64" (float32 little-endian, as the openai client asks)."""
    body = require_object(body)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError(
            f"'encoding_format' must be 'float' or 'base64', got {encoding!r}", "encoding_format"
        )
    inputs = _strings(body, "input", limits)
    images = [s.startswith(("data:", "http://", "https://")) for s in inputs]
    if any(images) and not all(images):
        raise RequestError("'input' mixes texts and images: send one kind per request", "input")
    kind = {"images": _images(inputs, "input", limits)} if all(images) else {"texts": inputs}
    return kind | {"base64": encoding == "base64"}


def classify_request(body, limits: Limits = Limits()) -> dict:
    """{"images": [data URL, ...], "labels": [...], "templates": [... "{}" ...]} (templates optional)."""
    body = require_object(body)
    labels = _strings(body, "labels", limits)
    templates = _strings(body, "templates", limits, required=False) or list(DEFAULT_TEMPLATES)
    for i, t in enumerate(templates):
        if "{}" not in t:
            raise RequestError(f"templates[{i}] {t!r} has no '{{}}' where the label goes", f"templates[{i}]")
    return {
        "images": _images(_strings(body, "images", limits), "images", limits),
        "labels": labels,
        "templates": templates,
    }
