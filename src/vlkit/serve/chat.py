"""POST /v1/chat/completions: OpenAI's chat completions, with images, streamed or whole.

Everything slow runs off the event loop: the JSON is parsed, images decoded and the prompt
tokenised in a worker thread, and generation runs in the `BatchingEngine`'s thread; so other
requests (and /health) are answered while a long one is read or generated. With `stream: true`
each piece of text is sent as a server-sent event as soon as the engine has it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import Future

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from vlkit.generation import Completion
from vlkit.serve.errors import ApiError
from vlkit.serve.requests import Served, parse_json, read_body, served
from vlkit.serve.schemas import chat_request

DONE = object()  # the end of a stream's pieces


def usage(c: Completion) -> dict:
    total = c.prompt_tokens + c.completion_tokens
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "total_tokens": total}


def start(model: Served, raw: bytes, on_text) -> tuple[dict, Future]:
    """(In a worker thread.) Body → validated request, submitted: (the request, its Future)."""
    body = parse_json(raw, model)
    engine = model.require("/v1/chat/completions")
    chat = chat_request(body, model.limits)
    on_text = on_text if chat["stream"] else None
    future = engine.submit(chat["messages"], chat["decoding"], on_text, fit=not chat["max_tokens_set"])
    return chat, future


async def chat_completions(request: Request):
    model = served(request)
    raw = await read_body(request, model.limits.max_body_bytes)
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

    def on_text(piece: str) -> None:  # called in the generation thread
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    chat, future = await run_in_threadpool(start, model, raw, on_text)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    base = {"id": rid, "created": created, "model": model.name}
    if chat["stream"]:
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, DONE))
        events = _events(request, base, pieces, future, chat["include_usage"])
        return StreamingResponse(events, media_type="text/event-stream")
    try:
        result: Completion = await asyncio.wrap_future(future)
    except Exception as e:  # a failed generate fails its requests, not the server
        raise ApiError(f"generation failed: {type(e).__name__}: {e}", status=500, kind="server_error") from e
    request.state.tokens = result.prompt_tokens + result.completion_tokens
    message = {"role": "assistant", "content": result.text}
    return {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
        "usage": usage(result),
    }


def _chunk(base: dict, delta: dict, finish: str | None = None, **extra) -> str:
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
    body = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
    return f"data: {json.dumps(body)}\n\n"


async def _events(request: Request, base: dict, pieces: asyncio.Queue, future: Future, include_usage: bool):
    """The role, then each piece as generated, then the finish reason (and usage), then [DONE]."""
    yield _chunk(base, {"role": "assistant", "content": ""})
    while (piece := await pieces.get()) is not DONE:
        yield _chunk(base, {"content": piece})
    try:
        result: Completion = future.result()
    except Exception as e:  # the status line is sent already: the error goes in the stream
        error = {"message": f"generation failed: {type(e).__name__}: {e}", "type": "server_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
        return
    request.state.tokens = result.prompt_tokens + result.completion_tokens
    yield _chunk(base, {}, result.finish_reason)
    if include_usage:
        yield _chunk(base, None, usage=usage(result))
    yield "data: [DONE]\n\n"
