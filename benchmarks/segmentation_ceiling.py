"""What limits the segmenter on scenes: the best mIoU a predictor that only sees a coarse grid
could reach, and (with `--model`) where a trained segmenter's wrong pixels lie.

Ceilings, on the same held-out prompts `benchmarks/segmentation.py` scores: each true mask
averaged over the cells of a G × G grid (the fraction of each cell inside the object), then back to
the image's pixels, kept above 0.5: nearest (one decision per cell, as the CLIP-alone baseline) or
bilinear (a smooth upsampling of the cell fractions). G = image size / patch size is the
decoder's token grid (8 × 8 for 64-px images and 8-px patches); a finer grid is beside it.

With `--model RUN`, the trained segmenter's masks: mIoU by object size, the share of its wrong
pixels within 1 or 2 pixels of the true mask's edge (an edge in the wrong place) and farther away
(a wrong or missed region), and the share of prompts with IoU < 0.3 (the wrong object, or none).

    python benchmarks/segmentation_ceiling.py                                   # ceilings only, seconds
    python benchmarks/segmentation_ceiling.py --model runs/clipseg-scenes --name base800
    python benchmarks/segmentation_ceiling.py --smoke                           # 8 scenes, no results file

Writes benchmarks/results/segmentation-ceiling[-<name>].json.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from common import run_info, write_results
from scipy import ndimage
from trained import ROOT

from vlkit import metrics
from vlkit.config import load_config
from vlkit.eval.run import open_benchmarks


def coarse(masks: np.ndarray, grid: int, mode: str) -> np.ndarray:
    """masks: bool[N, S, S] → the masks a G × G predictor could draw at best, bool[N, S, S]."""
    size = masks.shape[-1]
    cells = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], grid)  # (N, 1, G, G)
    kw = {} if mode == "nearest" else {"align_corners": False}
    return (F.interpolate(cells, size=(size, size), mode=mode, **kw)[:, 0] > 0.5).numpy()


def by_size(ious: list[float], phrases: list[str]) -> dict[str, float]:
    out = {}
    for size in ("small", "large"):
        mine = [i for i, p in zip(ious, phrases) if f" {size} " in f" {p} "]
        if mine:
            out[size] = float(np.mean(mine))
    return out


def scores(pred: np.ndarray, truth: np.ndarray, phrases: list[str]) -> dict:
    ious = [metrics.mean_iou([p], [t]) for p, t in zip(pred, truth)]
    return {"mIoU": float(np.mean(ious)), "by_size": by_size(ious, phrases), "ious": ious}


def error_places(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Shares of the wrong pixels by their distance to the true mask's edge."""
    near1 = near2 = total = 0
    for p, t in zip(pred, truth):
        wrong = p != t
        edge = t ^ ndimage.binary_erosion(t)  # the mask's own boundary pixels
        inside_dist = ndimage.distance_transform_edt(~edge) if edge.any() else np.full(t.shape, np.inf)
        total += int(wrong.sum())
        near1 += int((wrong & (inside_dist <= 1.5)).sum())
        near2 += int((wrong & (inside_dist <= 2.5)).sum())
    return {
        "wrong_pixels": total,
        "within_1px_of_edge": near1 / max(total, 1),
        "within_2px_of_edge": near2 / max(total, 1),
        "farther": 1 - near2 / max(total, 1),
    }


def model_masks(run: str, images: list, phrases: list[str]) -> np.ndarray:
    from vlkit import api

    model = api.load(run, kind="segmenter")
    out = []
    for start in range(0, len(images), 32):
        out += model.segment(images[start : start + 32], phrases[start : start + 32])
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "clipseg-scenes.yaml"))
    p.add_argument("--images", type=int, default=512, help="held-out scenes (as segmentation.py)")
    p.add_argument("--model", default="", help="a trained segmenter run/model folder to diagnose")
    p.add_argument("--name", default="", help="results file suffix: segmentation-ceiling-<name>.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="8 held-out scenes, no results file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = 8 if args.smoke else args.images
    load_before = os.getloadavg()[0]
    cfg = load_config(args.recipe)
    (bench,) = [b for b in open_benchmarks("scenes", images, cfg.data) if b.task == "segmentation"]
    truth = np.stack([e["mask"] for e in bench.examples]).astype(bool)
    phrases = [e["phrase"] for e in bench.examples]
    token_grid = cfg.model.image_size // cfg.model.patch_size
    ceilings = {}
    for grid in (token_grid, 2 * token_grid, 4 * token_grid):
        for mode in ("nearest", "bilinear"):
            s = scores(coarse(truth, grid, mode), truth, phrases)
            ceilings[f"{grid}x{grid} {mode}"] = {"mIoU": s["mIoU"], "by_size": s["by_size"]}
    out = run_info(load_before, args.threads) | {
        "recipe": args.recipe,
        "held_out_prompts": len(truth),
        "token_grid": token_grid,
        "coarse_ceilings": ceilings,
    }
    if args.model:
        pred = model_masks(args.model, [e["image"] for e in bench.examples], phrases)
        s = scores(pred, truth, phrases)
        out["model"] = {
            "folder": args.model,
            "mIoU": s["mIoU"],
            "by_size": s["by_size"],
            "prompts_iou_below_0.3": float(np.mean(np.array(s["ious"]) < 0.3)),
            "errors": error_places(pred, truth),
        }
    for name, c in ceilings.items():
        print(f"ceiling {name:>18}: mIoU {c['mIoU']:.3f} {c['by_size']}")
    if "model" in out:
        print({k: v for k, v in out["model"].items() if k != "folder"})
    if not args.smoke:
        write_results("segmentation-ceiling" + (f"-{args.name}" if args.name else ""), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
