"""Contrastive models' endpoints: POST /v1/embeddings (OpenAI's shape) and POST /v1/classify.

    /v1/embeddings  {"input": ["a red circle", ...]} or {"input": ["data:image/png;base64,..."]}
                    (encoding_format "float", or "base64" as the openai client asks by default)
                    → {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [...]}], ...}
    /v1/classify    {"images": ["data:..."], "labels": ["red circle", "blue star"], "templates": ["a {}."]}
                    → {"object": "classification", "labels": [...], "data": [{"index": 0, "label": ...,
                       "probs": [...]}]}
    /v1/search      {"query": "a red circle" or "data:...", "k": 5}, against the index the server
                    was started with (`vlkit serve MODEL --index PATH`, built by `vlkit index`)
                    → {"object": "search.result", "query": "text", "data": [{"key": path, "score": ...}]}

Decoding and the forward pass run in a worker thread, one request at a time (the model is shared).
"""

from __future__ import annotations

import base64
import threading

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from vlkit.serve.errors import ApiError
from vlkit.serve.requests import Served, parse_json, read_body, served
from vlkit.serve.schemas import classify_request, embeddings_request, search_request

MODEL_LOCK = threading.Lock()  # one forward at a time: the API and the UI share the model


def _embed(model: Served, raw: bytes) -> tuple[list, int]:
    """(In a worker thread.) → (each embedding as floats or base64, text tokens read)."""
    body = parse_json(raw, model)
    encoder = model.require("/v1/embeddings")
    inputs = embeddings_request(body, model.limits)
    tokens = 0
    with MODEL_LOCK:
        if "texts" in inputs:
            tokens = encoder.count_tokens(inputs["texts"])
            vectors = encoder.embed_texts(inputs["texts"])  # (N, E)
        else:
            vectors = encoder.embed_images(inputs["images"])  # (N, E)
    if inputs["base64"]:
        little = vectors.astype("<f4")
        return [base64.b64encode(v.tobytes()).decode() for v in little], tokens
    return vectors.tolist(), tokens


async def embeddings(request: Request) -> dict:
    model = served(request)
    raw = await read_body(request, model.limits.max_body_bytes)
    vectors, tokens = await run_in_threadpool(_embed, model, raw)
    request.state.tokens = tokens
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _classify(model: Served, raw: bytes):
    body = parse_json(raw, model)
    encoder = model.require("/v1/classify")
    inputs = classify_request(body, model.limits)
    with MODEL_LOCK:
        return encoder.classify(inputs["images"], inputs["labels"], inputs["templates"])


async def classify(request: Request) -> dict:
    model = served(request)
    raw = await read_body(request, model.limits.max_body_bytes)
    result = await run_in_threadpool(_classify, model, raw)
    rows = [
        {"index": i, "label": label, "probs": [float(p) for p in probs]}
        for i, (label, probs) in enumerate(zip(result.top, result.probs))
    ]
    return {"object": "classification", "model": model.name, "labels": result.labels, "data": rows}


def _search(model: Served, raw: bytes) -> tuple[str, list[tuple[str, float]]]:
    """(In a worker thread.) → (what the query was read as, the index's best (key, score)s)."""
    body = parse_json(raw, model)
    encoder = model.require("/v1/search")
    if model.index is None:
        raise ApiError(
            f"'{model.name}' is served without a search index: start the server with "
            "`vlkit serve MODEL --index PATH` (a folder `vlkit index` wrote)",
            code="no_index",
        )
    query = search_request(body, model.limits)
    with MODEL_LOCK:
        if "text" in query:
            vectors = encoder.embed_texts([query["text"]])  # (1, E)
        else:
            vectors = encoder.embed_images([query["image"]])  # (1, E)
    return ("text" if "text" in query else "image"), model.index.search(vectors, query["k"])[0]


async def search(request: Request) -> dict:
    model = served(request)
    raw = await read_body(request, model.limits.max_body_bytes)
    kind, hits = await run_in_threadpool(_search, model, raw)
    data = [{"key": key, "score": float(score)} for key, score in hits]
    return {"object": "search.result", "model": model.name, "query": kind, "data": data}
