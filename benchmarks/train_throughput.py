"""Training throughput: vlkit's `train()` vs a bare PyTorch loop on the same model and data, and MFU.

    python benchmarks/train_throughput.py                          # default recipe: Config(), batch 128
    python benchmarks/train_throughput.py --steps 80 --batch 64 --set model.vision_width=256
    python benchmarks/train_throughput.py --smoke                  # tiny model, few steps, < 1 min (CI)

Both loops start from the same model (`build_model`, same seed and tokenizer), use the same
AdamW (`make_optimizer`), warmup + cosine schedule, clipping, and get their data the same way:
each step renders its samples (`Batcher.samples(step)`) and collates them
(`ContrastiveObjective.collate`), so data generation is included in both timings. The bare loop
is forward → loss → backward → clip → step → zero_grad → scheduler.step, with no accelerate,
logging or checkpoint logic.

Timing: one clock for both loops, a global optimizer step post-hook (no change to vlkit's code)
that stamps wall and CPU time after every step. A window of `--window` steps runs from the end
of one step to the end of the step `--window` later, so it holds everything a loop does per step
(data, forward, backward, clip, logging...); the first window of every run is warm-up. Model
building, tokenizer training and the final checkpoint lie outside the windows. vlkit's own
`images_per_s` from metrics.jsonl (`log_every = --window`) is printed as a cross-check. Runs
alternate (vlkit, bare, bare, vlkit, ...) over `--rounds`; medians over all windows are
reported, with the best window (least touched by other processes) and CPU time per step (only
the cycles this process got). Overhead = (bare - vlkit) / bare, in images/s.

MFU: FLOPs of one training step (forward + backward, counted with FlopCounterMode, plus the CPU
flash-attention kernels it does not know) / measured step time, divided by the fp32 `torch.mm`
rate measured in the same run (2048x2048, best of several). "fwd+bwd only" times the model
alone on one fixed batch, to show how much of a step is data and optimizer.

Goals: overhead <= 5%; MFU of vlkit's step >= 50% for the default recipe. Printed as PASS/MISS;
the exit code does not depend on them (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import SMOKE_MODEL
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.flop_counter import FlopCounterMode

from vlkit.config import Config, load_config
from vlkit.data import build_dataset, iter_captions
from vlkit.models.build import build_model
from vlkit.models.kinds import TOKENIZER_SAMPLES
from vlkit.train.batches import Batcher
from vlkit.train.loop import lr_lambda, make_optimizer, train
from vlkit.train.machine import matmul_peak
from vlkit.train.objectives import ContrastiveObjective

OVERHEAD_GOAL = 0.05
MFU_GOAL = 0.50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="steps per run (a multiple of --window)")
    p.add_argument("--window", type=int, default=10, help="steps per timing window (= train.log_every)")
    p.add_argument("--rounds", type=int, default=4, help="runs of each loop, alternating")
    p.add_argument("--batch", type=int, help="train.batch_size (default: the config's, 128)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override; train.steps/log_every/eval_every/save_every are set by the benchmark",
    )
    p.add_argument("--smoke", action="store_true", help="tiny model, batch 16, 6 steps: for CI")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.window, args.rounds = 6, 2, 2
        args.batch = args.batch or 16
        args.overrides = SMOKE_MODEL + args.overrides
    if args.steps % args.window or args.steps < 2 * args.window:
        p.error(f"--steps {args.steps} must be a multiple of --window {args.window} and at least two windows")
    return args


def make_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    cfg = load_config(None, overrides)
    t = cfg.train
    t.steps, t.log_every, t.eval_every, t.save_every = args.steps, args.window, 0, 0
    if t.grad_accum != 1:
        raise SystemExit(f"train.grad_accum={t.grad_accum}: this benchmark compares single-micro-batch steps")
    return cfg


# --------------------------------------------------------------------------- timing and the two loops


class StepClock:
    """Wall and CPU timestamps after every optimizer step, of any optimizer in any loop.

    A global optimizer post-hook gives both loops the same clock without touching vlkit's code;
    a window of W steps spans from the end of one step to the end of the step W later, so it
    holds everything a loop does per step (data, forward, backward, clip, logging, ...).
    """

    def __enter__(self) -> StepClock:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._handle = register_optimizer_step_post_hook(self._stamp)
        return self

    def _stamp(self, optimizer, args, kwargs) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def windows(self, size: int) -> list[tuple[float, float]]:
        """(wall, CPU) seconds per step for each window after the first (the first is warm-up)."""
        ends = range(size - 1, len(self.wall) - size, size)  # each window: end of step k → end of k + size
        return [
            ((self.wall[k + size] - self.wall[k]) / size, (self.cpu[k + size] - self.cpu[k]) / size)
            for k in ends
        ]


def bare_loop(cfg: Config, model: torch.nn.Module, dataset) -> None:
    """A hand-written loop: same data, model, loss, optimizer, schedule and clipping as vlkit's."""
    t = cfg.train
    objective = ContrastiveObjective(model, seed=t.seed)  # collate + the model's loss, nothing else
    batcher = Batcher(dataset, t.batch_size, t.seed)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model.train()
    for step in range(t.steps):
        batch = objective.collate(batcher.samples(step))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.bf16):
            loss = objective.loss(model, batch)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if (step + 1) % t.log_every == 0:
            loss.item()  # what a hand-written loop would print


def vlkit_loop(cfg: Config, out_dir: Path) -> list[float]:
    """vlkit's `train()` into a fresh folder; returns the images/s it logged per window."""
    cfg = copy.deepcopy(cfg)
    cfg.train.out_dir = str(out_dir)  # fresh: train() would resume from an existing checkpoint
    train(cfg, progress=False)
    lines = (json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines())
    return [r["images_per_s"] for r in lines if "images_per_s" in r]


# --------------------------------------------------------------------------- FLOPs and peak


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and P V: 2 matmuls of 2·B·H·S_q·S_k·D FLOPs (shapes [B, H, S, D])."""
    b, h, s_q, d = query
    return 4 * b * h * s_q * key[2] * d


def _attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_flops(query, key, value)  # dQ, dK, dV, dP: four matmuls


# FlopCounterMode knows the CUDA attention kernels; torch on CPU calls these instead.
CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops,
}


def step_flops(cfg: Config, model: torch.nn.Module, batch: dict) -> int:
    """FLOPs of forward + loss + backward on `batch` (optimizer and data work are not FLOPs here)."""
    model = copy.deepcopy(model).train()
    objective = ContrastiveObjective(model, seed=cfg.train.seed)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        objective.loss(model, batch).backward()
    return counter.get_total_flops()


def fwd_bwd_seconds(cfg: Config, model: torch.nn.Module, batch: dict, reps: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of forward + backward alone on one fixed batch."""
    model = copy.deepcopy(model).train()
    objective = ContrastiveObjective(model, seed=cfg.train.seed)
    wall, cpu = [], []
    for _ in range(reps + 1):  # the first is warm-up
        w, c = time.perf_counter(), time.process_time()
        objective.loss(model, batch).backward()
        model.zero_grad(set_to_none=True)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall[1:]), statistics.median(cpu[1:])


# --------------------------------------------------------------------------- main


def quiet_transformers() -> None:
    """No progress bars or the no-torchvision warning in the benchmark's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    warnings.filterwarnings("ignore", module="accelerate")
    cfg = make_config(args)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    load_before = os.getloadavg()[0]
    dataset = build_dataset(cfg.data)
    initial = build_model(cfg, texts=iter_captions(dataset, TOKENIZER_SAMPLES))  # what train() builds
    batcher = Batcher(dataset, cfg.train.batch_size, cfg.train.seed)
    batch = ContrastiveObjective(initial, seed=cfg.train.seed).collate(batcher.samples(0))
    flops = step_flops(cfg, initial, batch)

    per_step: dict[str, list[tuple[float, float]]] = {"vlkit": [], "bare": []}  # (wall, CPU) s/step
    logged: list[float] = []  # vlkit's own images_per_s, first window of each run dropped
    peaks, fwd_bwd = [], []
    with tempfile.TemporaryDirectory(prefix="vlkit-train-bench-") as tmp:
        for r in range(args.rounds):
            for name in ("vlkit", "bare") if r % 2 == 0 else ("bare", "vlkit"):
                with StepClock() as clock:
                    if name == "vlkit":
                        logged += vlkit_loop(cfg, Path(tmp) / f"run{r}")[1:]
                    else:
                        bare_loop(cfg, copy.deepcopy(initial), dataset)
                per_step[name] += clock.windows(args.window)
            peaks.append(matmul_peak())
            fwd_bwd.append(fwd_bwd_seconds(cfg, initial, batch, reps=3 if args.smoke else 5))
    per_step["fwd+bwd only"] = fwd_bwd
    peak = (max(p[0] for p in peaks), max(p[1] for p in peaks))
    report(args, cfg, per_step, logged, flops, peak, (load_before, os.getloadavg()[0]))
    return 0


def report(args, cfg: Config, per_step: dict, logged: list[float], flops: int, peak, loads) -> None:
    B, m = cfg.train.batch_size, cfg.model
    print(f"\nTraining throughput: batch {B}, {args.steps} steps/run, {args.rounds} round(s) alternating;")
    print(f"windows of {args.window} steps (the first window of each run is warm-up)")
    print(
        f"model: vision {m.vision_layers}x{m.vision_width} @ {m.image_size}px/{m.patch_size}, "
        f"text {m.text_layers}x{m.text_width}, loss {m.loss}; data generation + collation inside both loops"
    )
    print(
        f"torch threads: {torch.get_num_threads()}; load average before/after: {loads[0]:.1f}/{loads[1]:.1f}"
    )
    if max(loads) > (os.cpu_count() or 1):
        print("WARNING: other processes are busy: wall-clock figures are unreliable, CPU-time ones less so")
    wall = {name: statistics.median(w for w, _ in s) for name, s in per_step.items()}
    best = {name: min(w for w, _ in s) for name, s in per_step.items()}
    cpu = {name: statistics.median(c for _, c in s) for name, s in per_step.items()}
    names = {
        "bare": "bare PyTorch loop",
        "vlkit": "vlkit train()",
        "fwd+bwd only": "fwd+bwd only (fixed batch)",
    }
    head = (
        f"{'median images/s':>17}{'best':>7}{'step ms':>9}{'CPU ms':>8}{'GFLOP/s':>9}{'MFU':>7}{'MFU cpu':>9}"
    )
    print(f"\n{'loop':<28}{head}")
    for name, label in names.items():
        gflops, cpu_gflops = flops / wall[name] / 1e9, flops / cpu[name] / 1e9
        print(
            f"{label:<28}{B / wall[name]:>17.1f}{B / best[name]:>7.0f}{1000 * wall[name]:>9.1f}"
            f"{1000 * cpu[name]:>8.1f}{gflops:>9.1f}{gflops / peak[0]:>7.1%}{cpu_gflops / peak[1]:>9.1%}"
        )
    if logged:
        print(f"(vlkit's own logged images_per_s, median: {statistics.median(logged):.1f})")

    def overhead(t: dict) -> float:  # = (bare rate - vlkit rate) / bare rate
        return 1 - t["bare"] / t["vlkit"]

    mfu = flops / wall["vlkit"] / 1e9 / peak[0]
    print(f"\nFLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.2f} GFLOP")
    print(f"fp32 torch.mm (2048x2048, best of 5 per round, best round): {peak[0]:.1f} GFLOP/s wall, ", end="")
    print(f"{peak[1]:.1f} GFLOP per CPU-second")
    print(
        f"vlkit overhead vs bare loop: {overhead(wall):+.1%} (median), {overhead(best):+.1%} (best windows), "
        f"{overhead(cpu):+.1%} (CPU time)  goal <= {OVERHEAD_GOAL:.0%} on the median: "
        f"{'PASS' if overhead(wall) <= OVERHEAD_GOAL else 'MISS'}"
    )
    print(f"MFU of vlkit's step: {mfu:.1%}  goal >= {MFU_GOAL:.0%}: {'PASS' if mfu >= MFU_GOAL else 'MISS'}")


if __name__ == "__main__":
    sys.exit(main())
