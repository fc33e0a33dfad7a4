"""`vlkit export` and `vlkit serve`: a trained model in another library's format, or behind an API."""

from __future__ import annotations

from typing import Literal


def export(model: str, *, format: Literal["transformers", "llava"] | None = None, out: str) -> None:
    """Export to another library's format.

    Args:
        model: model or run folder
        format: transformers (CLIPModel, dual encoders) or llava (LlavaForConditionalGeneration,
            generative models); default: the one for the model's kind
        out: output folder
    """
    from vlkit import export as exporting

    print(f"exported to {exporting.export(model, out, format)}")


def serve(
    model: str | None = None,
    *,
    lm: str | None = None,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_batch: int = 8,
    wait_ms: float = 10.0,
    max_queue: int = 64,
    max_tokens: int = 1024,
    max_body_mb: float = 20.0,
    max_pixels: int = 4096 * 4096,
) -> None:
    """OpenAI-compatible server for a model: chat (with images) for generative models and
    language models, embeddings and classification for contrastive ones; docs at /docs.

    Args:
        model: a vlkit run or model folder, a transformers causal-LM folder, or a registry
            language model (smollm2-135m)
        lm: the same as MODEL (the older spelling)
        name: the model name clients send (default: MODEL as given)
        host: address to listen on
        port: port to listen on
        api_key: every /v1/ request must send 'Authorization: Bearer KEY' (default: the
            VLKIT_API_KEY environment variable; neither: no key)
        max_batch: concurrent requests generated together
        wait_ms: how long a batch waits to fill
        max_queue: requests in progress at once (read, waiting or generating); more get 429
            with Retry-After
        max_tokens: the most max_tokens a request may ask for
        max_body_mb: the largest request body (413 past it)
        max_pixels: the largest image, width x height (400 past it)

    Examples:
        vlkit serve runs/llava-scenes --port 8000
        vlkit serve runs/clip-scenes --api-key secret
    """
    import os

    from vlkit.serve.schemas import Limits
    from vlkit.serve.server import load_app, run

    if (model is None) == (lm is None):
        raise ValueError("vlkit serve: give the model once, as MODEL or as --lm")
    model = model or lm
    limits = Limits.from_options(max_tokens, max_body_mb, max_pixels, max_queue)
    key = api_key or os.environ.get("VLKIT_API_KEY") or None
    app = load_app(model, name, limits, key, max_batch, wait_ms, max_queue)
    kind = app.state.served.kind
    auth = "; API key required" if key else ""
    print(
        f"ready: serving {name or model} ({kind}) on http://{host}:{port}/v1 (OpenAI-compatible{auth})",
        flush=True,
    )
    run(app, host, port)
