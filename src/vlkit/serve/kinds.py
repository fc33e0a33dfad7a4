"""What the server does per model kind: the one table the endpoints look their model up in.

    contrastive   a `ContrastiveModel`, or a transformers dual encoder's `HFContrastiveModel` (a
                  CLIPModel / SiglipModel folder): /v1/embeddings, /v1/classify, /v1/search
    generative    a `BatchingEngine` around the model's `Engine` (text LMs too): /v1/chat/completions,
                  /v1/caption, /v1/answer
    training-free a `TrainingFreeModel` (a `ContrastiveModel`): the contrastive endpoints
    detector      a `DetectorModel`: not served yet; `vlkit serve` refuses it (`vlkit detect` and the
                  Python API)
    segmenter     a `SegmenterModel`: not served yet either (`vlkit segment` and the Python API)
    fusion        a `FusionModel`: not served yet; refused the same way (the Python API, `vlkit eval`)

Keyed by `vlkit.models.kinds`' names (`per_kind` checks the table names every kind). An endpoint of
another kind is OpenAI's 400 saying what the served model is for (`vlkit.api.USES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlkit.api import USES, ContrastiveModel, DetectorModel, FusionModel, SegmenterModel, TrainingFreeModel
from vlkit.generation import BatchingEngine
from vlkit.models.hf_models import HFContrastiveModel
from vlkit.models.kinds import per_kind
from vlkit.serve.errors import ApiError


@dataclass(frozen=True)
class ServedKind:
    """One kind, as the server sees it."""

    serves: tuple[type, ...]  # what the app is given (and `Served.model` holds)
    endpoints: tuple[str, ...]
    # (`vlkit.load`'s model, batching options) → what is served
    wrap: Callable[[Any, dict], Any]


def _batched(model: Any, batching: dict) -> BatchingEngine:
    return BatchingEngine(model.engine, **batching)


# what embeds images and texts: vlkit's dual encoders (training-free ones are a subclass) and a
# transformers CLIPModel / SiglipModel folder through its `vlkit.load` wrapper
DUAL_ENCODERS = (ContrastiveModel, HFContrastiveModel)
EMBEDDING_ENDPOINTS = ("/v1/embeddings", "/v1/classify", "/v1/search")


# a kind with no endpoint → (its models, what to use instead)
UNSERVED_USE = {
    "detector": ("detectors", "use `vlkit detect` or vlkit.load(...).detect / .ground"),
    "segmenter": ("segmenters", "use `vlkit segment` or vlkit.load(...).segment"),
    "fusion": ("fusion encoders", "use vlkit.load(...).match / .fill_mask, or `vlkit eval`"),
}


def _not_served_yet(model: Any, batching: dict) -> Any:
    """A kind with no endpoint: `vlkit serve` refuses it, saying what does use it."""
    kind = model.cfg.kind
    plural, use = UNSERVED_USE[kind]
    raise ValueError(
        f"vlkit serve: {model.path or 'this model'} is a {kind} model, {USES[kind]}; "
        f"{plural} are not served yet (no endpoint answers them): {use}"
    )


SERVED_KINDS = per_kind(
    "served kinds",
    {
        "contrastive": ServedKind(DUAL_ENCODERS, EMBEDDING_ENDPOINTS, lambda m, _: m),
        "generative": ServedKind(
            (BatchingEngine,), ("/v1/chat/completions", "/v1/caption", "/v1/answer"), _batched
        ),
        # ASIF / ConSE: a ContrastiveModel, served as one
        "training-free": ServedKind((TrainingFreeModel,), EMBEDDING_ENDPOINTS, lambda m, _: m),
        "detector": ServedKind((DetectorModel,), (), _not_served_yet),  # no endpoint yet: `vlkit detect`
        "segmenter": ServedKind((SegmenterModel,), (), _not_served_yet),  # no endpoint yet: `vlkit segment`
        "fusion": ServedKind((FusionModel,), (), _not_served_yet),  # no endpoint yet: the Python API
    },
)


def served_kind(model: object) -> str:
    """The kind of what the app is given: a dual encoder (a `TrainingFreeModel` is a
    `ContrastiveModel` subclass: the most specific class wins) or a `BatchingEngine`."""
    mro = type(model).__mro__

    def distance(name: str) -> int:  # how far up the model's classes its kind's class sits
        return min((mro.index(c) for c in SERVED_KINDS[name].serves if c in mro), default=len(mro))

    matches = [name for name, kind in SERVED_KINDS.items() if isinstance(model, kind.serves)]
    if matches:
        return min(matches, key=distance)
    takes = ", ".join(
        f"{' / '.join(c.__name__ for c in k.serves)} ({name})" for name, k in SERVED_KINDS.items()
    )
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
