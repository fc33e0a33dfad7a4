"""MaGiC zero-shot captions on held-out scenes, beside the unguided LM and a trained captioner.

    python benchmarks/magic.py --clip runs/tour --captioner runs/tour/llava --threads 1   # `make tour`'s runs
    python benchmarks/magic.py --threads 1     # no --clip: trains recipes/clip-scenes.yaml for --clip-steps
    python benchmarks/magic.py --smoke         # tiny models, a few images, seconds
    python benchmarks/magic.py --table         # benchmarks/README.md's table, from the results file

The language model is gpt-tiny trained on scene captions alone (`vlkit.train.text_lm`: captions of
the CLIP's training world as chat replies, never an image; --lm-steps). Rows, on the same held-out
scenes (EvalConfig's seed, never trained on):
  magic              the LM decoding by MaGiC search, the CLIP scoring its top-k against the image
  unguided           the same LM and search with beta = 0 (SimCTG's contrastive search, no image)
  magic, wrong image control: MaGiC steered by the next scene's image (what the image is worth)
  captioner          a trained generative VLM (--captioner), greedy, if given
Scores: vlkit.eval's caption task (BLEU-4, METEOR, ROUGE-L, CIDEr against each scene's 5 true
captions) and caption coverage (the share of objects named by colour and shape, and of captions
naming all of them). Writes benchmarks/results/magic.json (not in --smoke).
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
from common import RESULTS, SMOKE_MODEL, SMOKE_VLM, run_info, write_results

from vlkit.api import load
from vlkit.config import EvalConfig, VLMConfig, load_config
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.generative import caption, caption_coverage
from vlkit.generation.magic import MagicCaptioner, MagicSearch
from vlkit.train.loop import train
from vlkit.train.text_lm import CaptionLM, train_caption_lm

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHOWN = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "caption_objects_named", "caption_all_named")


class WrongImage:
    """The control: each image captioned as MaGiC would caption the next one in its batch."""

    def __init__(self, captioner: MagicCaptioner):
        self.captioner = captioner

    def caption(self, images: list, prompt: str | None = None) -> list[str]:
        return self.captioner.caption([*images[1:], *images[:1]], prompt)


def train_run(recipe: str, overrides: list[str], out: Path) -> Path:
    cfg = load_config(RECIPES / recipe, [*overrides, f"train.out_dir={out}", "train.eval_every=0"])
    started = time.perf_counter()
    folder = train(cfg, progress=False)
    print(f"trained {recipe} ({cfg.train.steps} steps) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def caption_lm(world: ScenesConfig, scenes: int, settings: CaptionLM, out: Path):
    """gpt-tiny trained on the captions of `scenes` training-world scenes (all caption styles)."""
    captions = [c for i in range(scenes) for c in Scenes(world).scene(i).captions]
    started = time.perf_counter()
    lm, tokenizer = train_caption_lm(
        captions, settings, out, log=lambda s, loss: print(f"  lm step {s}: {loss:.3f}")
    )
    print(
        f"caption LM: {len(captions)} captions, {settings.steps} steps, {time.perf_counter() - started:.0f} s"
    )
    return lm, tokenizer, len(captions)


def score(name: str, model, benches: list, batch_size: int = 8) -> dict:
    started = time.perf_counter()
    row: dict = {"system": name}
    examples = []
    for bench in benches:
        result = (caption if bench.task == "caption" else caption_coverage)(model, bench, batch_size)
        row |= {k: round(v, 4) for k, v in result.metrics.items()}
        examples += [p["caption"] for p in result.predictions[:3]] if bench.task == "caption" else []
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["examples"] = examples
    print(f"{name:>20}: " + "  ".join(f"{k} {row.get(k, float('nan')):.3f}" for k in SHOWN), flush=True)
    for text in examples:
        print(f"{'':>22}{text}")
    return row


def table(result: dict) -> str:
    """benchmarks/README.md's table, from a results file."""
    lines = ["| system | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for row in result["rows"]:
        lines.append(f"| {row['system']} | " + " | ".join(f"{row[k]:.3f}" for k in SHOWN) + " |")
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", help="a contrastive run or model folder (default: train clip-scenes)")
    p.add_argument("--clip-steps", type=int, default=300, help="steps when the CLIP is trained here")
    p.add_argument("--captioner", help="a generative run to compare with (e.g. runs/tour/llava)")
    p.add_argument("--images", type=int, default=64, help="held-out scenes per task")
    p.add_argument("--lm-scenes", type=int, default=2000, help="training scenes whose captions the LM reads")
    p.add_argument("--lm-steps", type=int, default=400)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=2.0)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny models and data, no results file")
    p.add_argument("--table", action="store_true", help="print the README table from the results file")
    return p.parse_args()


def main() -> None:
    args, load_before = parse(), os.getloadavg()[0]
    if args.table:
        print(table(json.loads((RESULTS / "magic.json").read_text())))
        return
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="vlkit-magic-"))
    if args.smoke:
        args.images, args.lm_scenes, args.lm_steps, args.max_new_tokens = 4, 20, 4, 6
        args.clip = str(
            train_run("clip-scenes.yaml", [*SMOKE_MODEL, "train.steps=2", "train.batch_size=8"], tmp / "clip")
        )
        vlm = [*SMOKE_VLM, "data.image_size=32", "train.steps=2", "train.batch_size=4"]
        args.captioner = str(train_run("llava-scenes.yaml", vlm, tmp / "llava"))
    elif args.clip is None:
        args.clip = str(train_run("clip-scenes.yaml", [f"train.steps={args.clip_steps}"], tmp / "clip"))
    guide = load(args.clip, kind="contrastive")
    d = guide.cfg.data
    world = ScenesConfig(
        image_size=d.image_size, min_objects=d.min_objects, max_objects=d.max_objects, seed=d.seed
    )
    lm_size = (
        VLMConfig(lm_vocab_size=512, max_length=64)
        if not args.smoke
        else VLMConfig(lm_width=16, lm_layers=1, lm_heads=2, lm_vocab_size=300, max_length=64)
    )
    lm, tokenizer, n_captions = caption_lm(
        world, args.lm_scenes, CaptionLM(lm=lm_size, steps=args.lm_steps), tmp / "lm"
    )
    benches = scene_benchmarks(
        d.image_size,
        d.min_objects,
        d.max_objects,
        EvalConfig().seed,
        args.images,
        ("caption", "caption-coverage"),
    )
    search = MagicSearch(args.k, args.alpha, args.beta, args.max_new_tokens)
    magic = MagicCaptioner(lm, tokenizer, guide, search)
    unguided = MagicCaptioner(lm, tokenizer, None, MagicSearch(args.k, args.alpha, 0.0, args.max_new_tokens))
    rows = [
        score("magic", magic, benches),
        score("unguided", unguided, benches),
        score("magic, wrong image", WrongImage(magic), benches),
    ]
    if args.captioner:
        rows.append(score("captioner", load(args.captioner, kind="generative"), benches))
    else:
        print("captioner: not run (give --captioner, a generative run such as make tour's runs/tour/llava)")
    result = {
        **run_info(load_before, args.threads),
        "clip": args.clip
        if "--clip" in sys.argv
        else f"recipes/clip-scenes.yaml, {args.clip_steps} steps, trained here",
        "captioner": args.captioner,
        "lm": {"model": "gpt-tiny", "captions": n_captions, "scenes": args.lm_scenes, "steps": args.lm_steps},
        "search": vars(search),
        "held_out": {"seed": EvalConfig().seed, "images_per_task": args.images},
        "rows": rows,
    }
    if not args.smoke:
        write_results("magic", result)


if __name__ == "__main__":
    main()
