"""What `vlkit serve MODEL` serves, and the error when MODEL is none of them.

    a vlkit run or model folder      generative → chat; contrastive → embeddings and classify
    a transformers dual encoder      embeddings, classify and search (a CLIPModel / SiglipModel
                                     folder, `vlkit export`'s or any local one), as `vlkit.load` reads it
    a transformers causal-LM folder  chat (text only)
    a registry LM name               chat (text only): smollm2-135m, or a hub id in the local cache

What serves each kind is `vlkit.serve.kinds`' table: a generative model is wrapped in a
`BatchingEngine` around its one `Engine`; a contrastive one is served as the `ContrastiveModel`
that `vlkit.load` returns, with the search index `--index` names (`load_index`).
"""

from __future__ import annotations

import json
from pathlib import Path

from vlkit.api import ContrastiveModel, load
from vlkit.generation import BatchingEngine, Engine
from vlkit.index import SearchIndex
from vlkit.models.folders import resolve_model_dir
from vlkit.models.hf_models import ARCHITECTURES, HFContrastiveModel
from vlkit.serve.kinds import SERVED_KINDS, served_kind

# the transformers classes served as dual encoders: those `vlkit.load` wraps as one
DUAL_ENCODER_CLASSES = tuple(a for a, wrapper in ARCHITECTURES.items() if wrapper is HFContrastiveModel)

ACCEPTED = (
    "a vlkit run or model folder (vlkit train writes one), a transformers dual-encoder folder "
    f"({' / '.join(DUAL_ENCODER_CLASSES)}) or causal-LM folder (config.json + weights), or a "
    "registry language model"
)


def load_served(
    model: str, max_batch: int = 8, wait_ms: float = 10.0, max_pending: int | None = 64
) -> BatchingEngine | ContrastiveModel:
    """MODEL → a `BatchingEngine` (generative models, language models) or a `ContrastiveModel`.
    Anything else is a ValueError / FileNotFoundError that says what was found and what is taken."""
    path = Path(model)
    batching = {"max_batch": max_batch, "wait_ms": wait_ms, "max_pending": max_pending}
    if path.is_dir() and _vlkit_folder(path):
        loaded = load(path)
        return SERVED_KINDS[loaded.cfg.kind].wrap(loaded, batching)
    if path.is_dir() and _transformers_architectures(path)[0] in DUAL_ENCODER_CLASSES:
        return load(path)  # its HFContrastiveModel, served as a contrastive model
    if path.is_dir():
        _require_causal_lm_folder(path)
    elif path.exists():
        raise ValueError(f"{model}: a file, not a model; vlkit serve takes {ACCEPTED}")
    elif path.is_absolute() or model.startswith("."):  # a hub id never starts so
        raise ValueError(f"{model}: no such file or folder; vlkit serve takes {ACCEPTED}")
    lm, tokenizer = load_language_model(model)
    return BatchingEngine(Engine(lm, tokenizer), **batching)


def load_index(path: str, served: BatchingEngine | ContrastiveModel) -> SearchIndex:
    """`--index PATH` → the index /v1/search searches: one `vlkit index` built with a model of the
    served one's embedding size (a contrastive model; another kind is a ValueError)."""
    if "/v1/search" not in SERVED_KINDS[served_kind(served)].endpoints:
        raise ValueError(
            f"--index {path}: searching needs a model that embeds images and texts; this one is {served_kind(served)}"
        )
    index = SearchIndex.load(path)
    if index.dim != served.embed_dim:
        raise ValueError(
            f"--index {path}: its embeddings have {index.dim} dimensions, the model's "
            f"{served.embed_dim}: build it with this model (vlkit index MODEL FOLDER --out {path})"
        )
    return index


def _vlkit_folder(path: Path) -> bool:
    try:
        folder = resolve_model_dir(path)
    except FileNotFoundError:
        return False
    return (folder / "config.yaml").is_file()  # a transformers folder has model.safetensors too


def _transformers_architectures(path: Path) -> list[str]:
    """config.json's "architectures" (at least [""]); a folder without one is a ValueError."""
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(
            f"{path}: neither a vlkit run/model folder (no config.yaml and weights, no complete "
            f"checkpoint) nor a transformers folder (no config.json); vlkit serve takes {ACCEPTED}"
        )
    try:
        return json.loads(config.read_text()).get("architectures") or [""]
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{config}: not a valid transformers config ({e})") from e


def _require_causal_lm_folder(path: Path) -> None:
    architectures = [a for a in _transformers_architectures(path) if a]
    if architectures and not any(a.endswith("ForCausalLM") for a in architectures):
        raise ValueError(
            f"{path}: a transformers {', '.join(architectures)} folder; vlkit serve takes {ACCEPTED}. "
            "For a model vlkit exported, serve the vlkit run it was exported from"
        )


def load_language_model(name: str):
    """A registry language model, hub id in the local cache or transformers causal-LM folder → (model,
    tokenizer with a chat template); any load failure is one ValueError line naming it."""
    from vlkit.config import VLMConfig
    from vlkit.models.registry import ModelNotFoundError, build_language_model

    try:
        return build_language_model(name, VLMConfig())
    except (ModelNotFoundError, ValueError):
        raise
    except Exception as e:  # transformers' many load errors (OSError, KeyError, ...): one clear line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{name}: cannot be loaded as a language model ({type(e).__name__}: {first})") from e
