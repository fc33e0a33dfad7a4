"""Reading a request: the body within its size limit, JSON parsed off the event loop, the model named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from vlkit.index import SearchIndex
from vlkit.serve import kinds
from vlkit.serve.errors import ApiError, unknown_model
from vlkit.serve.schemas import Limits


@dataclass
class Served:
    """The one model behind the app: its name and kind, what serves it (`kinds.SERVED_KINDS`:
    a `BatchingEngine` or a `ContrastiveModel`), the request limits, the search index if any."""

    name: str
    kind: str
    model: Any
    limits: Limits
    index: SearchIndex | None = None

    def require(self, endpoint: str):
        """What serves the model, when `endpoint` is one its kind answers; OpenAI's 400 otherwise."""
        kinds.require(self.name, self.kind, endpoint)
        return self.model


def served(request: Request) -> Served:
    return request.app.state.served


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 as soon as it is known to be over `limit` bytes (header or bytes read)."""
    too_large = ApiError(
        f"the request body is over this server's limit of {limit} bytes", status=413, code="request_too_large"
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, model: Served):
    """Bytes → the JSON body (run in a worker thread: a large body takes a while), the `model`
    field checked: an unknown name is OpenAI's 404; none means the served model."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(f"the request body is not valid JSON: {e}") from e
    if isinstance(body, dict) and body.get("model") not in (None, model.name):
        raise unknown_model(body["model"], model.name)
    return body
