"""Cold start of the `vlkit` command: how long a newcomer waits for `vlkit --help` and for a
one-image `vlkit classify`, each a fresh process (imports, model load, one image, exit).

    python benchmarks/cold_start.py                 # 5 runs of each, median → benchmarks/results/cold_start.json
    python benchmarks/cold_start.py --smoke         # 1 run of each, nothing written (CI)
    python benchmarks/cold_start.py --model runs/tour   # time classify on your own run

Goals: `vlkit --help` < 1 s (it imports no torch, transformers, numpy or PIL) and a one-image
`vlkit classify` < 3 s (it imports torch and transformers' CLIP modelling only: the image
processors, Llama, PEFT and the Q-Former load only for the models that use them). Without
--model, classify runs on a tiny CLIP trained here for 2 steps (the model's size is not what
is timed; its imports and load are). `python -X importtime -m vlkit ...` shows where the time goes.
Goals print PASS or MISS and never change the exit code; the load average is printed and saved
beside the timings, because on a shared 2-core machine another process slows every import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from common import SMOKE_MODEL  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cold_start.json"
GOALS = {"help": 1.0, "classify": 3.0}  # seconds, the median of the runs
# What classify cannot do without, timed the same way: the floor under its goal.
FLOORS = {
    "import torch": "import torch",
    "import CLIP modelling": "import torch; from transformers import CLIPTextModel, CLIPVisionModel",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    p.add_argument("--model", help="a contrastive model or run folder (default: a tiny CLIP trained here)")
    p.add_argument("--smoke", action="store_true", help="1 run of each, no results file: for CI")
    p.add_argument("--out", default=str(RESULTS), help="results file")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the timed processes")
    return p.parse_args(argv)


def tiny_model(folder: Path) -> Path:
    from vlkit.config import load_config
    from vlkit.train.loop import train

    overrides = [
        *SMOKE_MODEL,
        "model.vision_stem=patch",
        "train.steps=2",
        "train.batch_size=8",
        "train.eval_every=0",
    ]
    cfg = load_config(None, [*overrides, f"train.out_dir={folder / 'run'}"])
    return train(cfg, progress=False)


def an_image(path: Path) -> Path:
    from PIL import Image

    from vlkit.data.scenes import Scenes, ScenesConfig

    Image.fromarray(Scenes(ScenesConfig(image_size=64))[0]["image"]).save(path)
    return path


def time_command(args: list[str], runs: int, threads: int) -> list[float]:
    """Wall-clock seconds of `python ARGS` in `runs` fresh processes (each must exit 0)."""
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": str(ROOT / "src"),
    }
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"python {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp))
        image = an_image(Path(tmp) / "a.png")
        commands = {
            "help": ["-m", "vlkit", "--help"],
            "classify": [
                "-m",
                "vlkit",
                "classify",
                str(model),
                str(image),
                "--labels",
                "red circle,blue star",
            ],
        }
        load_before = os.getloadavg()[0]
        timings = {name: time_command(cmd, runs, args.threads) for name, cmd in commands.items()}
        floors = {
            n: statistics.median(time_command(["-c", c], runs, args.threads)) for n, c in FLOORS.items()
        }
        load_after = os.getloadavg()[0]
    print(f"cold start, median of {runs} fresh processes (OMP_NUM_THREADS={args.threads}):")
    rows = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        verdict = "PASS" if median < GOALS[name] else "MISS"
        rows[name] = {
            "command": "python " + " ".join(commands[name]),
            "median_s": round(median, 3),
            "runs_s": [round(s, 3) for s in seconds],
            "goal_s": GOALS[name],
            "verdict": verdict,
        }
        print(f"  vlkit {name:<9} {median:6.2f} s   (goal < {GOALS[name]:.0f} s: {verdict})")
    for name, median in floors.items():
        print(f"  floor: {name:<22} {median:6.2f} s   (python -c {FLOORS[name]!r})")
    print(f"load average before {load_before:.1f}, after {load_after:.1f} ({os.cpu_count()} CPUs)")
    if not args.smoke:
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit(),
            "runs": runs,
            "threads": args.threads,
            "model": args.model or "tiny CLIP trained by the script (SMOKE_MODEL, patch stem, 2 steps)",
            "load_average_1m": [round(load_before, 2), round(load_after, 2)],
            "cpus": os.cpu_count(),
            "commands": rows,
            "floors_median_s": {FLOORS[name]: round(median, 3) for name, median in floors.items()},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
