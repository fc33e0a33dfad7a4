"""Model folders and run folders on disk: where the weights are, which checkpoint of a run is
the latest complete one, and which model folder a user's path means.

    <model folder>/    config.yaml, model.safetensors, the parts' files (see `build`, `build_vlm`)
    <run folder>/checkpoints/
        step-0000250/  a model folder plus the trainer state (written by `vlkit.train.checkpoint`)
        latest         text file naming the newest complete checkpoint

A leaf module (nothing else from vlkit): the API, checkpoints, export and the builders share it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model

WEIGHTS = "model.safetensors"


def save_weights(model: torch.nn.Module, folder: Path) -> None:
    """Writes `model.safetensors`; tied weights (a tied LM head) are stored once, and
    `load_weights` restores them."""
    save_safetensors_model(model, str(folder / WEIGHTS))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Loads `model.safetensors` into `model`, strictly: every key must match."""
    missing, unexpected = load_safetensors_model(model, str(path), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoint_dir(out_dir) / "latest"
    if not pointer.is_file():
        return None
    path = checkpoint_dir(out_dir) / pointer.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run folder (→ its latest complete checkpoint)."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(
            f"{path}: neither a vlkit model folder nor a run folder with a complete checkpoint "
            "(`make tour` writes the runs runs/tour and runs/tour/llava; `vlkit train RECIPE` writes "
            "the recipe's train.out_dir)"
        )
    return ckpt
