"""Request bodies → what the models take, validated at the boundary (each error names its field).

    chat_request(body, limits)       /v1/chat/completions → messages (images decoded), Decoding
    embeddings_request(body, limits) /v1/embeddings → texts or images
    classify_request(body, limits)   /v1/classify → images, labels, templates
    search_request, caption_request, answer_request: /v1/search, /v1/caption, /v1/answer, each
        body a pydantic model (`SearchRequest`, ...; their JSON schemas are in /docs)

Errors are `RequestError`s (OpenAI's 400, `param` = the field). Messages keep OpenAI's shape
except that an `image_url` part becomes vlkit's {"type": "image", "image": uint8[H, W, 3]}:
`vlkit.generation.Engine` reads that. Over HTTP an image comes only as a data URL, never a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from vlkit.config import DEFAULT_TEMPLATES
from vlkit.data.conversations import CAPTION_PROMPT, vqa_prompt
from vlkit.decoding import Decoding
from vlkit.generation import RequestError
from vlkit.serve.images import RemoteImages, decode_image_url, image_url

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
    remote: RemoteImages | None = None  # remote image URLs fetched (None: refused)

    @classmethod
    def from_options(
        cls,
        max_tokens: int,
        max_body_mb: float,
        max_pixels: int,
        max_queue: int,
        remote: RemoteImages | None = None,
    ) -> Limits:
        """`vlkit serve`'s options → limits."""
        return cls(
            int(max_body_mb * 2**20),
            max_pixels,
            max_tokens,
            min(256, max_tokens),
            max_active=max_queue,
            remote=remote,
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
        image = decode_image_url(image_url(part, where), where, limits.max_pixels, limits.remote)
        return {"type": "image", "image": image}
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
    return [decode_image_url(u, f"{name}[{i}]", limits.max_pixels, limits.remote) for i, u in enumerate(urls)]


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


# ---------------------------------------------------------------- /v1/search, /v1/caption, /v1/answer
# Pydantic models: their JSON schemas document the bodies in /docs; `validated` reads a body with
# them (strictly: "5" is not 5), each error OpenAI's 400 naming the field.
MODEL_FIELD = Field(None, description="the served model's name; optional (another name is a 404)")


class SearchRequest(BaseModel):
    """The keys of the server's index (`vlkit serve MODEL --index PATH`) nearest a text or an image."""

    model: str | None = MODEL_FIELD
    query: str = Field(
        min_length=1, description="a text, or an image as a data URL", examples=["a small red circle"]
    )
    k: int = Field(5, ge=1, le=100, description="how many results")


class SearchHit(BaseModel):
    key: str = Field(
        description="what the index holds for the row: the image's path as `vlkit index` was given it"
    )
    score: float = Field(description="cosine similarity of the query and the row")


class SearchResponse(BaseModel):
    object: Literal["search.result"] = "search.result"
    model: str
    query: Literal["text", "image"] = Field(description="what the query was read as")
    data: list[SearchHit] = Field(description="best first")


class CaptionRequest(BaseModel):
    """A caption per image (generative models), with `vlkit caption`'s prompt unless given one."""

    DEFAULT_TOKENS: ClassVar[int] = 48  # vlkit caption's

    model: str | None = MODEL_FIELD
    images: list[str] = Field(min_length=1, description="images as data URLs")
    prompt: str | None = Field(None, description=f"what to ask for (default: {CAPTION_PROMPT!r})")
    max_tokens: int | None = Field(None, ge=1, description=f"longest caption (default: {DEFAULT_TOKENS})")


class Caption(BaseModel):
    index: int
    caption: str


class CaptionResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Caption]
    usage: dict[str, int]


class AnswerRequest(BaseModel):
    """A short answer to a question about an image (generative models): `vlkit ask`'s prompt."""

    DEFAULT_TOKENS: ClassVar[int] = 8  # vlkit ask's

    model: str | None = MODEL_FIELD
    image: str = Field(description="the image as a data URL")
    question: str = Field(min_length=1, examples=["What color is the circle?"])
    short: bool = Field(True, description="append the short-answer instruction, as vlkit ask does")
    max_tokens: int | None = Field(None, ge=1, description=f"longest answer (default: {DEFAULT_TOKENS})")


class AnswerResponse(BaseModel):
    object: Literal["answer"] = "answer"
    model: str
    answer: str
    usage: dict[str, int]


def validated(schema: type[BaseModel], body: dict) -> BaseModel:
    try:
        return schema.model_validate(body, strict=True)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise RequestError(f"'{field}': {first['msg']}" if field else first["msg"], field) from e


def documented(body: type[BaseModel], response: type[BaseModel]) -> dict:
    """A route's keywords that put its body's and its response's JSON schemas in /docs (the body
    is read by the handler, within the size limit and off the event loop, not by FastAPI)."""
    schema = {"content": {"application/json": {"schema": body.model_json_schema()}}, "required": True}
    return {"response_model": response, "openapi_extra": {"requestBody": schema}}


def caption_text(prompt: str | None) -> str:
    return prompt or CAPTION_PROMPT


def answer_text(question: str, short: bool) -> str:
    return vqa_prompt(question) if short else question


def _is_image(value: str) -> bool:
    return value.startswith(("data:", "http://", "https://"))


def _max_tokens(asked: int | None, default: int, limits: Limits) -> Decoding:
    max_tokens = min(default, limits.max_tokens) if asked is None else asked
    if max_tokens > limits.max_tokens:
        raise RequestError(
            f"'max_tokens' is {max_tokens}, over this server's cap of {limits.max_tokens}", "max_tokens"
        )
    return Decoding(max_new_tokens=max_tokens)


def search_request(body, limits: Limits = Limits()) -> dict:
    """→ {"text"} or {"image"} (a data URL decoded), and "k"."""
    request = validated(SearchRequest, require_object(body))
    if _is_image(request.query):
        return {
            "image": decode_image_url(request.query, "query", limits.max_pixels, limits.remote),
            "k": request.k,
        }
    return {"text": request.query, "k": request.k}


def _user_turn(image, text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def caption_request(body, limits: Limits = Limits()) -> dict:
    """→ {"conversations": one per image, its image decoded and `vlkit caption`'s prompt, "decoding"}."""
    request = validated(CaptionRequest, require_object(body))
    if len(request.images) > limits.max_inputs:
        raise RequestError(
            f"'images' has {len(request.images)} entries, over the limit of {limits.max_inputs}", "images"
        )
    decoding = _max_tokens(request.max_tokens, CaptionRequest.DEFAULT_TOKENS, limits)  # before decoding
    text = caption_text(request.prompt)
    images = _images(request.images, "images", limits)
    return {"conversations": [_user_turn(image, text) for image in images], "decoding": decoding}


def answer_request(body, limits: Limits = Limits()) -> dict:
    """→ {"conversation": the image decoded and `vlkit ask`'s prompt for the question, "decoding"}."""
    request = validated(AnswerRequest, require_object(body))
    decoding = _max_tokens(request.max_tokens, AnswerRequest.DEFAULT_TOKENS, limits)  # before decoding
    image = decode_image_url(request.image, "image", limits.max_pixels, limits.remote)
    return {
        "conversation": _user_turn(image, answer_text(request.question, request.short)),
        "decoding": decoding,
    }
