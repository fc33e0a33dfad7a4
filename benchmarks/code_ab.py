"""A training stage's step time under two versions of vlkit's code, side by side: for changes that
no config setting switches (`length_groups.py` compares settings within one version).

    git worktree add /tmp/before <commit>          # the code to compare against
    python benchmarks/code_ab.py --before /tmp/before/src --stage mix --name code_ab
    python benchmarks/code_ab.py --before /tmp/before/src --smoke  # tiny model, no results file

Each version runs in its own process (PYTHONPATH set to its `src`), in turn, `--rounds` times:
before, now, before, now ... Each run builds the recipe's stage from fresh weights (a generative
recipe's `vlm.vision_init` and `vlm.init_from` cleared: step time does not depend on the weights'
values), trains `--warm` steps (filling the question reader's cache, as earlier steps of a real
run do), then times `--steps` training steps (the loop's `train_step`, data work included) and,
apart, the data work of the same steps alone (samples and collate). Reported: the median over
rounds of each version's seconds per step and per data work, and the ratio before / now per
round. Writes benchmarks/results/<name>-<stage>.json (not with --smoke).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SMOKE_VLM, run_info, write_results

NOW = Path(__file__).resolve().parent.parent / "src"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the src folder of the code to compare against")
    p.add_argument("--recipe", default="recipes/llava-clip-scenes-staged.yaml")
    p.add_argument("--stage", default="mix", help="the stage's name (a recipe without stages: ignored)")
    p.add_argument("--warm", type=int, default=60, help="steps trained before timing")
    p.add_argument("--steps", type=int, default=30, help="steps timed")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="code_ab")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """In a child process: this version's seconds per step and per step's data work."""
    import torch

    from vlkit.config import load_config
    from vlkit.config.stages import stage_configs
    from vlkit.train.loop import prepare, train_step

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"train.out_dir={tmp}"]
        if args.smoke:
            overrides += SMOKE_VLM + ["vlm.max_length=128", "train.batch_size=8", "vlm.grounding_layer=-1"]
        cfg = load_config(args.recipe, overrides)
        cfg = dict(stage_configs(cfg)).get(args.stage, cfg)
        if cfg.kind == "generative":  # no CLIP run needed: the tower starts fresh too
            cfg = dataclasses.replace(cfg, vlm=dataclasses.replace(cfg.vlm, vision_init="", init_from=""))
        run = prepare(cfg)
        for step in range(args.warm):
            train_step(run, step)
        timed = range(args.warm, args.warm + args.steps)
        clock = time.perf_counter()
        for step in timed:
            train_step(run, step)
        step_s = (time.perf_counter() - clock) / args.steps
        clock = time.perf_counter()
        for step in timed:
            run.objective.collate(run.batcher.samples(step))
        data_s = (time.perf_counter() - clock) / args.steps
    import vlkit

    return {"s_per_step": step_s, "data_s_per_step": data_s, "vlkit": vlkit.__file__}


def run_version(args: argparse.Namespace, src: Path) -> dict:
    """One child run on the code in `src` → its `measure` figures."""
    flags = [
        "--before",
        args.before,
        "--recipe",
        args.recipe,
        "--stage",
        args.stage,
        "--warm",
        str(args.warm),
    ]
    flags += ["--steps", str(args.steps), "--threads", str(args.threads), "--child"]
    flags += ["--smoke"] if args.smoke else []
    env = os.environ | {"PYTHONPATH": str(src), "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, __file__, *flags], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"the run on {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit_of(src: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "."], capture_output=True, text=True
    )
    return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    if args.smoke:
        args.warm, args.steps, args.rounds = 1, 2, 1
    load_before = os.getloadavg()[0]
    sources = {"before": Path(args.before).resolve(), "now": NOW}
    runs = {v: [] for v in sources}
    for _ in range(args.rounds):
        for version, src in sources.items():
            runs[version].append(run_version(args, src))
    figures = {}
    for version, rows in runs.items():
        step = statistics.median(r["s_per_step"] for r in rows)
        data = statistics.median(r["data_s_per_step"] for r in rows)
        figures[version] = {"code": commit_of(sources[version]), "s_per_step": step, "data_s_per_step": data}
        print(f"{version} ({figures[version]['code']}): {step:.3f} s/step, of which data {data:.3f} s")
    ratios = [b["s_per_step"] / n["s_per_step"] for b, n in zip(runs["before"], runs["now"])]
    print(f"before / now, per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    if args.smoke:
        return 0
    result = run_info(load_before, args.threads) | {
        "recipe": args.recipe,
        "stage": args.stage,
        "warm_steps": args.warm,
        "timed_steps": args.steps,
        "versions": figures,
        "runs": runs,
        "before_over_now_per_round": ratios,
    }
    write_results(f"{args.name}-{args.stage}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
