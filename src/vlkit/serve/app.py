"""An OpenAI-compatible server for vlkit language models: `vlkit serve --lm NAME`.

    POST /v1/chat/completions   messages, max_tokens, temperature, top_p, stop, n=1, stream
    GET  /v1/models             the one model served
    GET  /health

Text only for now. Bad input gets OpenAI's error JSON with status 400 and the field in
`param`. The request's fields become a `Decoding`; requests are micro-batched by
`vlkit.generation.BatchingEngine` around the one generation `Engine`. The official `openai` client works
against it (tests/test_serve.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlkit.decoding import Decoding
from vlkit.generation import BatchingEngine, Completion, Engine, RequestError

ROLES = ("system", "user", "assistant")


def _error(
    message: str, param: str | None, status: int = 400, kind: str = "invalid_request_error"
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status
    )


def _number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
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


def parse_request(body) -> dict:
    """Validates a chat-completions body -> keyword arguments for `BatchingEngine.submit`
    (the messages, and the OpenAI fields as a `Decoding`)."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
            raise RequestError(f"messages[{i}] needs 'role' in {ROLES} and 'content'", f"messages[{i}]")
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported", "n")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of at most 4 strings", "stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    decoding = Decoding.from_openai(
        max_tokens=int(_number({"max_tokens": max_tokens}, "max_tokens", 256, 1, 8192, integer=True)),
        temperature=float(_number(body, "temperature", 0.0, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", 1.0, 1e-6, 1.0)),
        stop=stop,
    )
    return {"messages": messages, "decoding": decoding}


def create_app(engine: BatchingEngine, model_name: str) -> FastAPI:
    app = FastAPI(title="vlkit", description="OpenAI-compatible chat completions for vlkit language models")
    created = int(time.time())

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "vlkit"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return _error(f"the request body is not valid JSON: {e}", None)
        try:
            args = parse_request(body)
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise RequestError("'stream' must be true or false", "stream")
            future = engine.submit(**args)
        except RequestError as e:
            return _error(str(e), e.param)
        result: Completion = await asyncio.wrap_future(future)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if stream:
            return StreamingResponse(_sse(rid, model_name, result), media_type="text/event-stream")
        return {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        }

    return app


def _sse(rid: str, model: str, result: Completion):
    """The finished completion as OpenAI stream chunks (role, content, finish) + [DONE]."""
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    for delta, finish in (
        ({"role": "assistant"}, None),
        ({"content": result.text}, None),
        ({}, result.finish_reason),
    ):
        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]})}\n\n"
    yield "data: [DONE]\n\n"


def load_app(lm: str, max_batch: int = 8, wait_ms: float = 10.0) -> tuple[FastAPI, BatchingEngine]:
    """A registry language model name (or folder) -> the app and its engine."""
    from vlkit.config import VLMConfig
    from vlkit.models.registry import build_language_model

    model, tokenizer = build_language_model(lm, VLMConfig())
    engine = BatchingEngine(Engine(model, tokenizer), max_batch=max_batch, wait_ms=wait_ms)
    return create_app(engine, lm), engine


def serve(
    lm: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8, wait_ms: float = 10.0
) -> None:
    import uvicorn

    app, _ = load_app(lm, max_batch, wait_ms)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class BackgroundServer:
    """uvicorn in a thread (tests, benchmarks): `with BackgroundServer(app) as url: ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}/v1"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server at {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
