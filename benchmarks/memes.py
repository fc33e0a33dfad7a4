"""Multimodal classification fine-tuning (ViLT's Hateful Memes / SNLI-VE recipe) on a scenes task
in the Hateful Memes format: does the caption describe the image?

Writes the task (`vlkit data memes`: train / dev / test, hard negatives), pre-trains a fusion
encoder with `recipes/vilt-scenes.yaml` (ITM + MLM; shortened by --pretrain-steps) unless --init
names one, then fine-tunes `recipes/vilt-memes.yaml` (a classifier over the fused [CLS]) from it,
and the same recipe from scratch (`model.init_from=`, a tokenizer trained on the memes' texts) as
the control. Scored on the test split by `vlkit eval --task hateful-memes`'s code: AUROC and
accuracy beside the majority class, and the pre-trained model's ITM logit as a zero-shot score.

    python benchmarks/memes.py --threads 1 --pretrain-steps 150 --steps 200   # → results/memes.json
    python benchmarks/memes.py --threads 1 --name small --image-size 32 --set model.image_size=32 \
        --set data.image_size=32 --set model.width=64 --set model.layers=2 --set model.heads=2
    python benchmarks/memes.py --smoke                                        # tiny, seconds (CI)

Writes benchmarks/results/memes[-<name>].json (date, commit, load, threads, each training's
recipe, overrides, minutes and training-time evaluations, and the test scores).
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
from common import run_info, write_results
from trained import ROOT, train_recipe

from vlkit.api import load
from vlkit.data.memes import write_scene_memes
from vlkit.eval.fusion import hateful_memes
from vlkit.eval.loaders import load_hateful_memes
from vlkit.eval.result import hateful_memes_result

SMOKE = [
    "model.width=16", "model.layers=1", "model.heads=2", "model.vocab_size=512", "model.embed_dim=8",
    "model.image_size=32", "data.image_size=32", "train.steps=3", "train.batch_size=4", "train.eval_every=0",
    "eval.num_images=8",
]  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="config override for every training (sizes)")
    p.add_argument("--image-size", type=int, default=64, help="the memes' scene size")
    p.add_argument(
        "--init", default="", help="a pre-trained fusion run to fine-tune (default: pre-train one)"
    )
    p.add_argument("--pretrain-steps", type=int, default=150, help="vilt-scenes steps when pre-training here")
    p.add_argument("--steps", type=int, default=200, help="fine-tuning steps (each of the two runs)")
    p.add_argument("--memes", type=int, nargs=3, default=[4000, 500, 1000], metavar=("TRAIN", "DEV", "TEST"))
    p.add_argument("--name", default="", help="results file suffix: memes-<name>.json")
    p.add_argument("--smoke", action="store_true", help="tiny models, 3 steps, no results file")
    return p.parse_args(argv)


def fine_tune(init: str, memes: Path, tmp: Path, name: str, args) -> tuple[Path, dict]:
    """recipes/vilt-memes.yaml from `init` ("": from scratch) on `memes` → (run, what it records)."""
    sets = [
        f"model.init_from={init}",
        f"data.sources=[{{kind: hateful-memes, path: {memes}}}]",
        f"eval.data={memes}",
        f"train.steps={args.steps}",
        f"train.eval_every={args.steps}",
        *args.set,
        *(SMOKE if args.smoke else []),
    ]
    run, _, settings = train_recipe(str(ROOT / "recipes" / "vilt-memes.yaml"), sets, tmp / name, args.threads)
    return run, settings


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    counts = dict(zip(("train", "dev", "test"), [8, 8, 16] if args.smoke else args.memes))
    result: dict = {"memes": counts}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        memes = tmp / "scene-memes"
        write_scene_memes(memes, counts, image_size=32 if args.smoke else args.image_size)
        init = args.init
        if not init:
            steps = 3 if args.smoke else args.pretrain_steps
            sets = [f"train.steps={steps}", *args.set, *(SMOKE if args.smoke else [])]
            recipe = str(ROOT / "recipes" / "vilt-scenes.yaml")
            run, _, result["pretrain"] = train_recipe(recipe, sets, tmp / "pretrain", args.threads)
            init = str(run)
        runs = {}
        for name, start in (("fine-tuned", init), ("from scratch", "")):
            runs[name], result[name] = fine_tune(start, memes, tmp, name.replace(" ", "-"), args)
        test = load_hateful_memes(memes / "test.jsonl")
        clock = time.perf_counter()
        scores = {name: hateful_memes(load(run, kind="fusion"), test).metrics for name, run in runs.items()}
        pretrained = load(init, kind="fusion")
        itm = pretrained.match([e["image"] for e in test.examples], [e["text"] for e in test.examples])
        scores["pre-trained ITM logit, zero-shot"] = hateful_memes_result(test, itm).metrics
        result["test_eval_seconds"] = time.perf_counter() - clock
    result = run_info(load_before, args.threads) | {"init": args.init} | result | {"test": scores}
    print(json.dumps(scores, indent=1))
    if not args.smoke:
        write_results("memes" + (f"-{args.name}" if args.name else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
