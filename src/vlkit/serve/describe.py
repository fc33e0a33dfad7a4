"""Generative models' task endpoints: POST /v1/caption and POST /v1/answer.

    /v1/caption  {"images": ["data:..."], "prompt": optional, "max_tokens": optional}
                 → {"object": "list", "data": [{"index": 0, "caption": "..."}], "usage": {...}}
    /v1/answer   {"image": "data:...", "question": "What color is the circle?"}
                 → {"object": "answer", "answer": "red", "usage": {...}}

The prompts are `vlkit caption`'s and `vlkit ask`'s (`GenerativeModel.caption` / `.answer`), so
the server answers what those commands print. Each image is one request to the `BatchingEngine`,
batched with whatever else is being generated; bodies are read and images decoded off the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from vlkit.generation import Completion
from vlkit.serve.errors import ApiError
from vlkit.serve.requests import Served, parse_json, read_body, served
from vlkit.serve.schemas import answer_request, caption_request


def _submit(model: Served, raw: bytes, endpoint: str) -> list[Future]:
    """(In a worker thread.) Body → its conversations submitted: their Futures."""
    body = parse_json(raw, model)
    engine = model.require(endpoint)
    if endpoint == "/v1/caption":
        inputs = caption_request(body, model.limits)
        conversations = inputs["conversations"]
    else:
        inputs = answer_request(body, model.limits)
        conversations = [inputs["conversation"]]
    return [engine.submit(c, inputs["decoding"]) for c in conversations]


async def _completed(request: Request, endpoint: str) -> tuple[Served, list[Completion], dict]:
    model = served(request)
    raw = await read_body(request, model.limits.max_body_bytes)
    futures = await run_in_threadpool(_submit, model, raw, endpoint)
    try:
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    except Exception as e:  # a failed generate fails its requests, not the server
        raise ApiError(f"generation failed: {type(e).__name__}: {e}", status=500, kind="server_error") from e
    prompt = sum(c.prompt_tokens for c in results)
    completion = sum(c.completion_tokens for c in results)
    request.state.tokens = prompt + completion
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return model, results, usage


async def caption(request: Request) -> dict:
    model, results, usage = await _completed(request, "/v1/caption")
    data = [{"index": i, "caption": c.text.strip()} for i, c in enumerate(results)]
    return {"object": "list", "model": model.name, "data": data, "usage": usage}


async def answer(request: Request) -> dict:
    model, results, usage = await _completed(request, "/v1/answer")
    return {"object": "answer", "model": model.name, "answer": results[0].text.strip(), "usage": usage}
