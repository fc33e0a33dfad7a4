"""Remote image URLs (`vlkit serve --allow-url-fetch --allow-host HOST`) against a local
`http.server` on loopback: an allowed host is fetched; any other host is refused before a
connection is made; redirects are not followed; an image over the size cap and a slow server
are refused; without the flag nothing is fetched."""

import base64
import contextlib
import http.server
import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import vlkit
from vlkit.commands.deploy import UrlFetch
from vlkit.serve.app import create_app
from vlkit.serve.images import RemoteImages
from vlkit.serve.schemas import Limits


def png(size: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


SMALL, LARGE = png(16), png(128)  # ~0.8 KB and ~49 KB (random pixels do not compress)


class Images(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        Images.requests.append(self.path)
        if self.path == "/slow.png":
            time.sleep(1.5)
        if self.path == "/redirect.png":
            self.send_response(302)
            self.send_header("Location", "/small.png")
            self.end_headers()
            return
        body = LARGE if self.path.startswith("/large") else SMALL
        self.send_response(200)
        if self.path != "/large-unsized.png":  # no Content-Length: the cap is met while reading
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server stopped reading
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def clip(tiny_run):
    return vlkit.load(tiny_run)


def client(clip, remote: RemoteImages | None) -> TestClient:
    return TestClient(create_app(clip, "clip", Limits(remote=remote)))


def embed(client: TestClient, url: str):
    return client.post("/v1/embeddings", json={"input": [url]})


def test_an_allowed_host_is_fetched(clip, port):
    fetching = client(clip, RemoteImages(("127.0.0.1",), timeout_s=5, max_bytes=100_000))
    reply = embed(fetching, f"http://127.0.0.1:{port}/small.png")
    assert reply.status_code == 200, reply.text
    inline = embed(fetching, "data:image/png;base64," + base64.b64encode(SMALL).decode()).json()
    np.testing.assert_allclose(
        reply.json()["data"][0]["embedding"], inline["data"][0]["embedding"], atol=1e-6
    )
    assert Images.requests[-1] == "/small.png"


def test_host_port_entries_match_that_port_only(clip, port):
    remote = RemoteImages((f"127.0.0.1:{port + 1}",))
    assert not remote.allows(f"http://127.0.0.1:{port}/small.png")
    assert RemoteImages((f"127.0.0.1:{port}",)).allows(f"http://127.0.0.1:{port}/small.png")


def test_another_host_is_refused_without_a_connection(clip, port):
    fetching = client(clip, RemoteImages(("127.0.0.1",)))
    before = len(Images.requests)
    reply = embed(fetching, f"http://localhost:{port}/small.png")  # the same server, by another name
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "input[0]"
    assert "'localhost:" in reply.json()["error"]["message"] and "not one this server fetches" in reply.text
    assert len(Images.requests) == before  # refused before connecting


def test_redirects_are_not_followed(clip, port):
    reply = embed(client(clip, RemoteImages(("127.0.0.1",))), f"http://127.0.0.1:{port}/redirect.png")
    assert reply.status_code == 400 and "HTTP 302" in reply.json()["error"]["message"]
    assert Images.requests[-1] == "/redirect.png"  # the target was never asked for


@pytest.mark.parametrize("path", ["/large.png", "/large-unsized.png"])
def test_an_image_over_the_cap_is_refused(clip, port, path):
    capped = client(clip, RemoteImages(("127.0.0.1",), max_bytes=10_000))
    reply = embed(capped, f"http://127.0.0.1:{port}{path}")
    assert reply.status_code == 400 and "over this server's limit of 10000 bytes" in reply.text
    assert embed(capped, f"http://127.0.0.1:{port}/small.png").status_code == 200


def test_a_slow_server_is_refused_after_the_timeout(clip, port):
    start = time.monotonic()
    reply = embed(
        client(clip, RemoteImages(("127.0.0.1",), timeout_s=0.3)), f"http://127.0.0.1:{port}/slow.png"
    )
    assert reply.status_code == 400 and "took over 0.3 s" in reply.json()["error"]["message"]
    assert time.monotonic() - start < 1.4  # not the server's 1.5 s


def test_without_the_flag_nothing_is_fetched(clip, port):
    before = len(Images.requests)
    reply = embed(client(clip, None), f"http://127.0.0.1:{port}/small.png")
    assert reply.status_code == 400 and "not fetched by this server" in reply.text
    assert len(Images.requests) == before


def test_the_options_need_each_other():
    assert UrlFetch().remote() is None
    with pytest.raises(ValueError, match="needs at least one --allow-host"):
        UrlFetch(allow_url_fetch=True).remote()
    with pytest.raises(ValueError, match="needs --allow-url-fetch"):
        UrlFetch(allow_host=("example.com",)).remote()
    remote = UrlFetch(True, ("Images.Example",), 2.0, 1.0).remote()
    assert remote == RemoteImages(("images.example",), 2.0, 2**20)
