"""OpenAI's error JSON: every refusal the server gives has this one shape.

{"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A request refused with `status`; `param` names the field, `code` OpenAI's code."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message, self.param, self.status, self.kind, self.code = message, param, status, kind, code
        self.headers = headers or {}


def error_body(message: str, param: str | None, kind: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(e: ApiError) -> JSONResponse:
    body = error_body(e.message, e.param, e.kind, e.code)
    return JSONResponse(body, status_code=e.status, headers=e.headers)


def unknown_model(name: object, served: str) -> ApiError:
    return ApiError(
        f"The model '{name}' does not exist: this server serves '{served}'",
        "model",
        status=404,
        code="model_not_found",
    )
