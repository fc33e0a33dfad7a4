"""Atomic checkpoints: a crash never leaves a half-written checkpoint that resume would pick.

Layout under `<out_dir>/checkpoints/`:
    step-000250/            a model folder (config.yaml, model.safetensors, towers) plus
        optimizer.safetensors   every optimizer state tensor, flattened
        trainer_state.json      step, scheduler, optimizer hyper-parameters, counters
        rng.safetensors         torch RNG state
    latest                  text file naming the newest complete checkpoint

A checkpoint is written to `step-000250.tmp/`, then renamed (atomic on one file system), then
`latest` is replaced atomically. Only then are checkpoints beyond `keep_last` deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vlkit.config import Config
from vlkit.models.build import save_model
from vlkit.models.folders import WEIGHTS, checkpoint_dir, latest_checkpoint, load_weights

# checkpoint_dir and latest_checkpoint read the layout above; they live in vlkit.models.folders,
# which resolves run folders for loading too.
__all__ = ["checkpoint_dir", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    cfg: Config,
    optimizer_state: dict,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    counters: dict[str, int],
) -> Path:
    """optimizer_state: `optimizer.state_dict()` (a sharded run's gathered whole, same format)."""
    root = checkpoint_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final, tmp = root / name, root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, cfg, tmp)
    tensors, meta = _flatten_optimizer(optimizer_state)
    save_file(tensors, tmp / "optimizer.safetensors")
    save_file({"torch": torch.get_rng_state()}, tmp / "rng.safetensors")
    state = {"step": step, "scheduler": scheduler.state_dict(), "optimizer": meta, "counters": counters}
    _write_atomic(tmp / "trainer_state.json", json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)  # a leftover from a run that crashed after this step
    os.replace(tmp, final)
    _write_atomic(root / "latest", name)
    _prune(root, keep=cfg.train.keep_last, newest=final)
    return final


def load_checkpoint(
    path: Path,
    model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    load_optimizer: Callable[[dict], None] | None = None,
) -> dict:
    """Restores model (None: its weights are loaded already), optimizer, scheduler and RNG in
    place; returns the trainer state. load_optimizer: how the optimizer takes the saved
    `state_dict` (default `optimizer.load_state_dict`; a sharded run's shards it)."""
    state = json.loads((path / "trainer_state.json").read_text())
    if model is not None:
        load_weights(model, path / WEIGHTS)
    saved = _unflatten_optimizer(load_file(path / "optimizer.safetensors"), state["optimizer"])
    (load_optimizer or optimizer.load_state_dict)(saved)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(load_file(path / "rng.safetensors")["torch"])
    return state


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _prune(root: Path, keep: int, newest: Path) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[: max(0, len(done) - max(keep, 1))]:
        if old != newest:
            shutil.rmtree(old, ignore_errors=True)
