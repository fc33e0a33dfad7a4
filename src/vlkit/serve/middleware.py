"""ASGI middleware: the access log (one line per request), the optional API key, and admission
(at most `max_active` /v1/ requests read, prepared, queued or generated at once: past it a 429
with Retry-After, so memory stays bounded by max_active × the body limit).

    INFO vlkit.serve: POST /v1/chat/completions 200 41.7 ms tokens=37

A handler puts the request's token count in `request.state.tokens`; streamed replies set it
when their last chunk is sent, and the line is written when the response has been sent.
"""

from __future__ import annotations

import hmac
import logging
import time

from vlkit.serve.errors import ApiError, error_response

log = logging.getLogger("vlkit.serve")


class AccessLog:
    """Logs method, path, status, latency in ms and tokens of every HTTP request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500
        state = scope.setdefault("state", {})

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            tokens = state.get("tokens")
            log.info(
                "%s %s %d %.1f ms tokens=%s",
                scope["method"],
                scope["path"],
                status,
                ms,
                "-" if tokens is None else tokens,
            )


class ApiKey:
    """Every /v1/ request needs `Authorization: Bearer KEY` (401 otherwise); /health and /docs are open."""

    def __init__(self, app, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = ApiError(
                    "Missing or incorrect API key: send 'Authorization: Bearer KEY'",
                    status=401,
                    code="invalid_api_key",
                )
                return await error_response(error)(scope, receive, send)
        await self.app(scope, receive, send)


class Admission:
    """At most `max_active` /v1/ requests at once (streamed ones until their last chunk); more → 429."""

    def __init__(self, app, max_active: int, retry_after_s: int = 1):
        self.app, self.max_active, self.retry_after = app, max_active, retry_after_s
        self.active = 0  # changed on the event loop only: no lock needed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        if self.active >= self.max_active:
            error = ApiError(
                f"the server is busy ({self.active} requests in progress): retry after {self.retry_after} s",
                status=429,
                kind="rate_limit_error",
                headers={"Retry-After": str(self.retry_after)},
            )
            return await error_response(error)(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
