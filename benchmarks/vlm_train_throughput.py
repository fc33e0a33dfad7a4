"""Generative training throughput: vlkit's training step vs TRL's `SFTTrainer` on the same LLaVA
model and data; loss agreement, the frozen-feature cache's share and MFU.

    python benchmarks/vlm_train_throughput.py --stage 1     # llava-scenes sizes; vision + LM frozen
    python benchmarks/vlm_train_throughput.py --stage 2     # vision frozen; LM + connector train
    python benchmarks/vlm_train_throughput.py --smoke       # tiny model, few steps, < 1 min (CI)

One model: `prepare(cfg)` builds the recipe's model (`recipes/llava-scenes.yaml`, seeded), which is
saved and exported with `vlkit.export.export_llava`; TRL trains the exported
`LlavaForConditionalGeneration` (same weights), vlkit its own model through `prepare` +
`train_step` (its real loop, minus logging and checkpoints). Same data: both render every step's
samples from the scenes world (`Batcher` positions) and collate them with vlkit's
`GenerativeObjective.collate` (TRL gets it as `data_collator`, positions in order), so token
sequences, labels and pixel values are identical, data work sits inside both timings. Same
optimizer: vlkit's `make_optimizer` (AdamW, decay groups) and warmup + cosine `LambdaLR` are passed
to SFTTrainer as `optimizers=`, `max_grad_norm` = `train.grad_clip`. Same precision: fp32 on both
sides. TRL's `SFTConfig` turns bf16 autocast on by default (when fp16 is unset, CPU included), so
`bf16=False` is set explicitly, and every Linear layer's output dtype is recorded on both sides
during the timed runs: anything but float32 stops the benchmark. SFTTrainer runs with its
defaults except those, `gradient_checkpointing=False` (TRL turns it on; it recomputes activations,
a memory trade vlkit does not make) and what makes the data the same (`skip_prepare_dataset`,
sequential sampling). It keeps its fused LM head and its entropy / token-accuracy metrics.

Timing is `train_throughput.py`'s: a global optimizer step post-hook stamps wall and CPU time after
every step of either loop; windows of `--window` steps, the first of each run is warm-up; runs
alternate (vlkit, trl, trl, vlkit, ...) over `--rounds`; medians. Loss curves: the per-step
losses of the first run of each side (the other runs repeat them: same seed), max |difference|.

Cache share: one vlkit step (forward, backward, AdamW) on a fixed batch with `pixel_values`, and
with the frozen tower's features precomputed (`vision_grid=`, what `vlm.feature_cache` feeds),
medians: (t_pixels - t_cached) / t_pixels. MFU: FLOPs of vlkit's step (FlopCounterMode with the
CPU attention kernels counted by hand) / its median step time / the fp32 `torch.mm` peak measured
in this run.

Goals: vlkit >= 1.25x SFTTrainer's samples/s (median), MFU >= 40%. PASS/MISS never changes the
exit code. Writes benchmarks/results/vlm_train_throughput-stage<N>.json (not with --smoke).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import SMOKE_VLM, run_info, write_results
from torch.utils.flop_counter import FlopCounterMode
from train_throughput import CPU_ATTENTION, StepClock, quiet_transformers

from vlkit.config import Config, load_config
from vlkit.export import export_llava
from vlkit.models.build import save_model
from vlkit.train.generative import GenerativeObjective
from vlkit.train.loop import lr_lambda, make_optimizer, prepare, train_step
from vlkit.train.machine import matmul_peak

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llava-scenes.yaml"
SPEEDUP_GOAL = 1.25
MFU_GOAL = 0.40
STAGES = {  # --stage → (vlm.freeze_vision, vlm.freeze_lm)
    "1": (True, True),  # LLaVA stage 1: the connector alone aligns the frozen tower and LM
    "2": (True, False),  # LLaVA stage 2: connector + LM fine-tune, tower frozen
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=sorted(STAGES), default="1", help="what trains (see STAGES)")
    p.add_argument("--steps", type=int, default=20, help="steps per run (a multiple of --window)")
    p.add_argument("--window", type=int, default=5, help="steps per timing window")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating")
    p.add_argument("--batch", type=int, help="train.batch_size (default: the recipe's, 64)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny model, batch 8, 4 steps: for CI")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.window, args.rounds = 4, 2, 1
        args.batch = args.batch or 8
        args.overrides = SMOKE_VLM + args.overrides
    if args.steps % args.window or args.steps < 2 * args.window:
        p.error(f"--steps {args.steps} must be a multiple of --window {args.window} and at least two windows")
    return args


def make_config(args: argparse.Namespace, out_dir: Path) -> Config:
    freeze_vision, freeze_lm = STAGES[args.stage]
    overrides = [f"vlm.freeze_vision={freeze_vision}", f"vlm.freeze_lm={freeze_lm}", *args.overrides]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    cfg = load_config(RECIPE, overrides)
    t = cfg.train
    t.steps, t.log_every, t.eval_every, t.save_every, t.out_dir = args.steps, args.steps, 0, 0, str(out_dir)
    t.threads = args.threads
    cfg.vlm.feature_cache = ""  # both sides run the tower on pixels every step; its share is timed apart
    if t.grad_accum != 1 or t.bf16:
        raise SystemExit("this benchmark compares single-micro-batch fp32 steps")
    return cfg


# --------------------------------------------------------------------------- the two loops


def require_fp32(name: str, model: torch.nn.Module):
    """Records the dtype of every Linear output while the context is open; anything but float32
    (an autocast left on) stops the benchmark, since the comparison is fp32 against fp32."""

    class Check:
        def __enter__(self):
            self.dtypes: set[torch.dtype] = set()
            self.hooks = [
                m.register_forward_hook(lambda mod, args, out: self.dtypes.add(out.dtype))
                for m in model.modules()
                if isinstance(m, torch.nn.Linear)
            ]
            return self

        def __exit__(self, *exc):
            for hook in self.hooks:
                hook.remove()
            if exc[0] is None and self.dtypes != {torch.float32}:
                raise SystemExit(
                    f"{name}: Linear layers ran in {sorted(map(str, self.dtypes))}, not fp32 alone"
                )

    return Check()


def vlkit_loop(cfg: Config, out_dir: Path) -> list[float]:
    """vlkit's `prepare` + `train_step` into a fresh folder (no resume); → the loss of every step."""
    cfg = copy.deepcopy(cfg)
    cfg.train.out_dir = str(out_dir)
    run = prepare(cfg)
    with require_fp32("vlkit", run.model):
        return [train_step(run, step)[0] for step in range(cfg.train.steps)]


def trl_loop(
    cfg: Config, hf_dir: Path, objective: GenerativeObjective, batcher, out_dir: Path
) -> list[float]:
    """TRL's SFTTrainer on the exported LLaVA model; → the loss of every step."""
    from datasets import Dataset
    from transformers import AutoProcessor, LlavaForConditionalGeneration, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    t = cfg.train
    model = LlavaForConditionalGeneration.from_pretrained(hf_dir)
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if not cfg.vlm.freeze_lm:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    if not cfg.vlm.freeze_vision:
        model.model.vision_tower.requires_grad_(True)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        positions = [item["position"] for item in items]
        return objective.collate([(p, batcher.dataset[batcher.index(p)]) for p in positions])

    losses: list[float] = []

    class Trainer(SFTTrainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            losses.append(loss.item())  # the logged loss is averaged and rounded; keep every step's
            return loss

    args = SFTConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=t.batch_size,
        max_steps=t.steps,
        max_grad_norm=t.grad_clip or None,
        gradient_checkpointing=False,
        bf16=False,  # TRL's SFTConfig defaults to bf16 autocast (CPU included); vlkit trains in fp32
        fp16=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        train_sampling_strategy="sequential",
        max_length=None,
        logging_steps=t.steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=t.seed,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(
            {"position": list(range(t.steps * t.batch_size))}
        ),  # rendered by collate
        data_collator=collate,
        processing_class=AutoProcessor.from_pretrained(hf_dir),
        optimizers=(optimizer, scheduler),
    )
    trainer.remove_callback(PrinterCallback)  # no log dicts in the benchmark's output
    if trainer.accelerator.mixed_precision != "no":
        raise SystemExit(f"SFTTrainer: mixed precision {trainer.accelerator.mixed_precision!r}, not fp32")
    with require_fp32("SFTTrainer", model):
        trainer.train()
    return losses


# --------------------------------------------------------------------------- one-step measurements


def step_flops(model: torch.nn.Module, objective: GenerativeObjective, batch: dict) -> int:
    """FLOPs of forward + loss + backward (the frozen parts need no weight gradients)."""
    model = copy.deepcopy(model).train()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        objective.loss(model, batch).backward()
    return counter.get_total_flops()


def step_seconds(cfg: Config, model: torch.nn.Module, batch: dict, reps: int) -> dict[str, float]:
    """Median wall seconds of one step (forward, backward, AdamW) on a fixed batch, from pixels and
    from the frozen tower's cached features (`vision_grid`), interleaved."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, cfg)
    with torch.no_grad():
        grid = model.vision_grid(batch["pixel_values"])  # (B, N, Dv): what the feature cache stores
    text = {k: v for k, v in batch.items() if k != "pixel_values"}
    inputs = {"pixels": batch, "cached": text | {"vision_grid": grid}}
    times: dict[str, list[float]] = {"pixels": [], "cached": []}
    for _ in range(reps + 1):  # the first is warm-up
        for name, b in inputs.items():
            clock = time.perf_counter()
            model(**b).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - clock)
    return {name: statistics.median(s[1:]) for name, s in times.items()}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vlkit-vlm-train-bench-") as tmp:
        tmp = Path(tmp)
        cfg = make_config(args, tmp / "setup")
        setup = prepare(cfg)  # the model every run starts from (each run rebuilds it, seeded)
        save_model(setup.model, cfg, tmp / "vlkit")
        hf_dir = export_llava(tmp / "vlkit", tmp / "llava")
        batch = setup.objective.collate(setup.batcher.samples(0))
        flops = step_flops(setup.model, setup.objective, batch)

        per_step: dict[str, list[tuple[float, float]]] = {"vlkit": [], "trl": []}
        curves: dict[str, list[float]] = {}
        peaks, one_step = [], []
        for r in range(args.rounds):
            for name in ("vlkit", "trl") if r % 2 == 0 else ("trl", "vlkit"):
                with StepClock() as clock:
                    if name == "vlkit":
                        losses = vlkit_loop(cfg, tmp / f"vlkit-{r}")
                    else:
                        losses = trl_loop(cfg, hf_dir, setup.objective, setup.batcher, tmp / f"trl-{r}")
                curves.setdefault(name, losses)
                per_step[name] += clock.windows(args.window)
            peaks.append(matmul_peak())
            one_step.append(step_seconds(cfg, setup.model, batch, reps=2 if args.smoke else 4))
    cache = {k: statistics.median(s[k] for s in one_step) for k in ("pixels", "cached")}
    figures = report(
        args, cfg, per_step, curves, flops, max(p[0] for p in peaks), cache, (load_before, os.getloadavg()[0])
    )
    if not args.smoke:
        import transformers
        import trl

        versions = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        }
        info = run_info(load_before, torch.get_num_threads()) | versions
        write_results(
            f"vlm_train_throughput-stage{args.stage}", info | {"batch_size": cfg.train.batch_size} | figures
        )
    return 0


def report(args, cfg: Config, per_step, curves, flops: int, peak: float, cache, loads) -> dict:
    """Prints the tables; → the figures for the results file."""
    B, m, v = cfg.train.batch_size, cfg.model, cfg.vlm
    trains = "connector" + ("" if v.freeze_lm else " + LM") + ("" if v.freeze_vision else " + vision")
    print(f"\nGenerative training throughput, stage {args.stage} ({trains} train): batch {B}, ", end="")
    print(f"{args.steps} steps/run, {args.rounds} round(s) alternating; windows of {args.window} steps")
    print(
        f"model: vision {m.vision_layers}x{m.vision_width} @ {m.image_size}px/{m.patch_size} → {v.connector} → "
        f"LM {v.lm_layers}x{v.lm_width} (vocab {v.lm_vocab_size}); data rendering + collation inside both loops"
    )
    print(
        f"torch threads: {torch.get_num_threads()}; load average before/after: {loads[0]:.1f}/{loads[1]:.1f}"
    )
    if max(loads) > (os.cpu_count() or 1):
        print("WARNING: other processes are busy: wall-clock figures are unreliable, CPU-time ones less so")
    wall = {n: statistics.median(w for w, _ in s) for n, s in per_step.items()}
    best = {n: min(w for w, _ in s) for n, s in per_step.items()}
    cpu = {n: statistics.median(c for _, c in s) for n, s in per_step.items()}
    labels = {"vlkit": "vlkit prepare + train_step", "trl": "TRL SFTTrainer (LLaVA export)"}
    print(f"\n{'loop':<32}{'median samples/s':>17}{'best':>7}{'step ms':>9}{'CPU ms':>8}{'MFU':>7}")
    for name, label in labels.items():
        mfu = flops / wall[name] / 1e9 / peak
        print(
            f"{label:<32}{B / wall[name]:>17.1f}{B / best[name]:>7.1f}{1000 * wall[name]:>9.1f}"
            f"{1000 * cpu[name]:>8.1f}{mfu:>7.1%}"
        )
    speedup = wall["trl"] / wall["vlkit"]
    print(
        f"\nvlkit / SFTTrainer samples/s: {speedup:.2f}x (median), {best['trl'] / best['vlkit']:.2f}x (best), "
        f"{cpu['trl'] / cpu['vlkit']:.2f}x (CPU time)  goal >= {SPEEDUP_GOAL}x: "
        f"{'PASS' if speedup >= SPEEDUP_GOAL else 'MISS'}"
    )
    print("precision: fp32 on both sides (SFTConfig bf16=False; every Linear output was float32)")
    a, b = curves["vlkit"], curves["trl"]
    diff = max(abs(x - y) for x, y in zip(a, b))
    print(f"loss curves over {len(a)} steps, max |vlkit - trl|: {diff:.2e}")
    print("  step " + " ".join(f"{k + 1:>7}" for k in range(len(a))))
    print("  vlkit" + " ".join(f"{x:>7.4f}" for x in a))
    print("  trl  " + " ".join(f"{x:>7.4f}" for x in b))
    share = (cache["pixels"] - cache["cached"]) / cache["pixels"]
    print(
        f"frozen-feature cache: one step {1000 * cache['pixels']:.1f} ms from pixels, {1000 * cache['cached']:.1f} ms "
        f"from cached features: the cache removes {share:.1%} of the step"
    )
    mfu = flops / wall["vlkit"] / 1e9 / peak
    print(f"FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.2f} GFLOP")
    print(f"fp32 torch.mm (2048x2048, best of 5 per round, best round): {peak:.1f} GFLOP/s")
    print(f"MFU of vlkit's step: {mfu:.1%}  goal >= {MFU_GOAL:.0%}: {'PASS' if mfu >= MFU_GOAL else 'MISS'}")
    return {
        "precision": "fp32 both sides (Linear outputs checked)",
        "samples_per_s": {n: {"median": B / wall[n], "best": B / best[n]} for n in wall},
        "ratio": {"median": speedup, "best": best["trl"] / best["vlkit"], "cpu": cpu["trl"] / cpu["vlkit"]},
        "speedup_goal": SPEEDUP_GOAL,
        "speedup_verdict (median)": "PASS" if speedup >= SPEEDUP_GOAL else "MISS",
        "losses": curves,
        "max_loss_diff": diff,
        "cache_share": share,
        "gflop_per_step": flops / 1e9,
        "fp32_mm_peak_gflops": peak,
        "mfu": mfu,
        "mfu_verdict": "PASS" if mfu >= MFU_GOAL else "MISS",
    }


if __name__ == "__main__":
    sys.exit(main())
