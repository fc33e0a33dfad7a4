"""`vlkit export`, `vlkit serve` and `vlkit demo`: a trained model in another library's format,
behind an API, or in a web page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class UrlFetch:
    """Remote image URLs in requests (refused by default: a server that fetches URLs can be made to
    reach hosts only it can reach).

    Args:
        allow_url_fetch: fetch http(s) image URLs whose host is listed by --allow-host
        allow_host: a host (or host:port) images may be fetched from (repeatable)
        fetch_timeout_s: the most seconds one image may take to fetch
        max_fetch_mb: the largest image fetched
    """

    allow_url_fetch: bool = False
    allow_host: Sequence[str] = ()
    fetch_timeout_s: float = 5.0
    max_fetch_mb: float = 10.0

    def remote(self):
        """As `vlkit.serve.images.RemoteImages`, or None when fetching is off."""
        from vlkit.serve.images import RemoteImages

        if not self.allow_url_fetch:
            if self.allow_host:
                raise ValueError("vlkit serve: --allow-host needs --allow-url-fetch")
            return None
        if not self.allow_host:
            raise ValueError("vlkit serve: --allow-url-fetch needs at least one --allow-host HOST")
        hosts = tuple(h.lower() for h in self.allow_host)
        return RemoteImages(hosts, self.fetch_timeout_s, int(self.max_fetch_mb * 2**20))


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
    ui: bool = False,
    index: str | None = None,
    fetch: UrlFetch = UrlFetch(),
) -> None:
    """OpenAI-compatible server for a model: chat, captions, answers (generative models; chat for
    language models), embeddings, classification and search (contrastive ones); docs at /docs.

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
        ui: the web UI (what `vlkit demo` shows) at /ui too
        index: a search index `vlkit index` built with MODEL, for /v1/search

    Examples:
        vlkit serve runs/llava-scenes --port 8000
        vlkit serve runs/clip-scenes --index my.index --api-key secret
        vlkit serve runs/llava-scenes --ui                 the API, and the web UI at /ui
    """
    import os

    from vlkit.serve.schemas import Limits
    from vlkit.serve.server import load_app, run

    if (model is None) == (lm is None):
        raise ValueError("vlkit serve: give the model once, as MODEL or as --lm")
    model = model or lm
    limits = Limits.from_options(max_tokens, max_body_mb, max_pixels, max_queue, fetch.remote())
    key = api_key or os.environ.get("VLKIT_API_KEY") or None
    app = load_app(model, name, limits, key, max_batch, wait_ms, max_queue, ui, index)
    print(_ready_line(app.state.served.kind, name or model, f"http://{host}:{port}", key, ui), flush=True)
    run(app, host, port)


def _ready_line(kind: str, name: str, url: str, key: str | None, ui: bool) -> str:
    """What `vlkit serve` prints once the model is loaded (and only then)."""
    auth = "; API key required" if key else ""
    ready = f"ready: serving {name} ({kind}) on {url}/v1 (OpenAI-compatible{auth})"
    return ready + (f"; web UI at {url}/ui/" if ui else "")


def demo(
    model: str,
    *,
    name: str | None = None,
    index: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
) -> None:
    """A web page to try a model in the browser (Gradio, works offline): chat about an image and
    captions for generative models; zero-shot classification and text → image search for
    contrastive ones.

    Args:
        model: a vlkit run or model folder (or what `vlkit serve` takes)
        name: the name shown (default: MODEL as given)
        index: a search index written by `vlkit index` (contrastive models; default: search the
            example images)
        host: address to listen on
        port: port to listen on

    Examples:
        vlkit demo runs/llava-scenes                  then open http://127.0.0.1:7860/
        vlkit demo runs/clip-scenes --index my.index
    """
    from vlkit.serve.server import demo_app, run

    app = demo_app(model, name, index)
    print(f"ready: demo of {name or model} on http://{host}:{port}/", flush=True)
    run(app, host, port)
