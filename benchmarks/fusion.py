"""The fusion-encoder recipes (ViLT: ITM + MLM; FLAVA-style: + the unimodal contrastive loss),
trained and scored on held-out scenes, beside chance and, given `--clip RUN`, a CLIP scored on
the same examples in the same run:

- colour-swap Winoground text / image / group by ITM (the CLIP's by cosine; with `--clip`, also
  by ITM + the CLIP's logit, cosine x its scale);
- text → image R@1 by ITM over every pair of a small held-out set; with `--clip`, the CLIP's own
  R@k and the CLIP's top-10 per caption re-ranked (ALBEF / BLIP) by ITM alone, by ITM + cosine
  (BLIP's retrieval score) and by ITM + the CLIP's logit;
- ITM accuracy per kind of pair (true caption, colours swapped, a shape changed, another image's
  caption) and per object count on 1-3-object scenes (`fusion.matching_by_kind`): which of its
  training negatives the model tells apart;
- the same colour-swap Winoground by MLM (`fusion.masked_winoground`): every colour of each
  caption blanked, the caption's own colours' log-probabilities summed: does MLM read which colour
  each object has, or only which colours the scene holds;
- MLM fill-in-the-blank on one-object scenes: "a [MASK] circle" → colour (of 8), "a red [MASK]"
  → shape (of 4).

    python benchmarks/fusion.py --threads 1 --clip runs/tour                          # vilt-scenes
    python benchmarks/fusion.py --threads 1 --clip runs/tour --recipe recipes/flava-scenes.yaml --name flava
    python benchmarks/fusion.py --smoke                                                # tiny, seconds (CI)

Writes benchmarks/results/fusion[-<name>].json (date, commit, load, threads, the fp32 `torch.mm`
peak measured in the same run, the training-time evaluations and the held-out scores).
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
from vlkit.data.scenes import COLOR_NAMES, SHAPES, Scenes, ScenesConfig
from vlkit.eval import contrastive, fusion
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.result import flat_scores
from vlkit.train.machine import matmul_peak

SMOKE = [
    "model.width=16", "model.layers=1", "model.heads=2", "model.vocab_size=512", "model.embed_dim=8",
    "model.image_size=32", "data.image_size=32", "train.steps=3", "train.batch_size=4", "train.eval_every=0",
    "eval.num_images=8",
]  # fmt: skip
SEED = 1_000_003  # the held-out scenes' seed (`EvalConfig.seed`), never used for training


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "vilt-scenes.yaml"))
    p.add_argument("--set", action="append", default=[], help="config override, as `vlkit train --set`")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--images", type=int, default=512, help="held-out scenes: Winoground takes a quarter as pairs"
    )
    p.add_argument("--retrieval-images", type=int, default=64, help="held-out images for ITM retrieval")
    p.add_argument("--blanks", type=int, default=256, help="one-object scenes for fill-in-the-blank")
    p.add_argument("--kinds", type=int, default=300, help="1-3-object scenes for ITM by kind of pair")
    p.add_argument("--clip", default="", help="a contrastive run scored beside it (e.g. runs/tour)")
    p.add_argument("--name", default="", help="results file suffix: fusion-<name>.json")
    p.add_argument("--out", default="", help="run folder (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, no results file")
    return p.parse_args(argv)


def held_out(model, clip, args, image_size: int) -> dict:
    """Every held-out score of the fusion model (and of `clip` on the same examples, if given)."""
    images = 8 if args.smoke else args.images
    (wino,) = scene_benchmarks(image_size, 2, 2, SEED, images, ("winoground",))
    (ret,) = scene_benchmarks(
        image_size, 1, 3, SEED, 8 if args.smoke else args.retrieval_images, ("retrieval",)
    )
    world = Scenes(ScenesConfig(image_size=image_size, seed=SEED + 7))
    count = 8 if args.smoke else args.blanks
    # every colour with every shape: colour i % 8, shape (i + i // 8) % 4
    singles = [world.single(i, COLOR_NAMES[i % 8], SHAPES[(i + i // 8) % 4]) for i in range(count)]
    crowd = Scenes(ScenesConfig(image_size=image_size, min_objects=1, max_objects=3, seed=SEED + 11))
    crowded = [crowd.scene(i) for i in range(8 if args.smoke else args.kinds)]
    scores = {
        "itm": flat_scores([fusion.winoground(model, wino), fusion.retrieval(model, ret)]),
        "mlm_colours_blanked": flat_scores([fusion.masked_winoground(model, wino, COLOR_NAMES)]),
        "fill_in_the_blank": fusion.fill_in_the_blank(model, singles),
        "itm_accuracy_by_kind": fusion.matching_by_kind(model, crowded),
        "winoground_pairs": len(wino.examples),
        "retrieval_images": len(ret.examples),
        "chance": {
            "wino_text": 0.25,
            "wino_image": 0.25,
            "wino_group": 1 / 6,
            "t2i_R@1": 1 / len(ret.examples),
        },
    }
    if clip is not None:
        features = contrastive.ImageFeatures(clip)
        scores["clip"] = flat_scores([contrastive.winoground(clip, wino, features)])
        scores["clip"] |= flat_scores([fusion.rerank_retrieval(clip, model, ret, k=10)])
        scores["itm + clip logit"] = flat_scores([fusion.winoground(model, wino, dual=clip)])
    return scores


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    peak, _ = matmul_peak()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or str(Path(tmp) / "run")
        sets = [*args.set, *(SMOKE if args.smoke else [])]
        run, cfg, trained = train_recipe(args.recipe, sets, out, args.threads)
        model = load(run, kind="fusion")
        clip = load(args.clip, kind="contrastive") if args.clip else None
        clock = time.perf_counter()
        scores = held_out(model, clip, args, cfg.data.image_size)
        eval_seconds = time.perf_counter() - clock
    result = (
        run_info(load_before, args.threads)
        | trained
        | {
            "overrides": args.set,
            "clip": args.clip,
            "final_eval_seconds": eval_seconds,
            "matmul_peak_gflops": peak,
            "held_out": scores,
        }
    )
    print(json.dumps(result["held_out"], indent=1))
    if not args.smoke:
        write_results("fusion" + (f"-{args.name}" if args.name else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
