"""What a kept training run logged, as a results file: the mean of chosen log keys (e.g. the
grounding head's `grounding_accuracy` on its training batches) over windows of steps.

    python benchmarks/training_log.py RUN --keys grounding_accuracy --every 300 --name NAME
        → benchmarks/results/training_log-NAME.json

`time_to_accuracy.py --keep RUN` keeps a run's folder with its `metrics.jsonl`; the figures in its
results file are held-out scores, and this is the place for what only the training log has.
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from common import RESULTS, run_info, write_results


def windows(log: list[dict], keys: list[str], every: int) -> list[dict]:
    """Per window of `every` steps (ending at every, 2·every, ...): the steps logged and each key's mean."""
    rows = [r for r in log if all(k in r for k in keys)]
    if not rows:
        raise ValueError(f"no log record has all of {keys}")
    out = []
    for end in range(every, rows[-1]["step"] + every, every):
        part = [r for r in rows if end - every < r["step"] <= end]
        if part:
            out.append({"steps": [part[0]["step"], part[-1]["step"]], "records": len(part)})
            out[-1] |= {k: statistics.mean(r[k] for r in part) for k in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder with metrics.jsonl")
    p.add_argument("--keys", nargs="+", required=True, help="log keys to average")
    p.add_argument("--every", type=int, default=300, help="steps per window")
    p.add_argument("--name", required=True, help="results file training_log-NAME.json")
    p.add_argument("--out", default=str(RESULTS), help="results folder")
    args = p.parse_args(argv)
    path = Path(args.run) / "metrics.jsonl"
    log = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result = run_info(os.getloadavg()[0], 0) | {
        "run": str(path),
        "windows": windows(log, args.keys, args.every),
    }
    print(json.dumps(result["windows"], indent=1))
    write_results(f"training_log-{args.name}", result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
