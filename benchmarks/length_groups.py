"""Generative training step time by `vlm.length_groups`: one batch as one padded forward/backward,
or as passes over rows of similar length (the same gradient, less padding); or by any other
settings given as arms (`--arms`).

    python benchmarks/length_groups.py                      # the staged recipe's mix stage, 1 vs 2 vs 3
    python benchmarks/length_groups.py --stage grounding    # its first stage
    python benchmarks/length_groups.py --arms "vlm.data_vocabulary=false" "vlm.data_vocabulary=true" \
        --name data_vocabulary                              # other settings, side by side
    python benchmarks/length_groups.py --arms train.bf16=false train.bf16=true --name bf16 \
        --recipe recipes/clip-scenes.yaml --stage shapes   # a dual encoder's stage too
    python benchmarks/length_groups.py --smoke              # tiny model, a few steps, no results file

Each arm is the recipe's stage config with its overrides (`vlm.length_groups=G` by default; an
arm's overrides are joined by ";"), built by `prepare` (the same seed: the same batches at the same
steps, and the same model where the arms' settings leave it so), trained with the loop's
`train_step` (data work included). Weights start fresh (`vlm.vision_init` and `vlm.init_from`
cleared, so it runs on a machine without the CLIP run; step time does not depend on the weights'
values). Arms alternate in windows of `--window` steps over `--rounds` rounds, each arm going on
from its own last step (so every arm trains the same steps); the first window of each arm is
warm-up. Reported: median seconds per step, the share of the tokens run that are real (not
padding), and the largest difference between each arm's loss and the first arm's at the same step
(length groups: float rounding only, the parts' losses add up to the batch's; settings that change
the loss show by how much). Writes benchmarks/results/length_groups-<stage>.json, or
`<name>-<stage>.json` with `--name` (not with --smoke).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import torch
from common import SMOKE_MODEL, SMOKE_VLM, run_info, write_results
from train_throughput import quiet_transformers

from vlkit.config import load_config
from vlkit.config.stages import stage_configs
from vlkit.train.loop import prepare, train_step
from vlkit.train.machine import matmul_peak


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/llava-clip-scenes-staged.yaml")
    p.add_argument("--stage", default="mix", help="the stage's name (a recipe without stages: ignored)")
    p.add_argument("--groups", default="1,2,3", help="vlm.length_groups values, comma-separated")
    p.add_argument("--arms", nargs="+", help="arms as overrides joined by ';' (instead of --groups)")
    p.add_argument("--name", default="length_groups", help="the results file's name before the stage")
    p.add_argument("--window", type=int, default=5, help="steps per timed window")
    p.add_argument("--rounds", type=int, default=4, help="windows per arm (the first is warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true")
    return p.parse_args(argv)


def stage_config(args: argparse.Namespace, arm: str, out_dir: str):
    generative = load_config(args.recipe).vlm is not None
    overrides = [f"train.out_dir={out_dir}", *(["vlm.vision_init="] if generative else []), *arm.split(";")]
    if args.smoke and generative:
        # the patch stem: the arms start from scratch (vision_init cleared), where a conv stem's batch
        # norm would normalise each pass with its own rows; the recipe's CLIP tower keeps its
        # statistics fixed (GenerativeVLM.train), which a patch stem matches
        overrides += SMOKE_VLM + ["vlm.max_length=128", "train.batch_size=8", "model.vision_stem=patch"]
    elif args.smoke:
        overrides += SMOKE_MODEL + ["train.batch_size=8"]
    cfg = load_config(args.recipe, overrides)
    named = dict(stage_configs(cfg))
    if named and args.stage not in named:
        raise SystemExit(f"--stage {args.stage!r}: {args.recipe} has the stages {', '.join(named)}")
    cfg = named.get(args.stage, cfg)
    if not generative:  # a dual encoder: its later stages start from scratch here
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=""))
    if args.smoke:  # the smoke model is 1 layer deep: the staged recipe's grounding head reads layer 2
        cfg = dataclasses.replace(cfg, vlm=dataclasses.replace(cfg.vlm, grounding_layer=-1))
    return dataclasses.replace(cfg, vlm=dataclasses.replace(cfg.vlm, init_from=""))


def real_share(run, step: int) -> float:
    """Real tokens / tokens run (padding included) in the passes of step `step`'s batch (1 for an
    objective without passes: a dual encoder's)."""
    if not hasattr(run.objective, "parts"):
        return 1.0
    t = run.cfg.train
    batch = run.objective.collate(run.batcher.samples(step * t.grad_accum))
    parts = run.objective.parts(batch)
    return sum(int(p["attention_mask"].sum()) for p in parts) / sum(
        p["attention_mask"].numel() for p in parts
    )


def time_arms(args: argparse.Namespace, runs: dict) -> tuple[dict, dict]:
    """→ (seconds per step of each timed window, loss per step) per arm."""
    windows = {g: [] for g in runs}
    losses = {g: [] for g in runs}
    for round_ in range(args.rounds):
        for g, run in runs.items():
            start = round_ * args.window
            clock = time.perf_counter()
            for step in range(start, start + args.window):
                losses[g].append(train_step(run, step)[0])
            if round_ > 0:  # the first window warms up
                windows[g].append((time.perf_counter() - clock) / args.window)
    return windows, losses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.window, args.rounds = 2, 2
    load_before = os.getloadavg()[0]
    peak = matmul_peak()[0]
    names = args.arms or [f"vlm.length_groups={g}" for g in args.groups.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {a: prepare(stage_config(args, a, f"{tmp}/arm{k}")) for k, a in enumerate(names)}
        shares = {a: statistics.mean(real_share(runs[a], s) for s in range(8)) for a in names}
        windows, losses = time_arms(args, runs)
    base = names[0]
    arms = {}
    for a in names:
        median = statistics.median(windows[a])
        diff = max(abs(x - y) for x, y in zip(losses[a], losses[base]))
        arms[a] = {
            "s_per_step": median,
            "windows": windows[a],
            "real_token_share": shares[a],
            "speedup_vs_first": statistics.median(windows[base]) / median,
            "max_loss_difference_vs_first": diff,
        }
        print(
            f"{a}: {median:.3f} s/step, real tokens {shares[a]:.1%}, "
            f"x{arms[a]['speedup_vs_first']:.2f} vs {base}, max |loss diff| {diff:.2e}"
        )
    if args.smoke:
        return 0
    result = run_info(load_before, torch.get_num_threads()) | {
        "recipe": args.recipe,
        "stage": args.stage,
        "batch_size": runs[base].cfg.train.batch_size,
        "window": args.window,
        "rounds": args.rounds,
        "fp32_mm_peak_gflops": peak,
        "arms": arms,
    }
    write_results(f"{args.name}-{args.stage}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
