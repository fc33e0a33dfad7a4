"""The segmenter recipe, trained and scored on held-out scenes: referring-segmentation mIoU beside
the CLIP alone (each patch's similarity to the prompt, thresholded), `vlkit eval RUN --task
segmentation --data scenes`'s numbers. The CLIP it reads is trained first (recipes/clip-scenes.yaml)
unless `--clip` names one.

    python benchmarks/segmentation.py --threads 1                    # CLIP, then recipes/clipseg-scenes.yaml
    python benchmarks/segmentation.py --threads 1 --clip runs/tour   # on an existing CLIP run
    python benchmarks/segmentation.py --smoke                        # tiny, seconds (CI)

Minutes are the `train` calls' (their training-time evaluations included); the fp32 `torch.mm`
peak is measured in the same run, since these shared machines differ 2× between days. Writes
benchmarks/results/segmentation[-<name>].json (date, commit, load, threads, peak, both runs'
settings and minutes, the training-time evaluations and the final held-out scores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
from common import SMOKE_MODEL, run_info, write_results
from trained import ROOT, train_recipe

from vlkit.eval.run import run_eval
from vlkit.train.machine import matmul_peak

TINY = [
    *SMOKE_MODEL,
    "model.image_size=32",
    "data.image_size=32",
    "train.steps=3",
    "train.batch_size=4",
    "eval.num_images=8",
]
SMOKE_SEGMENTER = [*TINY, "segmenter.extract_layers=[0]", "segmenter.reduce_dim=16", "train.eval_every=0"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "clipseg-scenes.yaml"))
    p.add_argument("--clip-recipe", default=str(ROOT / "recipes" / "clip-scenes.yaml"))
    p.add_argument("--clip", default="", help="an existing CLIP run/model folder (default: train one)")
    p.add_argument(
        "--set", action="append", default=[], help="segmenter config override, as `vlkit train --set`"
    )
    p.add_argument("--clip-set", action="append", default=[], help="CLIP config override")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=512, help="held-out scenes for the final scores")
    p.add_argument("--name", default="", help="results file suffix: segmentation-<name>.json")
    p.add_argument("--smoke", action="store_true", help="tiny models, 3 steps each, no results file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    peak, _ = matmul_peak()
    with tempfile.TemporaryDirectory() as tmp:
        clip, clip_run = args.clip, {"folder": args.clip}
        if not clip:
            sets = [*args.clip_set, *(TINY if args.smoke else [])]
            run, _, clip_run = train_recipe(args.clip_recipe, sets, f"{tmp}/clip", args.threads)
            clip = str(run)
        sets = [
            *args.set,
            *(SMOKE_SEGMENTER if args.smoke else []),
            f"segmenter.clip_init={clip}",
        ]
        run, _, segmenter_run = train_recipe(args.recipe, sets, f"{tmp}/segmenter", args.threads)
        images = 8 if args.smoke else args.images
        clock = time.perf_counter()
        scored = run_eval(str(run), "scenes", limit=images, task="segmentation", out_dir=f"{tmp}/eval")
        eval_seconds = time.perf_counter() - clock
        (result,) = scored["results"]
    held_out = result.metrics | {"breakdowns": result.breakdowns}
    out = run_info(load_before, args.threads) | {
        "clip": clip_run,
        "segmenter": segmenter_run,
        "final_eval_seconds": eval_seconds,
        "matmul_peak_gflops": peak,
        "held_out_scenes": images,
        "held_out_prompts": result.samples,
        "held_out": held_out,
    }
    print(json.dumps(held_out, indent=1))
    if not args.smoke:
        write_results("segmentation" + (f"-{args.name}" if args.name else ""), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
