"""Build a contrastive dual encoder from config, and save its folder's files.

A contrastive model folder holds `config.yaml` (the full resolved run config),
`model.safetensors`, and `image_tower/`, `text_tower/` (backbone configs and tokenizer), so it
reloads offline from itself alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from vlkit.config import Config, check_continues, save_config
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.registry import build_image_tower, build_text_tower, save_tower_files

LOSSES = ("clip", "siglip")


def build_dual_encoder(
    cfg: Config, texts: Iterable[str] | None = None, saved: Path | None = None, **parts: torch.nn.Module
) -> DualEncoder:
    """A new dual encoder (pretrained towers loaded, from-scratch ones initialised with
    `cfg.train.seed`), or with `saved`, the structure of a saved folder (weights loaded separately)."""
    previous = parts.pop("previous", None)
    if parts:
        raise ValueError(
            f"a dual encoder starts from no trained parts but `previous`; got {', '.join(parts)}"
        )
    m = cfg.model
    if m.loss not in LOSSES:
        raise ValueError(f"model.loss: {m.loss!r} is not a contrastive loss; valid: {', '.join(LOSSES)}")
    if previous is not None and saved is None:
        return _continued(cfg, *previous)
    torch.manual_seed(cfg.train.seed)
    image = build_image_tower(m.image_encoder, m, saved / "image_tower" if saved else None)
    text = build_text_tower(m.text_encoder, m, saved / "text_tower" if saved else None, texts)
    return DualEncoder(m, image, text)


def save_dual_files(model: DualEncoder, cfg: Config, folder: Path) -> None:
    """Everything but the weights: config and the towers' files. Every weight is stored (None)."""
    save_config(cfg, folder / "config.yaml")
    save_tower_files(model.image_tower, folder / "image_tower")
    save_tower_files(model.text_tower, folder / "text_tower")


def no_external(model: DualEncoder, cfg: Config, keys: list[str]) -> None:
    """A dual encoder's folder stores every weight: an external-weights record is a broken folder."""
    raise ValueError(f"a dual encoder stores every weight; its folder lists external ones: {keys[:5]}")


def dual_parts(cfg: Config, load: Callable[[str], tuple[torch.nn.Module, Config]]) -> dict:
    """`previous`: the (model, config) `model.init_from` names (a curriculum's earlier stage); {}
    for a dual encoder that starts from scratch or pretrained towers."""
    return {"previous": load(cfg.model.init_from)} if cfg.model.init_from else {}


# What must match for a dual encoder to continue another's weights: the towers, the shared space
# and the loss's parameters (the data, locks, temperature bounds and training may all change).
SAME_ARCHITECTURE = (
    "image_encoder", "vision_stem", "image_size", "patch_size", "vision_width", "vision_layers",
    "vision_heads", "text_encoder", "text_width", "text_layers", "text_heads", "vocab_size",
    "max_text_length", "embed_dim", "loss",
)  # fmt: skip


def _continued(cfg: Config, previous: torch.nn.Module, previous_cfg: Config) -> DualEncoder:
    """A dual encoder with `cfg`'s settings and `previous`'s towers (their weights and tokenizer),
    projections and temperature; `previous` is loaded for this alone, so its towers are taken."""
    check_continues(cfg, previous_cfg, SAME_ARCHITECTURE)
    model = DualEncoder(cfg.model, previous.image_tower, previous.text_tower)
    model.load_state_dict(previous.state_dict())
    model.apply_locks()
    return model


def no_parts(cfg: Config, load: Callable) -> dict:
    """A model that starts from no other run's trained parts."""
    return {}
