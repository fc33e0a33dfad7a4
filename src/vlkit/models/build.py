"""Build a model from config (`cfg.kind`: contrastive dual encoder or generative VLM), and save /
load it as a self-contained folder.

A contrastive model folder holds `config.yaml` (the full resolved run config),
`model.safetensors`, and `image_tower/`, `text_tower/` (backbone configs and tokenizer), so it
reloads offline from itself alone; a generative one is described in `build_vlm`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from vlkit.config import Config, load_config, save_config
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.folders import WEIGHTS, load_weights, save_weights
from vlkit.models.registry import build_image_tower, build_text_tower, save_tower_files

KINDS = ("contrastive", "generative")


def build_model(
    cfg: Config,
    texts: Iterable[str] | None = None,
    saved: Path | None = None,
    *,
    vision: torch.nn.Module | None = None,
    previous: tuple[torch.nn.Module, Config] | None = None,
) -> torch.nn.Module:
    """A new model (pretrained parts loaded, from-scratch ones initialised with `cfg.train.seed`),
    or with `saved`, the structure of a saved model folder (its weights are loaded separately).
    `vision` / `previous`: the trained parts a generative recipe starts from, loaded by the
    caller (see `build_vlm`; `vlkit.train.loop.initial_parts` loads them)."""
    if cfg.kind not in KINDS:
        raise ValueError(f"kind: {cfg.kind!r} is not a model kind; valid: {', '.join(KINDS)}")
    if cfg.kind == "generative":
        from vlkit.models.build_vlm import build_vlm

        return build_vlm(cfg, texts, saved, vision=vision, previous=previous)
    m = cfg.model
    if m.loss not in ("clip", "siglip"):
        raise ValueError(f"model.loss: {m.loss!r} is not a contrastive loss; valid: clip, siglip")
    torch.manual_seed(cfg.train.seed)
    image = build_image_tower(m.image_encoder, m, saved / "image_tower" if saved else None)
    text = build_text_tower(m.text_encoder, m, saved / "text_tower" if saved else None, texts)
    return DualEncoder(m, image, text)


def save_model(model: torch.nn.Module, cfg: Config, folder: Path) -> None:
    """Writes the model folder (not atomic by itself: checkpoints wrap it in a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    external = None
    if cfg.kind == "generative":
        from vlkit.models.build_vlm import frozen_base, save_vlm_files

        save_vlm_files(model, cfg, folder)
        external = frozen_base(model, cfg)  # a frozen pretrained LM is referenced, not copied
    else:
        save_config(cfg, folder / "config.yaml")
        save_tower_files(model.image_tower, folder / "image_tower")
        save_tower_files(model.text_tower, folder / "text_tower")
    save_weights(model, folder, external)


def load_model(folder: str | Path) -> tuple[torch.nn.Module, Config]:
    """Reloads a model folder written by `save_model` (or a checkpoint)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: not a vlkit model folder (needs config.yaml and {WEIGHTS})")
    cfg = load_config(folder / "config.yaml")
    model = build_model(cfg, saved=folder)
    external = load_weights(model, folder / WEIGHTS)
    if external:
        from vlkit.models.build_vlm import fill_frozen_base

        fill_frozen_base(model, cfg, external)
    return model.eval(), cfg
