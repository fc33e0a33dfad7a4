"""What the server does per model kind: the one table the endpoints look their model up in.

    contrastive   a `ContrastiveModel`: /v1/embeddings, /v1/classify, /v1/search
    generative    a `BatchingEngine` around the model's `Engine` (text LMs too): /v1/chat/completions,
                  /v1/caption, /v1/answer
    detector      a `DetectorModel`: no endpoint yet (`vlkit detect` and the Python API)

Keyed by `vlkit.models.kinds`' names (`per_kind` checks the table names every kind). An endpoint of
another kind is OpenAI's 400 saying what the served model is for (`vlkit.api.USES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlkit.api import USES, ContrastiveModel, DetectorModel
from vlkit.generation import BatchingEngine
from vlkit.models.kinds import per_kind
from vlkit.serve.errors import ApiError


@dataclass(frozen=True)
class ServedKind:
    """One kind, as the server sees it."""

    serves: type  # what the app is given (and `Served.model` holds)
    endpoints: tuple[str, ...]
    # (`vlkit.load`'s model, batching options) → what is served
    wrap: Callable[[Any, dict], Any]


def _batched(model: Any, batching: dict) -> BatchingEngine:
    return BatchingEngine(model.engine, **batching)


SERVED_KINDS = per_kind(
    "served kinds",
    {
        "contrastive": ServedKind(
            ContrastiveModel, ("/v1/embeddings", "/v1/classify", "/v1/search"), lambda m, _: m
        ),
        "generative": ServedKind(
            BatchingEngine, ("/v1/chat/completions", "/v1/caption", "/v1/answer"), _batched
        ),
        "detector": ServedKind(DetectorModel, (), lambda m, _: m),  # no endpoint yet: `vlkit detect`
    },
)


def served_kind(model: object) -> str:
    """The kind of what the app is given: a `ContrastiveModel` or a `BatchingEngine`."""
    for name, kind in SERVED_KINDS.items():
        if isinstance(model, kind.serves):
            return name
    takes = ", ".join(f"{k.serves.__name__} ({name})" for name, k in SERVED_KINDS.items())
    raise TypeError(f"vlkit serve: cannot serve a {type(model).__name__}; it serves {takes}")


def require(name: str, kind: str, endpoint: str) -> None:
    """A 400 in OpenAI's shape when `endpoint` is not one the served model's `kind` answers."""
    if endpoint in SERVED_KINDS[kind].endpoints:
        return
    needs = next(k for k, served in SERVED_KINDS.items() if endpoint in served.endpoints)
    raise ApiError(
        f"'{name}' is a {kind} model, {USES[kind]}; {endpoint} needs a {needs} model. "
        f"This server answers {', '.join(SERVED_KINDS[kind].endpoints)}",
        "model",
        code="wrong_model_kind",
    )
