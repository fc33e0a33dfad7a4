"""The detector recipe, trained and scored on held-out scenes: grounding Acc@0.5 beside a random
pick of a scene object, and COCO mAP@0.5 / mAP@[.5:.95] by pycocotools (`vlkit eval RUN --task
detection --task grounding --data scenes`'s numbers).

    python benchmarks/detection.py --threads 1                                 # recipes/owlvit-scenes.yaml
    python benchmarks/detection.py --threads 1 --name from-clip --set detector.clip_init=runs/clip-scenes
    python benchmarks/detection.py --smoke                                     # tiny, seconds (CI)

Minutes are the `train` call's (its training-time evaluations included); the fp32 `torch.mm` peak is measured in the
same run, since these shared machines differ 2× between days. Writes
benchmarks/results/detection[-<name>].json (date, commit, load, threads, peak, the training-time
evaluations and the final held-out scores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import SMOKE_MODEL, run_info, write_results
from trained import ROOT, train_recipe

from vlkit.eval.run import run_eval
from vlkit.train.machine import matmul_peak

SMOKE = [*SMOKE_MODEL, "model.image_size=32", "data.image_size=32", "train.steps=3", "train.batch_size=4"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "owlvit-scenes.yaml"))
    p.add_argument("--set", action="append", default=[], help="config override, as `vlkit train --set`")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=512, help="held-out scenes for the final scores")
    p.add_argument("--name", default="", help="results file suffix: detection-<name>.json")
    p.add_argument("--out", default="", help="run folder (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, no results file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    peak, _ = matmul_peak()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or str(Path(tmp) / "run")
        sets = [*args.set, *(SMOKE if args.smoke else [])]
        run, _, trained = train_recipe(args.recipe, sets, out, args.threads)
        images = 8 if args.smoke else args.images
        clock = time.perf_counter()
        scored = run_eval(
            str(run), "scenes", limit=images, task=["detection", "grounding"], out_dir=str(Path(tmp) / "e")
        )
        eval_seconds = time.perf_counter() - clock
    (grounding,) = [r for r in scored["results"] if r.task == "grounding"]
    chance = grounding.breakdowns["grounding_acc@0.5 vs a random pick"]["random pick"]
    result = (
        run_info(load_before, args.threads)
        | trained
        | {
            "overrides": args.set,
            "final_eval_seconds": eval_seconds,
            "matmul_peak_gflops": peak,
            "held_out_scenes": images,
            "held_out": scored["metrics"] | {"grounding_random_pick": chance},
        }
    )
    print(json.dumps(result["held_out"], indent=1))
    if not args.smoke:
        write_results("detection" + (f"-{args.name}" if args.name else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
