"""Time to accuracy: held-out scenes scores vs training images and minutes, over seeds, beside a
control and the chance baselines. The figures in README.md and the recipes come from its results.

    python benchmarks/time_to_accuracy.py                                   # clip-scenes, 3 seeds
    python benchmarks/time_to_accuracy.py --seeds 0 --steps 300 --name patch --set model.vision_stem=patch
    python benchmarks/time_to_accuracy.py --control                         # + the bare-loop control
    python benchmarks/time_to_accuracy.py --smoke                           # tiny, seconds (CI)
    python benchmarks/time_to_accuracy.py --recipe recipes/llava-scenes.yaml --name llava-scenes

A generative recipe is scored by its training-time evaluation (held-out scenes VQA by question
type beside the question-only prior, paraphrased questions, caption coverage); its baseline row
is that prior, computed by the evaluation from the held-out questions. The control is CLIP's.

Each seed trains the recipe with vlkit's loop (`train.seed` = the seed: initialisation and batch
order) and scores the held-out scenes (`evaluate_scenes`: 32-way zero-shot, retrieval, colour-swap
Winoground) every `--eval-every` steps. Minutes count training only (evaluation excluded) and are
also given scaled to a 250 GFLOP/s machine: the fp32 `torch.mm` peak is measured in the same run
(minutes × peak / 250), since these shared machines differ 2× between days.

The control (`--control`) is transformers' own `CLIPModel` with the plain patch stem, built from
the same tower configs and tokenizer, trained by a bare PyTorch loop (AdamW, the same schedule,
`CLIPModel(return_loss=True)`: the textbook CLIP loss, no hard negatives) on the same batches, then
copied into a vlkit model only to be scored by the same evaluation. It tells the recipe and data
apart from vlkit's code: the bare loop on the old recipe learned no faster than vlkit did.

Writes benchmarks/results/time_to_accuracy-<name>.json (curves, date, commit, load, threads, peak)
and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from common import SMOKE_MODEL, SMOKE_VLM

from vlkit.config import Config, load_config, stage_configs
from vlkit.data import build_dataset
from vlkit.data.scenes import ZERO_SHOT_CLASSES
from vlkit.eval.during_training import training_evaluator
from vlkit.models.build import build_model
from vlkit.train.batches import Batcher
from vlkit.train.loop import lr_lambda, tokenizer_texts, train
from vlkit.train.machine import REFERENCE_GFLOPS, matmul_peak, scaled_minutes
from vlkit.train.objectives import ContrastiveObjective

ROOT = Path(__file__).resolve().parents[1]
# Chance for each score: 32-way top-1; Winoground text and image scores (2 captions x 2 images,
# both right: 1/4 by a coin per image); group (all four comparisons consistent): 1/6.
CHANCE = {"top1": 1 / len(ZERO_SHOT_CLASSES), "wino_text": 0.25, "wino_image": 0.25, "wino_group": 1 / 6}
# What each kind records per evaluation, and its headline score (curves, goal, plot).
VQA_TYPES = ("color", "shape", "count", "existence", "relation")
KEYS = {
    "contrastive": ("top1", "top5", "t2i_R@1", "wino_text", "wino_image", "wino_group"),
    "generative": (
        "vqa_accuracy",
        *(f"vqa_{t}" for t in VQA_TYPES),
        "prior_accuracy",
        *(f"prior_{t}" for t in VQA_TYPES),
        "paraphrase_accuracy",
        *(f"paraphrase_{t}" for t in VQA_TYPES),
        "caption_all_named",
    ),
}
HEADLINE = {"contrastive": ("top1", 0.98), "generative": ("vqa_accuracy", 0.90)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "clip-scenes.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=0, help="override train.steps (0: the recipe's)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--set", action="append", default=[], help="recipe override, key=value")
    p.add_argument("--control", action="store_true", help="also train the bare-loop CLIPModel control")
    p.add_argument("--name", default="clip-scenes", help="results file: time_to_accuracy-<name>.json")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--keep", default="", help="train the first seed here (kept) instead of a temp folder")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true", help="tiny model, 4 steps, control too, no results file")
    p.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="FILE",
        help="train nothing: join results files of one recipe run on different seeds into --name",
    )
    return p.parse_args(argv)


def make_config(args: argparse.Namespace, seed: int, out_dir: str) -> Config:
    overrides = list(args.set) + [f"train.seed={seed}", f"train.out_dir={out_dir}", "train.save_every=0"]
    overrides += [f"train.eval_every={args.eval_every}"]
    if args.steps:
        overrides.append(f"train.steps={args.steps}")
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    if args.smoke:
        generative = load_config(args.recipe).kind == "generative"
        overrides += (SMOKE_VLM if generative else SMOKE_MODEL) + ["train.steps=4", "train.batch_size=16"]
        overrides += ["train.warmup_steps=1", "eval.num_images=64", "train.eval_every=2"]
    return load_config(args.recipe, overrides)


class Curve:
    """An `evaluate` callback that also stamps training time (its own time excluded) and images,
    counted over all of a recipe's stages (`next_stage` before each)."""

    def __init__(self):
        self.points: list[dict] = []
        self.started, self.evaluating = time.perf_counter(), 0.0
        self.done_steps = self.done_images = self.stage_points = 0

    def next_stage(self, previous: Config | None) -> None:
        if previous is not None:
            self.done_steps += previous.train.steps
            self.done_images += previous.train.steps * previous.train.batch_size
        self.stage_points = 0

    def __call__(self, model: torch.nn.Module, cfg: Config, step: int | None = None) -> dict[str, float]:
        clock = time.perf_counter()
        scores = training_evaluator(cfg.kind)(model, cfg)
        train_s = clock - self.started - self.evaluating
        self.evaluating += time.perf_counter() - clock
        step = step if step is not None else self._step(cfg)
        images = self.done_images + step * cfg.train.batch_size
        point = {"step": self.done_steps + step, "images": images, "train_minutes": train_s / 60}
        self.points.append(point | {k: scores[k] for k in KEYS[cfg.kind] if k in scores})
        self.stage_points += 1
        return scores

    def _step(self, cfg: Config) -> int:
        # vlkit's loop evaluates every eval_every steps and at the end
        done = self.stage_points * cfg.train.eval_every + cfg.train.eval_every
        return min(done, cfg.train.steps) if cfg.train.eval_every else cfg.train.steps


def stages(cfg: Config) -> list[Config]:
    """The recipe's stages in order (a curriculum); [cfg] for a one-stage recipe."""
    return [stage for _, stage in stage_configs(cfg)] or [cfg]


def vlkit_run(cfg: Config) -> list[dict]:
    curve, previous = Curve(), None
    for stage in stages(cfg):
        curve.next_stage(previous)
        train(stage, evaluate=curve, progress=False)
        previous = stage
    return curve.points


def control_run(cfg: Config) -> list[dict]:
    """transformers' CLIPModel (patch stem), bare loop; scored through a vlkit model with its weights.
    A recipe with stages: each stage's data, a fresh optimizer and schedule, the same model."""
    from transformers import CLIPConfig, CLIPModel

    plan = stages(cfg)
    for stage in plan:
        stage.model.vision_stem = "patch"
        stage.model.init_from = ""  # the control carries its own weights from stage to stage
        stage.model.hard_negatives = False  # the textbook loss: one caption per image (collate reads it)
    first = plan[0]
    vl = build_model(first, texts=tokenizer_texts(first, build_dataset(first.data)))  # configs, tokenizer
    image, text = vl.image_tower.model, vl.text_tower.model
    hf = CLIPModel(CLIPConfig(text_config=text.config.to_dict(), vision_config=image.config.to_dict()))
    hf.config.projection_dim = first.model.embed_dim
    hf.visual_projection = torch.nn.Linear(image.config.hidden_size, first.model.embed_dim, bias=False)
    hf.text_projection = torch.nn.Linear(text.config.hidden_size, first.model.embed_dim, bias=False)
    curve, previous = Curve(), None
    for stage in plan:
        curve.next_stage(previous)
        _control_stage(hf, vl, stage, curve)
        previous = stage
    return curve.points


def _control_stage(hf: torch.nn.Module, vl: torch.nn.Module, cfg: Config, curve: Curve) -> None:
    t = cfg.train
    optimizer = torch.optim.AdamW(hf.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    collate = ContrastiveObjective(vl, seed=t.seed)
    batcher = Batcher(build_dataset(cfg.data), t.batch_size, t.seed)
    for step in range(t.steps):
        batch = collate.collate(batcher.samples(step))
        loss = hf(**batch, return_loss=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        if (step + 1) % t.eval_every == 0 or step + 1 == t.steps:
            vl.image_tower.model.load_state_dict(hf.vision_model.state_dict())
            vl.text_tower.model.load_state_dict(hf.text_model.state_dict())
            vl.visual_projection.load_state_dict(hf.visual_projection.state_dict())
            vl.text_projection.load_state_dict(hf.text_projection.state_dict())
            vl.logit_scale.data.copy_(hf.logit_scale.data)
            vl.eval()
            curve(vl, cfg, step=step + 1)
            hf.train()


def summarise(runs: list[list[dict]], peaks: list[float], kind: str) -> dict:
    """Mean ± sd over seeds of the last evaluation, and of the training minutes (also scaled, each
    run by the fp32 peak measured beside it: `peaks`, one per run)."""
    last = [points[-1] for points in runs]
    out = {}
    for key in (*KEYS[kind], "train_minutes"):
        values = [p[key] for p in last if key in p]
        if values:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key] = {"mean": statistics.fmean(values), "sd": sd}
    scaled = [scaled_minutes(p["train_minutes"], peak) for p, peak in zip(last, peaks, strict=True)]
    out["train_minutes_at_250_gflops"] = statistics.fmean(scaled)
    out["images"] = last[0]["images"]
    key, goal = HEADLINE[kind]
    out[f"first_reach_{key}_{goal}"] = [
        first_reach(points, key, goal, peak) for points, peak in zip(runs, peaks, strict=True)
    ]
    return out


def first_reach(points: list[dict], key: str, goal: float, peak: float) -> dict | None:
    """The first evaluation at which `key` >= goal: its images and minutes (also scaled), or None."""
    for p in points:
        if p.get(key, 0.0) >= goal:
            minutes = p["train_minutes"]
            return {
                "images": p["images"],
                "minutes": minutes,
                "minutes_at_250": scaled_minutes(minutes, peak),
            }
    return None


def environment(peak: float) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else ""),
        "load_average_1m": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "fp32_mm_peak_gflops": peak,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return write(merge([json.loads(Path(f).read_text()) for f in args.merge], args.merge), args)
    kind = load_config(args.recipe, args.set).kind
    if args.control and kind != "contrastive":
        raise SystemExit(f"--control is the bare-loop CLIPModel: {args.recipe} is a {kind} recipe")
    args.control = args.control or (args.smoke and kind == "contrastive")
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak()[0]
    print(f"fp32 torch.mm peak: {peak:.0f} GFLOP/s (minutes are also scaled to {REFERENCE_GFLOPS:.0f})")
    result = {"recipe": Path(args.recipe).name, "kind": kind, "overrides": args.set}
    result["chance"] = CHANCE if kind == "contrastive" else "prior_* keys: the question-only prior"
    result["environment"] = environment(peak)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for k, seed in enumerate(args.seeds):
            folder = args.keep if args.keep and k == 0 else f"{tmp}/vlkit-{seed}"
            runs.append(vlkit_run(make_config(args, seed, folder)))
            print(f"seed {seed}: " + json.dumps(runs[-1][-1]))
        result["vlkit"] = {
            "seeds": args.seeds,
            "curves": runs,
            "final": summarise(runs, [peak] * len(runs), kind),
        }
        if args.control:
            control = [control_run(make_config(args, args.seeds[0], f"{tmp}/control"))]
            print("control: " + json.dumps(control[-1][-1]))
            result["control"] = {
                "seeds": args.seeds[:1],
                "curves": control,
                "final": summarise(control, [peak], kind),
            }
    result["environment"]["fp32_mm_peak_gflops_after"] = matmul_peak()[0]
    print(json.dumps({k: result[k]["final"] for k in ("vlkit", "control") if k in result}, indent=1))
    return 0 if args.smoke else write(result, args)


def write(result: dict, args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"time_to_accuracy-{args.name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out / f"time_to_accuracy-{args.name}.png")
    print(f"results: {path}")
    return 0


def merge(parts: list[dict], names: list[str]) -> dict:
    """One results file from several runs of the same recipe and overrides on different seeds
    (e.g. one seed per core at the same time): the curves side by side, the mean ± sd recomputed,
    each part's environment kept (its commit, date, load and fp32 peak, which scales its minutes)."""
    first = parts[0]
    for name, part in zip(names, parts, strict=True):
        for key in ("recipe", "kind"):
            if part[key] != first[key]:
                raise SystemExit(f"--merge: {name} has {key} {part[key]!r}, {names[0]} has {first[key]!r}")
        same_training(part, name, first, names[0])
        if "control" in part:
            raise SystemExit(f"--merge: {name} has a control run; merge only vlkit runs")
    seeds = [s for part in parts for s in part["vlkit"]["seeds"]]
    if len(set(seeds)) < len(seeds):
        raise SystemExit(f"--merge: a seed appears twice in {names}: {seeds}")
    runs = [curve for part in parts for curve in part["vlkit"]["curves"]]
    peaks = [p["environment"]["fp32_mm_peak_gflops"] for p in parts for _ in p["vlkit"]["curves"]]
    result = {k: first[k] for k in ("recipe", "kind", "overrides", "chance")}
    result["environment"] = {
        "merged": [
            p["environment"] | {"file": Path(n).name, "overrides": p["overrides"]}
            for p, n in zip(parts, names)
        ]
    }
    result["vlkit"] = {"seeds": seeds, "curves": runs, "final": summarise(runs, peaks, first["kind"])}
    print(json.dumps(result["vlkit"]["final"], indent=1))
    return result


def same_training(part: dict, name: str, first: dict, first_name: str) -> None:
    """Parts with different overrides merge when the recipe at each one's commit, with its
    overrides, trains the same config (a setting given by --set then, written into the recipe
    later); else, or when that cannot be read, the merge stops saying why."""
    if part["overrides"] == first["overrides"]:
        return
    why = f"--merge: {name} has overrides {part['overrides']!r}, {first_name} has {first['overrides']!r}"
    try:
        same = trained_config(part) == trained_config(first)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"{why}; their recipes could not be read at their commits to compare ({e})") from e
    if not same:
        raise SystemExit(f"{why}: the recipes at their commits with them train different configs")


def trained_config(part: dict) -> list[dict]:
    """The configs a one-seed part trained (one per stage): recipes/<its recipe> as of its commit
    with its overrides, as dicts without what runs of one recipe may differ in (seed, folders,
    threads). Read by this checkout's config code: a default changed in the code between the
    parts' commits is not seen (each part's commit stays in the merged file)."""
    commit = part["environment"].get("commit", "")
    if not commit or "+" in commit:
        raise ValueError(f"no clean commit recorded ({commit!r})")
    show = ["git", "show", f"{commit}:recipes/{part['recipe']}"]
    text = subprocess.run(show, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / part["recipe"]
        path.write_text(text)
        cfg = load_config(path, part["overrides"])
    trained = [dataclasses.asdict(c) for _, c in stage_configs(cfg)] or [dataclasses.asdict(cfg)]
    for k, c in enumerate(trained):
        del c["train"]["seed"], c["train"]["out_dir"], c["train"]["threads"], c["stages"]
        if k > 0:
            del c["vlm"]["init_from"]  # the stage before's folder
    return trained


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = result.get("kind", "contrastive")
    key = HEADLINE[kind][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("vlkit", "-"), ("control", "--")):
        for k, points in enumerate(result.get(name, {}).get("curves", [])):
            label = f"{name} seed {result[name]['seeds'][k]}"
            ax.plot([p["images"] for p in points], [p[key] for p in points], style, label=label)
    if kind == "contrastive":
        ax.axhline(result["chance"]["top1"], color="grey", lw=0.8, label="chance (1/32)")
        ax.axhline(0.25, color="grey", lw=0.8, ls=":", label="colour only (1/4)")
    else:
        prior = result["vlkit"]["curves"][0][-1]["prior_accuracy"]
        ax.axhline(prior, color="grey", lw=0.8, label=f"question-only prior ({prior:.1%})")
    ax.set_xlabel("training images")
    ax.set_ylabel("held-out 32-way zero-shot top-1" if kind == "contrastive" else "held-out scenes VQA")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
