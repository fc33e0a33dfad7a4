"""Build a model from config, and save / load it as a self-contained folder, for any kind
(`cfg.kind`, looked up in `kinds.KINDS`: the builders are `build_dual` and `build_vlm`, which
describe their folders' files).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from vlkit.config import Config, load_config
from vlkit.models.folders import WEIGHTS, load_weights, resolve_model_dir, save_weights
from vlkit.models.kinds import model_kind


def build_model(
    cfg: Config,
    texts: Iterable[str] | None = None,
    saved: Path | None = None,
    **parts: torch.nn.Module | None,
) -> torch.nn.Module:
    """A new model (pretrained parts loaded, from-scratch ones initialised with `cfg.train.seed`),
    or with `saved`, the structure of a saved model folder (its weights are loaded separately).
    `parts`: the trained parts a recipe starts from, loaded by the caller (`initial_parts`): a
    generative model's `vision` / `previous` (see `build_vlm`), a detector's `clip`."""
    parts = {k: v for k, v in parts.items() if v is not None}
    return model_kind(cfg.kind).build(cfg, texts, saved, **parts)


def initial_parts(cfg: Config) -> dict:
    """The trained parts the recipe starts from (another run's model or tower), loaded, as
    `build_model`'s keyword arguments; {} for a recipe that starts from none."""
    return model_kind(cfg.kind).initial_parts(cfg, lambda path: load_model(resolve_model_dir(path)))


def save_model(model: torch.nn.Module, cfg: Config, folder: Path) -> None:
    """Writes the model folder (not atomic by itself: checkpoints wrap it in a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    external = model_kind(cfg.kind).save_files(model, cfg, folder)
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
        model_kind(cfg.kind).fill_external(model, cfg, external)
    return model.eval(), cfg
