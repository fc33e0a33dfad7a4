"""An OpenAI-compatible server for any vlkit model: `vlkit serve MODEL`.

    POST /v1/chat/completions   generative models: messages with text and image_url parts,
                                max_tokens, temperature, top_p, stop, seed, n=1, stream (chat.py)
    POST /v1/embeddings         contrastive models: texts, or images as data URLs (tasks.py)
    POST /v1/classify           contrastive models: images + labels (+ templates) → probabilities
    POST /v1/search             contrastive models: a text or image → the nearest keys of the index
    POST /v1/caption            generative models: images → captions (describe.py)
    POST /v1/answer             generative models: image + question → a short answer
    GET  /v1/models             the one model served
    GET  /health, /docs

Every error is OpenAI's JSON (errors.py): 400 naming the field, 401 without the API key, 404 for
an unknown model, 413 for a body over the limit, 429 (with Retry-After) when the engine's queue
is full. Requests are micro-batched by `vlkit.generation.BatchingEngine` around the one
generation `Engine`; the official `openai` client works against it (tests/test_serve*.py).
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException

from vlkit.api import ContrastiveModel
from vlkit.generation import BatchingEngine, Busy, RequestError
from vlkit.index import SearchIndex
from vlkit.serve import schemas
from vlkit.serve.chat import chat_completions
from vlkit.serve.describe import answer, caption
from vlkit.serve.errors import ApiError, error_response, unknown_model
from vlkit.serve.kinds import served_kind
from vlkit.serve.middleware import AccessLog, Admission, ApiKey
from vlkit.serve.requests import Served, served
from vlkit.serve.schemas import Limits
from vlkit.serve.tasks import classify, embeddings, search

RETRY_AFTER_S = 1


def create_app(
    model: BatchingEngine | ContrastiveModel,
    name: str,
    limits: Limits | None = None,
    api_key: str | None = None,
    index: SearchIndex | None = None,
) -> FastAPI:
    """The app serving `model` (a generative model's `BatchingEngine`, or a `ContrastiveModel`)
    as `name`; `api_key`: every /v1/ request must carry it; `index`: what /v1/search searches."""
    app = FastAPI(title="vlkit", description=f"OpenAI-compatible API for the vlkit model '{name}'")
    app.state.served = Served(name, served_kind(model), model, limits or Limits(), index)
    app.state.created = int(time.time())
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id:path}", model_card, methods=["GET"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/embeddings", embeddings, methods=["POST"])
    app.add_api_route("/v1/classify", classify, methods=["POST"])
    _task_routes(app)
    _error_handlers(app)
    app.add_middleware(Admission, max_active=app.state.served.limits.max_active, retry_after_s=RETRY_AFTER_S)
    if api_key:
        app.add_middleware(ApiKey, key=api_key)  # before admission: a request without the key takes no place
    app.add_middleware(AccessLog)  # the outermost: refusals are logged too
    return app


def _task_routes(app: FastAPI) -> None:
    """The endpoints whose bodies and replies are pydantic models (their schemas in /docs)."""
    for path, handler, body, response in (
        ("/v1/search", search, schemas.SearchRequest, schemas.SearchResponse),
        ("/v1/caption", caption, schemas.CaptionRequest, schemas.CaptionResponse),
        ("/v1/answer", answer, schemas.AnswerRequest, schemas.AnswerResponse),
    ):
        app.add_api_route(path, handler, methods=["POST"], **schemas.documented(body, response))


def _error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, e: ApiError):
        return error_response(e)

    async def request_error(request: Request, e: RequestError):
        return error_response(ApiError(str(e), e.param))

    async def busy(request: Request, e: Busy):
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        message = f"the server is busy ({e}): retry after {RETRY_AFTER_S} s"
        return error_response(ApiError(message, status=429, kind="rate_limit_error", headers=headers))

    async def http_error(request: Request, e: HTTPException):
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return error_response(ApiError(str(e.detail), status=e.status_code, kind=kind))

    async def server_error(request: Request, e: Exception):
        return error_response(ApiError(f"{type(e).__name__}: {e}", status=500, kind="server_error"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(Busy, busy)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


async def health(request: Request) -> dict:  # async: answered on the event loop, never queued
    return {"status": "ok", "model": served(request).name}


def _card(request: Request) -> dict:
    model = served(request)
    return {
        "id": model.name,
        "object": "model",
        "created": request.app.state.created,
        "owned_by": "vlkit",
        "kind": model.kind,
    }


async def models(request: Request) -> dict:
    return {"object": "list", "data": [_card(request)]}


async def model_card(model_id: str, request: Request) -> dict:
    if model_id != served(request).name:
        raise unknown_model(model_id, served(request).name)
    return _card(request)
