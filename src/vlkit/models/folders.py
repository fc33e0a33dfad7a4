"""Model folders and run folders on disk: where the weights are, which checkpoint of a run is
the latest complete one, and which model folder a user's path means.

    <model folder>/    config.yaml, model.safetensors, the parts' files (see `build`, `build_vlm`);
                       external_weights.json when a frozen pretrained base is referenced, not stored
    <run folder>/checkpoints/
        step-0000250/  a model folder plus the trainer state (written by `vlkit.train.checkpoint`)
        latest         text file naming the newest complete checkpoint

A leaf module (nothing else from vlkit): the API, checkpoints, export and the builders share it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import save_model as save_safetensors_model

WEIGHTS = "model.safetensors"
# Beside the weights when some were left out because they are a pretrained base's, unchanged:
# {"base": registry name / hub id / folder, "keys": [the model's keys that come from it]}.
EXTERNAL = "external_weights.json"


def save_weights(model: torch.nn.Module, folder: Path, external: dict | None = None) -> None:
    """Writes `model.safetensors`; tied weights (a tied LM head) are stored once, and
    `load_weights` restores them. `external` ({"base", "keys"}): those keys are not written
    (a frozen pretrained base that loading rebuilds by name) and `EXTERNAL` records them."""
    if not external:
        save_safetensors_model(model, str(folder / WEIGHTS))
        return
    skip, kept, seen = set(external["keys"]), {}, set()
    for key, tensor in model.state_dict().items():
        if key not in skip and (tensor.data_ptr(), tensor.shape) not in seen:  # tied: once
            seen.add((tensor.data_ptr(), tensor.shape))
            kept[key] = tensor.detach().contiguous()
    save_file(kept, str(folder / WEIGHTS))
    (folder / EXTERNAL).write_text(json.dumps(external, indent=1))


def load_weights(model: torch.nn.Module, path: Path) -> list[str]:
    """Loads `model.safetensors` into `model`, strictly: every key must match, except the keys
    its folder's `EXTERNAL` file lists (returned: the caller fills them from the base)."""
    external = path.parent / EXTERNAL
    allowed = set(json.loads(external.read_text())["keys"]) if external.is_file() else set()
    loaded = load_file(str(path))
    missing, unexpected = model.load_state_dict(loaded, strict=False)
    tied = {p.data_ptr() for k, p in model.state_dict().items() if k in loaded}
    state = model.state_dict()
    missing = [k for k in missing if k not in allowed and state[k].data_ptr() not in tied]
    if missing or unexpected:
        raise ValueError(
            f"{path}: missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )
    return sorted(allowed)


STAGES = "stages.json"  # in a multi-stage run's folder: {"stages": [its stages' sub-folders, in order]}


def write_stages(out_dir: str | Path, names: list[str]) -> None:
    """Marks `out_dir` as a multi-stage run (`resolve_model_dir` opens its last trained stage)."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{STAGES}.tmp"
    tmp.write_text(json.dumps({"stages": names}) + "\n")
    tmp.replace(root / STAGES)


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
    """A model folder, or a run folder (→ its latest complete checkpoint), or a multi-stage run's
    folder (→ the latest complete checkpoint of its last stage that has one)."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None and (path / STAGES).is_file():
        for name in reversed(json.loads((path / STAGES).read_text())["stages"]):
            ckpt = ckpt or latest_checkpoint(path / name)
    if ckpt is None:
        raise FileNotFoundError(
            f"{path}: neither a vlkit model folder nor a run folder with a complete checkpoint "
            "(`make tour` writes the runs runs/tour and runs/tour/llava; `vlkit train RECIPE` writes "
            "the recipe's train.out_dir)"
        )
    return ckpt
