"""Train one recipe for a benchmark and record how (the detection, segmentation and fusion scripts
share it; imported as `trained`, beside `common`, which stays free of vlkit imports so that the
cold-start benchmark times what it means to)."""

import json
import time
from pathlib import Path

from vlkit.config import Config, load_config
from vlkit.eval.during_training import training_evaluator
from vlkit.train.loop import train

ROOT = Path(__file__).resolve().parents[1]


def train_recipe(
    recipe: str, sets: list[str], out_dir: str | Path, threads: int
) -> tuple[Path, Config, dict]:
    """Trains `recipe` with the overrides `sets` into `out_dir` on `threads` torch threads (its
    training-time evaluations on) → (run folder, config, what a results file records: recipe,
    overrides, steps, images, minutes of the `train` call with its evaluations included, and those
    evaluations)."""
    sets = [*sets, f"train.out_dir={out_dir}", f"train.threads={threads}"]
    cfg = load_config(recipe, sets)
    clock = time.perf_counter()
    run = train(cfg, evaluate=training_evaluator(cfg.kind), progress=False)
    minutes = (time.perf_counter() - clock) / 60
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    path = Path(recipe)
    settings = {
        # a recipe outside the repository is recorded by its full path (after training, never a crash)
        "recipe": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else recipe,
        "overrides": sets,
        "steps": cfg.train.steps,
        "training_images": cfg.train.steps * cfg.train.batch_size,
        "train_minutes": minutes,
        "training_evals": [r for r in log if any(k.startswith("eval/") for k in r)],
    }
    return run, cfg, settings
