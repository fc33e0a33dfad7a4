"""The model kinds: the one table of what differs between a dual encoder and a generative VLM.

    contrastive   image tower + text tower + projections into one space (CLIP, SigLIP, LiT)
    generative    vision tower → connector → causal LM (LLaVA, Q-Former, Flamingo, ClipCap)
    detector      a dual encoder's patch tokens → boxes + class embeddings vs text queries (OWL-ViT)
    segmenter     a decoder over a frozen dual encoder's layer activations, FiLM-conditioned on
                  a prompt's text embedding → a mask (CLIPSeg)
    training-free two frozen pretrained encoders joined without training (ASIF, ConSE): a dual
                  encoder's abilities, nothing to train, only the method's small tensors stored
    fusion        one transformer over word tokens + image patches (ViLT; FLAVA's contrastive loss
                  as an option): image-text matching and masked language modelling

`cfg.kind` names an entry of `KINDS`; code that does something per kind looks the kind up, never
branches on its name. This layer's entry holds what the models floor knows (build, save, load,
the tokenizer's texts, what its user-facing model can do). Floors above keep their own per-kind
table keyed by the same names (`per_kind` checks it names every kind and no other): the
objective (`vlkit.train.loop.OBJECTIVES`), the training-time evaluator
(`vlkit.eval.during_training.EVALUATORS`), the harness's task runners (`vlkit.eval.harness`),
the user-facing wrapper (`vlkit.api.WRAPPERS`) and the export (`vlkit.export.EXPORTS`). A new
kind is one entry here and one in each of those tables; the config's sections per kind are
`vlkit.config`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from vlkit.config import Config
from vlkit.data import iter_captions, iter_texts
from vlkit.data.conversations import CAPTION_PROMPT, SHORT_ANSWER
from vlkit.models import build_dual, build_training_free, detector, fusion, segmenter

TOKENIZER_SAMPLES = 2_000  # samples whose texts train a from-scratch tokenizer (scenes: 10k captions)

T = TypeVar("T")


@dataclass(frozen=True)
class ModelKind:
    """One model kind, as the models floor sees it."""

    name: str
    summary: str
    # (cfg, texts, saved folder or None, **trained parts) → the model (see `build.build_model`)
    build: Callable[..., torch.nn.Module]
    # (model, cfg, folder) → writes everything but the weights; returns the external-weights
    # record ({"base", "keys"}) of weights referenced by name instead of stored, or None
    save_files: Callable[[torch.nn.Module, Config, Path], dict | None]
    # (model, cfg, keys) → fills the external weights a saved folder left out
    fill_external: Callable[[torch.nn.Module, Config, list[str]], None]
    # (cfg, load: path → (model, cfg)) → the trained parts a recipe starts from, as build's keywords
    initial_parts: Callable[[Config, Callable[[str], tuple[torch.nn.Module, Config]]], dict]
    # (dataset) → the texts a from-scratch tokenizer is trained on
    tokenizer_texts: Callable[[Any], list[str]]
    # methods of its user-facing model (`vlkit.load`); how evaluation tells any model's kind
    # (transformers' models included, which have no vlkit config)
    abilities: tuple[str, ...]
    # whether `vlkit train` can train it (a training-free model is built by its own command)
    trainable: bool = True


def _captions(dataset: Any) -> list[str]:
    return iter_captions(dataset, TOKENIZER_SAMPLES)


def _chat_texts(dataset: Any) -> list[str]:
    """Every text of the data, plus the fixed prompts and the chat roles."""
    return (
        iter_texts(dataset, TOKENIZER_SAMPLES) + [CAPTION_PROMPT, SHORT_ANSWER, "system user assistant"] * 50
    )


def _no_texts(dataset: Any) -> list[str]:
    """A training-free model has pretrained tokenizers only: nothing to learn from the data."""
    return []


# The generative builders are imported when first called: `vlkit classify` never loads the VLM code.
def _build_vlm(cfg: Config, texts: Iterable[str] | None, saved: Path | None, **parts: Any) -> torch.nn.Module:
    from vlkit.models.build_vlm import build_vlm

    return build_vlm(cfg, texts, saved, **parts)


def _save_vlm(model: torch.nn.Module, cfg: Config, folder: Path) -> dict | None:
    from vlkit.models.build_vlm import save_vlm_folder

    return save_vlm_folder(model, cfg, folder)


def _fill_frozen_base(model: torch.nn.Module, cfg: Config, keys: list[str]) -> None:
    from vlkit.models.build_vlm import fill_frozen_base

    fill_frozen_base(model, cfg, keys)


def _vlm_parts(cfg: Config, load: Callable[[str], tuple[torch.nn.Module, Config]]) -> dict:
    from vlkit.models.build_vlm import initial_parts

    return initial_parts(cfg, load)


# name → kind: the one table.
KINDS: dict[str, ModelKind] = {
    "contrastive": ModelKind(
        name="contrastive",
        summary="dual encoder: image tower + text tower + projections (`model`)",
        build=build_dual.build_dual_encoder,
        save_files=build_dual.save_dual_files,
        fill_external=build_dual.no_external,
        initial_parts=build_dual.dual_parts,
        tokenizer_texts=_captions,
        abilities=("embed_images", "embed_texts", "label_embeddings"),
    ),
    "generative": ModelKind(
        name="generative",
        summary="vision tower (`model`) → connector → causal LM (`vlm`)",
        build=_build_vlm,
        save_files=_save_vlm,
        fill_external=_fill_frozen_base,
        initial_parts=_vlm_parts,
        tokenizer_texts=_chat_texts,
        # answering is what makes a VLM; captioning is a task extra (a VQA classifier cannot)
        abilities=("answer",),
    ),
    "detector": ModelKind(
        name="detector",
        summary="open-vocabulary detector: a dual encoder (`model`) + box and class heads (`detector`)",
        build=detector.build_detector,
        save_files=detector.save_detector_files,
        fill_external=build_dual.no_external,
        initial_parts=detector.clip_parts,
        tokenizer_texts=_captions,
        abilities=("detect", "ground"),
    ),
    "segmenter": ModelKind(
        name="segmenter",
        summary="text-prompted segmenter: a dual encoder (`model`) + a FiLM-conditioned mask decoder (`segmenter`)",
        build=segmenter.build_segmenter,
        save_files=segmenter.save_segmenter_files,
        fill_external=build_dual.no_external,
        initial_parts=segmenter.clip_parts,
        tokenizer_texts=_captions,
        abilities=("segment", "mask_probabilities"),
    ),
    "training-free": ModelKind(
        name="training-free",
        summary="frozen pretrained encoders joined without training: ASIF anchors, ConSE (`model`)",
        build=build_training_free.build_training_free,
        save_files=build_training_free.save_training_free_files,
        fill_external=build_training_free.towers_are_built,
        initial_parts=build_dual.no_parts,
        tokenizer_texts=_no_texts,
        # a dual encoder's abilities and its own: everything that takes a contrastive model takes it
        abilities=("embed_images", "embed_texts", "label_embeddings", "method"),
        trainable=False,
    ),
    "fusion": ModelKind(
        name="fusion",
        summary="fusion encoder: one transformer over words + patches, ITM and MLM heads (`model`)",
        build=fusion.build_fusion,
        save_files=fusion.save_fusion_files,
        fill_external=build_dual.no_external,
        initial_parts=fusion.fusion_parts,
        tokenizer_texts=_captions,
        abilities=("match", "fill_mask"),
    ),
}


def model_kind(name: str) -> ModelKind:
    """The kind `name` (`cfg.kind`); a ValueError naming the valid kinds otherwise."""
    if name not in KINDS:
        raise ValueError(f"kind: {name!r} is not a model kind; valid: {', '.join(KINDS)}")
    return KINDS[name]


def per_kind(what: str, table: Mapping[str, T]) -> dict[str, T]:
    """A floor's own per-kind table (`what` it holds), checked to name every kind and no other:
    a kind added to `KINDS` and forgotten in a table fails at import, not at its first use."""
    missing, unknown = set(KINDS) - set(table), set(table) - set(KINDS)
    if missing or unknown:
        raise ValueError(
            f"{what}: the per-kind table must name every model kind ({', '.join(KINDS)}); "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    return dict(table)


def kind_of(model: object) -> str:
    """The kind of a user-facing model (vlkit's or a transformers wrapper), by what it can do: the
    kind with the most abilities it has all of (a training-free model can do what a dual encoder
    can, and more)."""
    able = [k for k in KINDS.values() if all(hasattr(model, a) for a in k.abilities)]
    if able:
        return max(able, key=lambda k: len(k.abilities)).name
    needs = "; ".join(f"{', '.join(k.abilities)} ({k.name})" for k in KINDS.values())
    raise ValueError(f"{type(model).__name__}: not an evaluable model; needs {needs}")


def can_stand_in(kind: str, needed: str) -> bool:
    """Whether a model of `kind` does everything a `needed` one does (its abilities include those)."""
    return set(model_kind(needed).abilities) <= set(model_kind(kind).abilities)


def texts_for(cfg: Config, dataset: Iterable[Any]) -> list[str]:
    """What a from-scratch tokenizer of this config's kind is trained on."""
    return model_kind(cfg.kind).tokenizer_texts(dataset)
