"""What a CLIP tower's patch tokens tell a VLM: per layer, linear probes of each patch's object
colour, object shape, column and row.

    python benchmarks/patch_probe.py --run runs/tour     # a trained CLIP run (the tour's)
    python benchmarks/patch_probe.py --run runs/llava-clip-scenes-staged/mix   # a VLM's tower
    python benchmarks/patch_probe.py --smoke            # an untrained tiny tower, seconds

A LLaVA-style VLM reads a layer of the tower's patch tokens (`vlm.vision_feature_layer`). To answer
"Is the red circle left or right of the blue square?" it must find each object's patches and
read where they are. This script asks which of those facts a linear map can read off one patch
token, at every layer of the tower (0 = embeddings, position embeddings added): the colour and
shape of the object covering the patch (scored on object patches only), and the patch's column
and row (mean absolute error in patches over all patches; always guessing the middle scores 2.0
on an 8×8 grid). Probes are ridge least squares (one-hot targets for colour and shape) fitted on
training scenes and scored on held-out scenes (2-3 objects, the held-out seed). Writes
benchmarks/results/patch_probe[-<name>].json.

    python benchmarks/patch_probe.py --run runs/clip-scenes --name clip-scenes   # → patch_probe-clip-scenes.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results  # noqa: E402

from vlkit.data.scenes import COLOR_NAMES, SHAPES, Scenes, ScenesConfig  # noqa: E402


def tower_of(run: str, smoke: bool):
    """The run's CLIP image tower, or a generative run's vision tower (an untrained tiny one with --smoke)."""
    if smoke:
        from vlkit.config import ModelConfig
        from vlkit.models.registry import build_image_tower

        cfg = ModelConfig(image_size=32, vision_width=16, vision_layers=1, vision_heads=2)
        return build_image_tower("vit-tiny", cfg).eval()
    from vlkit.models.build import load_model
    from vlkit.models.folders import resolve_model_dir

    model, cfg = load_model(resolve_model_dir(run))
    # a generative run: the tower its connector reads (trained further when vlm.freeze_vision is off)
    return (model.vision if cfg.kind == "generative" else model.image_tower).eval()


def patch_labels(scene, side: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per patch: the colour and shape index of the object covering >= 30% of it, else -1."""
    colour, shape = np.full(side * side, -1), np.full(side * side, -1)
    for obj in scene.objects:
        cover = obj.mask.reshape(side, patch, side, patch).mean(axis=(1, 3)).reshape(-1)
        colour[cover >= 0.3] = COLOR_NAMES.index(obj.color)
        shape[cover >= 0.3] = SHAPES.index(obj.shape)
    return colour, shape


@torch.no_grad()
def features(tower, world: Scenes, start: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """→ hidden states float[L+1, n * N, D] and per-patch colour, shape int[n * N]."""
    config = tower.model.config
    side, patch = config.image_size // config.patch_size, config.patch_size
    states, colours, shapes = [], [], []
    for i in range(start, start + n):
        scene = world.scene(i)
        out = tower.model(pixel_values=tower.preprocess([scene.image]), output_hidden_states=True)
        states.append(torch.stack([h[0, 1:] for h in out.hidden_states]).numpy())
        colour, shape = patch_labels(scene, side, patch)
        colours.append(colour)
        shapes.append(shape)
    return np.concatenate(states, axis=1), np.concatenate(colours), np.concatenate(shapes)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares with an L2 penalty on standardised features → (mean, std, weights)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ y)
    return mean, std, w


def predict(fit, x: np.ndarray) -> np.ndarray:
    mean, std, w = fit
    return np.c_[(x - mean) / std, np.ones(len(x))] @ w


def probe_layer(train, test, side: int) -> dict:
    """One layer's four probes (see the module docstring)."""
    (x, colour, shape), (xt, colour_t, shape_t) = train, test
    out = {}
    for name, y, yt, classes in (
        ("colour", colour, colour_t, len(COLOR_NAMES)),
        ("shape", shape, shape_t, 4),
    ):
        on, on_t = y >= 0, yt >= 0
        fit = ridge(x[on], np.eye(classes)[y[on]])
        out[f"{name}_accuracy_on_objects"] = float((predict(fit, xt[on_t]).argmax(1) == yt[on_t]).mean())
    grid = np.arange(side * side)
    for name, where in (("column", grid % side), ("row", grid // side)):
        y, yt = np.tile(where, len(x) // len(where)), np.tile(where, len(xt) // len(where))
        out[f"{name}_mae_patches"] = float(np.abs(predict(ridge(x, y), xt) - yt).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/tour", help="a CLIP run or model folder")
    p.add_argument("--train-scenes", type=int, default=400)
    p.add_argument("--test-scenes", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="", help="results file suffix: patch_probe-<name>.json")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    if args.smoke:
        args.train_scenes, args.test_scenes = 8, 4
    tower = tower_of(args.run, args.smoke)
    size = tower.model.config.image_size
    side = size // tower.model.config.patch_size
    train = features(tower, Scenes(ScenesConfig(size, 2, 3, seed=0)), 0, args.train_scenes)
    test = features(tower, Scenes(ScenesConfig(size, 2, 3, seed=1_000_003)), 0, args.test_scenes)
    layers = []
    for layer in range(train[0].shape[0]):
        row = {
            "layer": layer,
            **probe_layer((train[0][layer], *train[1:]), (test[0][layer], *test[1:]), side),
        }
        layers.append(row)
        print(
            " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True,
        )
    result = {
        "run": args.run,
        "grid": side,
        "chance": {"colour": 1 / len(COLOR_NAMES), "shape": 1 / len(SHAPES), "mae_guess_middle": side / 4},
        "layers": layers,
        **run_info(load, args.threads),
    }
    if not args.smoke:
        write_results("patch_probe" + (f"-{args.name}" if args.name else ""), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
