"""Memory per process of `train.distributed: ddp` vs `fsdp`: 2 gloo processes, a few steps each.

Each mode is launched with `torchrun --nproc_per_node 2` running this file as the worker, which
builds the run with vlkit's own `prepare` and trains `--steps` steps with `train_step`, then
reports, per process: the bytes of the parameters and AdamW state it holds between steps (an
FSDP process holds its shards: DTensor local parts; gradients are freed after each step, so
`gradient_bytes` is 0 there, and during a step they add one more copy of the trainable
parameters' bytes in either mode), its resident memory after the steps (RSS now) and its peak RSS. Both modes build the whole model in every process before FSDP shards it, so the
peak RSS includes one full copy of the weights either way; the held bytes are what a longer run
keeps. Losses are printed beside, to show both modes train the same steps.

    python benchmarks/fsdp_memory.py --smoke                      # tiny llava-scenes, seconds
    python benchmarks/fsdp_memory.py --recipe recipes/llava-smollm2.yaml --steps 2 \\
        --set vlm.freeze_lm=false     # full SmolLM2 fine-tune inside the VLM
        → benchmarks/results/fsdp_memory-<recipe>.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SMOKE_VLM, run_info, write_results

ROOT = Path(__file__).resolve().parents[1]
MODES = ("ddp", "fsdp")


def held_bytes(tensors) -> int:
    """Bytes this process holds for these tensors (a DTensor: its local shard)."""
    total = 0
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def rss_now() -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def worker(args: argparse.Namespace) -> None:
    """One process of one mode: prepare, train `steps` steps, write this rank's figures."""
    import torch

    from vlkit.config import load_config
    from vlkit.train.loop import prepare, train_step

    overrides = [*args.set, f"train.distributed={args.mode}", f"train.out_dir={args.out}/run-{args.mode}"]
    cfg = load_config(args.recipe, overrides)
    run = prepare(cfg)
    losses = []
    for step in range(args.steps):
        clock = time.perf_counter()
        loss, _, _ = train_step(run, step)
        losses.append({"loss": loss, "seconds": time.perf_counter() - clock})
    params = list(run.model.parameters())
    state = [v for slots in run.optimizer.state.values() for v in slots.values() if torch.is_tensor(v)]
    figures = {
        "rank": run.accelerator.process_index,
        "processes": run.accelerator.num_processes,
        "parameters": sum(p.numel() for p in run.model.parameters()),  # local elements
        "parameter_bytes": held_bytes(params),
        "gradient_bytes": held_bytes(p.grad for p in params if p.grad is not None),
        "optimizer_bytes": held_bytes(state),
        "rss_after_steps_bytes": rss_now(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "steps": losses,
    }
    Path(args.out, f"{args.mode}-rank{figures['rank']}.json").write_text(json.dumps(figures))


def launch(args: argparse.Namespace, mode: str, out: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [__file__, "--worker", "--mode", mode, "--out", out, "--steps", str(args.steps)]
    command += ["--recipe", args.recipe, *[x for s in args.set for x in ("--set", s)]]
    clock = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    print(f"{mode}: {time.perf_counter() - clock:.0f} s")
    return [json.loads(Path(out, f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "llava-scenes.yaml"))
    p.add_argument("--set", action="append", default=[], help="config overrides, as `vlkit train --set`")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--smoke", action="store_true", help="the tiny llava-scenes model, no results file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        from vlkit.train.loop import exit_distributed_process

        worker(args)
        return exit_distributed_process()  # after the worker's models are gone
    if args.smoke:
        args.set = [*SMOKE_VLM, "train.batch_size=4", *args.set]
    # a frozen tower's feature cache runs outside forward, which FSDP refuses: both modes go without
    args.set = ["vlm.feature_cache=", "train.eval_every=0", *args.set]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        ranks = {mode: launch(args, mode, out) for mode in MODES}
    mib = 2**20
    for mode, rows in ranks.items():
        for r in rows:
            held = (r["parameter_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"]) / mib
            print(
                f"{mode} rank {r['rank']}: params+AdamW {held:.1f} MiB, RSS after steps "
                f"{r['rss_after_steps_bytes'] / mib:.0f} MiB, peak RSS {r['peak_rss_bytes'] / mib:.0f} MiB, "
                f"losses {[round(s['loss'], 4) for s in r['steps']]}"
            )
    if not args.smoke:
        result = {
            "recipe": Path(args.recipe).name,
            "overrides": args.set,
            "steps": args.steps,
            "ranks": ranks,
        }
        write_results(
            f"fsdp_memory-{Path(args.recipe).stem}", result | {"run": run_info(load_before, args.threads)}
        )


if __name__ == "__main__":
    main()
