"""Running the app: `serve` (what `vlkit serve` calls) and `BackgroundServer` (tests, benchmarks)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from vlkit.serve.app import create_app
from vlkit.serve.loading import load_index, load_served
from vlkit.serve.schemas import Limits


def load_app(
    model: str,
    name: str | None = None,
    limits: Limits | None = None,
    api_key: str | None = None,
    max_batch: int = 8,
    wait_ms: float = 10.0,
    max_queue: int | None = 64,
    ui: bool = False,
    index: str | None = None,
) -> FastAPI:
    """MODEL (see `vlkit.serve.loading`) → the app serving it, the model (and `index`) loaded;
    ui: the web UI (`vlkit.serve.ui`) at /ui too."""
    loaded = load_served(model, max_batch, wait_ms, max_queue)
    searched = load_index(index, loaded) if index else None
    app = create_app(loaded, name or model, limits, api_key, searched)
    if ui:
        from vlkit.serve.ui import mount_ui  # gradio takes seconds to import: only when asked

        app = mount_ui(app, loaded, name or model, "/ui", folder=model, index=index)
    return app


def demo_app(model: str, name: str | None = None, index: str | None = None) -> FastAPI:
    """MODEL → an app with only the web UI, at / (`vlkit demo`)."""
    from vlkit.serve.ui import mount_ui

    loaded = load_served(model)
    app = FastAPI(title="vlkit demo", docs_url=None, redoc_url=None, openapi_url=None)
    return mount_ui(app, loaded, name or model, "/", folder=model, index=index)


def run(app: FastAPI, host: str, port: int) -> None:
    """Serves until stopped; the access log goes to stderr through `logging`."""
    logging.getLogger("vlkit.serve").setLevel(logging.INFO)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """uvicorn in a thread (tests, benchmarks): `with BackgroundServer(app) as url: ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        port = port or free_port(host)
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
