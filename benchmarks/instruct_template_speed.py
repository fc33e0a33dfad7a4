"""Records per second of the template teacher on scenes, one core.

    python benchmarks/instruct_template_speed.py [--scenes 4000] [--smoke]

Goal: >= 10,000 instruction records/s. The scenes are rendered first (outside the clock, the
world's own speed is benchmarks/scenes_speed.py); then, on one thread:
  (a) the template teacher alone: `template.write(ctx, kind)` for the three kinds;
  (b) what every record goes through in a run: write + dedup + format validation + the
      consistency check against the truth (`llava.Finisher`);
  (c) for information, a whole `generate_llava` run into a fresh folder: rendering, PNG files,
      the ordered runner, records.jsonl, llava.json, chat.jsonl, stats.
The goal is judged on (b) alone: (a) is what the teacher could do without the checks every record
gets. Writes benchmarks/results/instruct_template_speed.json (not with --smoke).
"""

import argparse
import os
import tempfile
import time

import torch
from common import run_info, write_results

from vlkit.data import instruct_template as template
from vlkit.data.contexts import scene_contexts
from vlkit.instruct import generate_llava
from vlkit.instruct.llava import Finisher, Job
from vlkit.instruct.prompts import KINDS

GOAL = 10_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="a few hundred scenes, seconds")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (unused by the teacher; for symmetry)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    n = 300 if args.smoke else args.scenes
    contexts = list(scene_contexts(n, seed=1))
    records = n * len(KINDS)

    def teacher_only() -> None:
        for ctx in contexts:
            for kind in KINDS:
                template.write(ctx, kind)

    def with_checks() -> None:
        finish = Finisher([])
        for ctx in contexts:
            for kind in KINDS:
                record = {"image": ctx.image, "conversations": template.write(ctx, kind)}
                finish(ctx.id, Job(ctx, kind, "template:"), record)

    rows = []
    for name, fn in (
        ("(a) template teacher alone", teacher_only),
        ("(b) + dedup, validation, truth check", with_checks),
    ):
        best = min(_timed(fn) for _ in range(args.repeats))
        rows.append((name, records / best))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        stats = generate_llava("scenes", out, count=n, seed=1, progress=False)
        rows.append(
            (
                "(c) generate_llava end to end (render, PNG, files)",
                stats["records"] / (time.perf_counter() - start),
            )
        )
    print(f"template teacher, {n} scenes x {len(KINDS)} kinds = {records} records, 1 thread")
    print(f"{'method':<52} {'records/s':>12}")
    for name, rate in rows:
        print(f"{name:<52} {rate:>12,.0f}")
    verdict = "PASS" if rows[1][1] >= GOAL else "MISS"
    print(f"goal >= {GOAL:,} records/s with checks (b): {verdict}")
    errors = stats["consistency"]["template:"]["errors"]
    print(f"consistency errors in (c): {errors} of {stats['records']}")
    if errors:
        raise SystemExit(1)
    if not args.smoke:
        figures = {"scenes": n, "records": records, "records_per_s": dict(rows), "goal": GOAL}
        figures["verdict (b)"] = verdict
        write_results("instruct_template_speed", run_info(load_before, args.threads) | figures)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
