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
    *, lm: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8, wait_ms: float = 10.0
) -> None:
    """OpenAI-compatible chat-completions server for a language model.

    Args:
        lm: registry language model (smollm2-135m) or a transformers folder
        host: address to listen on
        port: port to listen on
        max_batch: concurrent requests generated together
        wait_ms: how long a batch waits to fill
    """
    from vlkit.serve.app import serve as serve_app

    print(f"serving {lm} on http://{host}:{port}/v1 (OpenAI-compatible)")
    serve_app(lm, host, port, max_batch, wait_ms)
