"""Control: when does a from-scratch VLM start reading the image, and is the tower the cause?

    python benchmarks/vlm_plateau.py                 # three arms, 600 steps each (~10 min on 2 cores)
    python benchmarks/vlm_plateau.py --smoke         # tiny, seconds

One tiny generative model (vit-tiny 2x32 → MLP connector → gpt-tiny 2x64, 1024-token BPE,
batch 32, AdamW 3e-3), trained from scratch on single-object scenes in three arms, scored on
64 held-out single-object scenes every 100 steps:

- caption: "Describe the image" → the canonical caption ("a red circle"); score: the caption
  names the right colour (chance 1/8).
- vqa: every question of the scene as a multi-turn conversation (vlkit's default); score: the
  colour questions ("What color is the star?"), beside the question-only prior.
- vqa-oracle: the same, with the scene's objects also written in the prompt as text
  ("Objects: red star at 4 5."), in training and in evaluation. The answer can be copied
  from the text: if this arm is as slow as `vqa`, the plateau is the language model's (learning
  to look anything up in its context), not the vision tower's.

Writes benchmarks/results/vlm_plateau.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import torch
from common import run_info, write_results

import vlkit.train.generative as objective
from vlkit.config import Config, SourceConfig
from vlkit.data.scenes import Scenes, ScenesConfig, question_template
from vlkit.generation import GenerativeModel
from vlkit.metrics import question_only_prior
from vlkit.train.loop import train

ARMS = ("caption", "vqa", "vqa-oracle")


def oracle_text(scene) -> str:
    """The objects as text: colour, shape and box centre on a 10x10 grid."""
    parts = []
    for o in scene.objects:
        cx, cy = int((o.box[0] + o.box[2]) * 5), int((o.box[1] + o.box[3]) * 5)
        parts.append(f"{o.color} {o.shape} at {cx} {cy}")
    return "Objects: " + ", ".join(parts) + "."


@contextlib.contextmanager
def oracle_in_prompts() -> Iterator[None]:
    """Training samples carry their objects as text in the first user turn (the control arm)."""
    get, messages = Scenes.__getitem__, objective.sample_messages

    def getitem(self, i):
        return get(self, i) | {"oracle": oracle_text(self.scene(i))}

    def with_oracle(sample, tasks, rng, *options):
        out = [dict(m) for m in messages(sample, tasks, rng, *options)]
        out[0]["content"] = out[0]["content"].replace("\n", "\n" + sample["oracle"] + " ", 1)
        return out

    Scenes.__getitem__, objective.sample_messages = getitem, with_oracle
    try:
        yield
    finally:
        Scenes.__getitem__, objective.sample_messages = get, messages


def arm_config(arm: str, steps: int, out: str, smoke: bool) -> Config:
    cfg = Config()
    cfg.kind = "generative"
    m, v, t = cfg.model, cfg.vlm, cfg.train
    m.vision_stem, m.image_size, m.patch_size = "patch", 32, 8
    m.vision_width, m.vision_layers, m.vision_heads = (16, 1, 2) if smoke else (32, 2, 2)
    v.lm_width, v.lm_layers, v.lm_heads = (16, 1, 2) if smoke else (64, 2, 2)
    v.lm_vocab_size, v.max_length, v.connector = 1024, 200, "mlp2x_gelu"
    v.tasks = ["caption"] if arm == "caption" else ["vqa"]
    cfg.data.image_size = 32
    cfg.data.sources = [SourceConfig(kind="scenes", max_objects=1, caption_styles=1)]
    t.steps, t.batch_size, t.lr, t.warmup_steps = steps, 8 if smoke else 32, 3e-3, 10
    t.save_every, t.log_every, t.out_dir = 0, 50, out
    return cfg


def score(arm: str, model, cfg: Config, scenes: list) -> dict[str, float]:
    gm = GenerativeModel(model, cfg)
    images = [s.image for s in scenes]
    if arm == "caption":
        captions = gm.caption(images)
        named = [re.search(rf"\b{s.objects[0].color}\b", c) is not None for s, c in zip(scenes, captions)]
        return {"colour_accuracy": sum(named) / len(named)}
    pairs = [(s, qa) for s in scenes for qa in s.qa if qa.type in ("color", "shape")]
    prefix = [oracle_text(s) + " " if arm == "vqa-oracle" else "" for s, _ in pairs]
    answers = gm.answer([s.image for s, _ in pairs], [p + qa.question for p, (_, qa) in zip(prefix, pairs)])
    out = {}
    for kind, name in (("color", "colour"), ("shape", "shape")):
        hits = [a.strip().lower() == qa.answer for a, (_, qa) in zip(answers, pairs) if qa.type == kind]
        out[f"{name}_accuracy"] = sum(hits) / len(hits)
    return out


def run_arm(arm: str, steps: int, every: int, smoke: bool) -> list[dict]:
    scenes = [Scenes(ScenesConfig(32, 1, 1, seed=1_000_003)).scene(i) for i in range(8 if smoke else 64)]
    curve: list[dict] = []

    def evaluate(model, cfg):
        was = model.training
        model.eval()
        with torch.inference_mode():
            scores = score(arm, model, cfg, scenes)
        model.train(was)
        curve.append({"step": len(curve) * every + every} | scores)
        print(f"{arm}, step {curve[-1]['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        cfg = arm_config(arm, steps, tmp, smoke)
        cfg.train.eval_every = every
        with oracle_in_prompts() if arm == "vqa-oracle" else contextlib.nullcontext():
            train(cfg, evaluate=evaluate, progress=False)
    return curve


def priors(scenes: list) -> dict[str, float]:
    """The question-only prior (majority answer per question template) on the scored questions."""
    out = {}
    for kind, name in (("color", "colour"), ("shape", "shape")):
        qas = [qa for s in scenes for qa in s.qa if qa.type == kind]
        scores = question_only_prior(
            [question_template(q.question) for q in qas], [[q.answer] * 10 for q in qas]
        )
        out[name] = sum(scores) / len(scores)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.every = 4, 2
    load = os.getloadavg()[0]
    scenes = [Scenes(ScenesConfig(32, 1, 1, seed=1_000_003)).scene(i) for i in range(64)]
    result = {
        "chance": {"colour": 1 / 8, "shape": 1 / 4},
        "question_only_prior": priors(scenes),
        "curves": {arm: run_arm(arm, args.steps, args.every, args.smoke) for arm in ARMS},
    }
    if not args.smoke:
        write_results("vlm_plateau", run_info(load, torch.get_num_threads()) | result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
