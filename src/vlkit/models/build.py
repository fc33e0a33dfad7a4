"""Build a dual encoder from config, and save / load it as a self-contained folder.

A model folder holds `config.yaml` (the full resolved run config), `model.safetensors`, and
`image_tower/`, `text_tower/` (backbone configs and tokenizer), so it reloads offline from
itself alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlkit.config import Config, load_config, save_config
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.registry import build_image_tower, build_text_tower, save_tower_files

WEIGHTS = "model.safetensors"


def build_model(cfg: Config, texts: Iterable[str] | None = None, saved: Path | None = None) -> DualEncoder:
    """A new model (pretrained towers loaded, from-scratch ones initialised with `cfg.train.seed`)."""
    m = cfg.model
    if m.loss not in ("clip", "siglip"):
        raise ValueError(f"model.loss: {m.loss!r} is not a contrastive loss; valid: clip, siglip")
    torch.manual_seed(cfg.train.seed)
    image = build_image_tower(m.image_encoder, m, saved / "image_tower" if saved else None)
    text = build_text_tower(m.text_encoder, m, saved / "text_tower" if saved else None, texts)
    return DualEncoder(m, image, text)


def save_model(model: DualEncoder, cfg: Config, folder: Path) -> None:
    """Writes the model folder (not atomic by itself: checkpoints wrap it in a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    save_tower_files(model.image_tower, folder / "image_tower")
    save_tower_files(model.text_tower, folder / "text_tower")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / WEIGHTS)


def load_model(folder: str | Path) -> tuple[DualEncoder, Config]:
    """Reloads a model folder written by `save_model` (or a checkpoint)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: not a vlkit model folder (needs config.yaml and {WEIGHTS})")
    cfg = load_config(folder / "config.yaml")
    model = build_model(cfg, saved=folder)
    state = load_file(folder / WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model.eval(), cfg
