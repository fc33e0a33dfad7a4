"""Control: can the image tower learn outline shape at all, when the target is given?

    python benchmarks/shape_probe.py                 # patch and conv stems, 300 steps each
    python benchmarks/shape_probe.py --smoke         # tiny, seconds

Trains vit-tiny (the default sizes) + a linear head with plain supervised cross-entropy on the
4-way shape of single-object scenes (colour, size, position and background vary), batch 128,
AdamW 1e-3, and scores held-out single objects every 50 steps. No text tower, no contrastive
loss: if a stem learns shape here in a few thousand images but the CLIP built on it does not,
the CLIP's slowness lies in what the contrastive data asks, not in what the tower can see.
Writes benchmarks/results/shape_probe.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from vlkit.config import ModelConfig
from vlkit.data.scenes import SHAPES, Scenes, ScenesConfig
from vlkit.models.registry import build_image_tower

ROOT = Path(__file__).resolve().parents[1]


def batch(tower, world: Scenes, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    scenes = [world.scene(i) for i in range(start, start + n)]
    labels = torch.tensor([SHAPES.index(s.objects[0].shape) for s in scenes])
    return tower.preprocess([s.image for s in scenes]), labels  # (B, 3, H, W), (B,)


def probe(stem: str, steps: int, batch_size: int, every: int, cfg: ModelConfig) -> list[dict]:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**cfg.__dict__, "vision_stem": stem})
    tower = build_image_tower("vit-tiny", cfg)
    head = torch.nn.Linear(tower.out_dim, len(SHAPES))
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=1e-3, weight_decay=0.1)
    train = Scenes(ScenesConfig(cfg.image_size, 1, 1, seed=0))
    test_x, test_y = batch(tower, Scenes(ScenesConfig(cfg.image_size, 1, 1, seed=1_000_007)), 0, 512)
    curve = []
    for step in range(steps + 1):
        if step % every == 0:
            tower.eval()
            with torch.no_grad():
                accuracy = (head(tower(test_x)).argmax(-1) == test_y).float().mean().item()
            tower.train()
            curve.append({"step": step, "images": step * batch_size, "shape_accuracy": accuracy})
            print(f"{stem} stem, step {step}: held-out 4-way shape accuracy {accuracy:.3f}", flush=True)
        if step < steps:
            x, y = batch(tower, train, step * batch_size, batch_size)
            loss = F.cross_entropy(head(tower(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, batch_size, every = ModelConfig(), 128, 50
    if args.smoke:
        cfg = ModelConfig(image_size=32, vision_width=16, vision_layers=1, vision_heads=2)
        args.steps, batch_size, every = 2, 8, 1
    result = {"chance": 1 / len(SHAPES), "batch_size": batch_size, "threads": torch.get_num_threads()}
    result["curves"] = {stem: probe(stem, args.steps, batch_size, every, cfg) for stem in ("patch", "conv")}
    if not args.smoke:
        out = ROOT / "benchmarks" / "results" / "shape_probe.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
