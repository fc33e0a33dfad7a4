"""gpt-tiny-reader's question encoding in the staged recipe: what MiniLM costs per training step.

    python benchmarks/question_reader_speed.py --threads 1    # → results/question_reader_speed.json
    python benchmarks/question_reader_speed.py --smoke        # tiny batches, a few steps, no file

The recipe's stages in order, on the batches training draws (the same seed: the same conversations
at the same steps). At every step, the user turns no earlier step read are what the reader must
encode (its cache holds the rest; the cache's cap is far above what a run fills, which is checked).
Two cache policies are counted: one cache for every stage (vlkit now: the readers of one encoder
folder share it) and each stage its own (before: the second stage's new reader started empty).
Every `--every`-th step, three arms encode what they would miss there, in rotating order, timed:
before (each stage its own cache, its misses as one batch padded to the longest turn), the shared
cache's misses as one batch, and now (the shared cache's misses in batches of similar length,
`length_chunks`); the mean over those steps estimates each arm's seconds per training step.
Reported per stage: turns per step, turns encoded per step under each policy, the real-token share
of each batching, and each arm's seconds per step.
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
from common import SMOKE_VLM, run_info, write_results
from train_throughput import quiet_transformers

from vlkit.config import load_config, stage_configs
from vlkit.models.question_reader import CACHE_TURNS, PADDING, length_chunks
from vlkit.train.loop import prepare
from vlkit.train.machine import matmul_peak

ARMS = ("before: own cache, one batch", "one cache, one batch", "now: one cache, similar lengths")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/llava-clip-scenes-staged.yaml")
    p.add_argument("--every", type=int, default=20, help="time the encoding at every N-th step")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true")
    return p.parse_args(argv)


def stages(args: argparse.Namespace, out_dir: str) -> list[tuple[str, object]]:
    overrides = [f"train.out_dir={out_dir}", "vlm.vision_init="]
    if args.smoke:
        overrides += SMOKE_VLM + ["train.batch_size=4", "train.steps=4", "vlm.grounding_layer=-1"]
    named = stage_configs(load_config(args.recipe, overrides))
    # fresh weights (the encoder is the packaged MiniLM whatever the rest holds)
    return [(name, dataclasses.replace(c, vlm=dataclasses.replace(c.vlm, init_from=""))) for name, c in named]


def encode_seconds(reader, turns: list[tuple[int, ...]], padding: float) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for chunk in length_chunks(turns, padding):
            reader._encode(chunk)
    return time.perf_counter() - started


def real_share(turns: list[tuple[int, ...]], padding: float) -> tuple[int, int]:
    """(real tokens, tokens run) when `turns` are encoded with `padding` ([CLS], [SEP] counted)."""
    chunks = length_chunks(turns, padding)
    return sum(len(t) + 2 for t in turns), sum(len(c) * (len(c[-1]) + 2) for c in chunks)


def measure_stage(cfg, every: int, shared: set) -> dict:
    """One stage's steps: turns, misses under both cache policies, each arm's encoding time."""
    run = prepare(cfg)
    reader = run.model.base_language_model().get_input_embeddings()
    own: set = set()
    turns_n = own_n = shared_n = 0
    tokens = {"one batch": [0, 0], "similar lengths": [0, 0]}
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for step in range(cfg.train.steps):
        batch = run.objective.collate(run.batcher.samples(step * cfg.train.grad_accum))
        _, turns = reader.user_turns(batch["input_ids"])
        missing = list(dict.fromkeys(t for t in turns if t not in shared))
        own_missing = list(dict.fromkeys(t for t in turns if t not in own))
        turns_n += len(turns)
        own_n += len(own_missing)
        shared_n += len(missing)
        own.update(turns)
        shared.update(missing)
        if step % every:
            continue
        work = {ARMS[0]: (own_missing, 1.0), ARMS[1]: (missing, 1.0), ARMS[2]: (missing, PADDING)}
        turn = step // every % len(ARMS)
        for arm in ARMS[turn:] + ARMS[:turn]:
            seconds[arm].append(encode_seconds(reader, *work[arm]) if work[arm][0] else 0.0)
        for name, padding in (("one batch", 1.0), ("similar lengths", PADDING)):
            real, run_tokens = real_share(missing, padding)
            tokens[name][0] += real
            tokens[name][1] += run_tokens
    if len(shared) > CACHE_TURNS:
        raise SystemExit(f"{len(shared)} turns: above the reader's cache ({CACHE_TURNS}); counted as if kept")
    steps = cfg.train.steps
    timed = len(seconds[ARMS[0]])
    return {
        "steps": steps,
        "batch_size": cfg.train.batch_size,
        "turns_per_step": turns_n / steps,
        "encoded_per_step": {
            "each stage its own cache": own_n / steps,
            "one cache for every stage": shared_n / steps,
        },
        "timed_steps": timed,
        "real_token_share": {k: r / max(t, 1) for k, (r, t) in tokens.items()},
        "encode_seconds_per_step": {k: statistics.fmean(v) if v else 0.0 for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    peak = matmul_peak()[0]
    shared: set = set()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in stages(args, tmp):
            out[name] = measure_stage(cfg, 1 if args.smoke else args.every, shared)
            r = out[name]
            t = r["encode_seconds_per_step"]
            print(
                f"{name}: {r['turns_per_step']:.1f} turns/step; encoded per step: own cache "
                f"{r['encoded_per_step']['each stage its own cache']:.1f}, shared "
                f"{r['encoded_per_step']['one cache for every stage']:.1f}; real tokens: one batch "
                f"{r['real_token_share']['one batch']:.1%}, similar lengths {r['real_token_share']['similar lengths']:.1%}; "
                f"encode s/step: " + ", ".join(f"{arm} {v:.3f}" for arm, v in t.items()),
                flush=True,
            )
    if not args.smoke:
        result = {"recipe": args.recipe, "padding": PADDING, "every": args.every, "stages": out}
        result["environment"] = run_info(load, torch.get_num_threads()) | {"fp32_mm_peak_gflops": peak}
        write_results("question_reader_speed", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
