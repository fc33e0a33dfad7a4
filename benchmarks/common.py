"""What the benchmark scripts share (they run as `python benchmarks/NAME.py`, so this imports as `common`)."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

# A model small enough that a --smoke run builds, exports and times everything in seconds.
SMOKE_MODEL = [
    "model.embed_dim=32",
    "model.vision_width=32",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "model.text_width=32",
    "model.text_layers=1",
    "model.text_heads=2",
    "model.vocab_size=256",
]

# The generative benchmarks' smoke model: recipes/llava-scenes.yaml shrunk.
SMOKE_VLM = [
    "model.image_size=32",
    "model.vision_width=32",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "vlm.lm_width=32",
    "vlm.lm_layers=1",
    "vlm.lm_heads=2",
    "vlm.lm_vocab_size=300",
]

RESULTS = Path(__file__).resolve().parent / "results"


def run_info(load_before: float, threads: int) -> dict:
    """What every results file records about the run: when, which code, how busy the machine was."""
    root = RESULTS.parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src", "benchmarks"], cwd=root, capture_output=True, text=True
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else ""),
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        "cpus": os.cpu_count(),
        "threads": threads,
        "command": " ".join(["python", *sys.argv]),
    }


def write_results(name: str, result: dict, folder: Path = RESULTS) -> Path:
    """benchmarks/results/<name>.json (or in `folder`); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {path}")
    return path
