"""Search indexes at size: exact, ivf-pq and hnsw on 100k and 1M vectors, and a real embedded set.

    python benchmarks/index_scale.py --threads 1              # 100k + 1M synthetic, scenes through runs/tour
    python benchmarks/index_scale.py --smoke                  # 3,000 vectors, a tiny untrained model, seconds
    python benchmarks/index_scale.py --table                  # benchmarks/README.md's table, from the results file

Synthetic sets have the model's embedding size (128, `Config().model.embed_dim`) and are
clustered, as embeddings are: a few thousand centres of unequal sizes in a 32-dimensional latent
space, mapped into D dimensions with a little isotropic noise, then unit-normalised; queries are
drawn the same way and are not in the set. The real set is scenes images embedded by the model
(`--model`, default runs/tour, which `make tour` trains), searched with captions of other scenes.
For every set and kind, each step runs in a fresh process, so its peak RSS is its own:
`build` (SearchIndex.add + save: training, shards, faiss files) and `search` (SearchIndex.load,
memory-mapped, then one query at a time for latency p50/p95, then all queries at once for
recall@10 against the exact index's answers). The approximate kinds run with vlkit's defaults
(`vlkit.index.settings.DEFAULTS`); hnsw is built only up to `--hnsw-up-to` vectors (its
single-threaded build is the slowest step). Writes benchmarks/results/index_scale.json (not in --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, SMOKE_MODEL, run_info, write_results

GOAL_RECALL = 0.95  # recall@10 of the default approximate kind at 1M vectors (issue 14)
CHUNK = 100_000  # synthetic vectors generated per block


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """float32[count, dim], unit rows: clusters of Zipf-like sizes in a 32-d latent space."""
    rng = np.random.default_rng(seed)
    latent = 32
    clusters = max(8, count // 300)
    centres = rng.normal(size=(clusters, latent)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    mixing = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        which = rng.choice(clusters, size=n, p=weights / weights.sum())
        points = centres[which] + 0.5 * rng.normal(size=(n, latent)).astype(np.float32)  # (n, 32)
        block = points @ mixing + 0.15 * rng.normal(size=(n, dim)).astype(np.float32)  # (n, D)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_set(folder: Path, count: int, dim: int, queries: int) -> None:
    both = clustered(count + queries, dim, seed=count)  # queries from the same clusters, not in the set
    np.save(folder / "base.npy", both[:count])
    np.save(folder / "queries.npy", both[count:])


def real_set(folder: Path, model: str, count: int, queries: int) -> None:
    """Scenes images embedded by the model; queries: other scenes' first captions, embedded."""
    from vlkit.api import load
    from vlkit.data.scenes import Scenes, ScenesConfig

    clip = load(model, kind="contrastive")
    scenes = Scenes(ScenesConfig(image_size=clip.cfg.model.image_size, seed=12345))
    base = np.concatenate(
        [
            clip.embed_images([scenes[i]["image"] for i in range(s, min(s + 256, count))])
            for s in range(0, count, 256)
        ]
    )
    texts = [scenes[count + i]["captions"][0] for i in range(queries)]
    np.save(folder / "base.npy", base.astype(np.float32))
    np.save(folder / "queries.npy", clip.embed_texts(texts).astype(np.float32))


def child_build(folder: Path, kind: str) -> dict:
    from vlkit.index import SearchIndex

    base = np.load(folder / "base.npy", mmap_mode="r")
    started = time.perf_counter()
    index = SearchIndex(base.shape[1], kind=kind)
    index.add(base, [f"v{i}" for i in range(len(base))])
    index.save(folder / kind)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in (folder / kind).iterdir())
    resolved, params = index.resolved()
    return {"kind": resolved, "params": params, "build_s": seconds, "disk_mb": size / 2**20}


def child_search(folder: Path, kind: str, latency_queries: int) -> dict:
    from vlkit.index import SearchIndex

    queries = np.load(folder / "queries.npy")
    started = time.perf_counter()
    index = SearchIndex.load(folder / kind)
    load_s = time.perf_counter() - started
    index.search_ids(queries[:1], 10)  # first touch: faiss files mapped, numpy warmed
    times, cpu = [], []
    for query in queries[:latency_queries]:
        started, started_cpu = time.perf_counter(), time.process_time()
        index.search_ids(query, 10)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    _, found = index.search_ids(queries, 10)
    if kind == "exact":
        np.save(folder / "truth.npy", found)
    truth = np.load(folder / "truth.npy")
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())]))
    return {
        "load_s": load_s,
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p95_ms": 1000 * float(np.percentile(times, 95)),
        # CPU time: on a shared machine, the wall clock also counts the time other processes ran
        "cpu_p50_ms": 1000 * float(np.percentile(cpu, 50)),
        "cpu_p95_ms": 1000 * float(np.percentile(cpu, 95)),
        "recall_at_10": recall,
        "queries": len(queries),
    }


def in_child(step: str, folder: Path, kind: str, args) -> dict:
    """Run one step in a fresh process; its result with that process's peak RSS."""
    cmd = [sys.executable, __file__, "--child", step, str(folder), kind, "--threads", str(args.threads)]
    cmd += ["--latency-queries", str(args.latency_queries)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, folder: Path, args) -> list[dict]:
    count = len(np.load(folder / "base.npy", mmap_mode="r"))
    kinds = ["exact", "ivf-pq"] + (["hnsw"] if count <= args.hnsw_up_to else [])
    rows = []
    for kind in kinds:
        built = in_child("build", folder, kind, args)
        searched = in_child("search", folder, kind, args)
        row = {"set": name, "count": count} | built | searched
        row["build_peak_rss_mb"], row["search_peak_rss_mb"] = built["peak_rss_mb"], searched["peak_rss_mb"]
        del row["peak_rss_mb"]
        rows.append(row)
        print(
            f"{name:>16} {kind:>7}: build {row['build_s']:7.1f} s, {row['build_peak_rss_mb']:6.0f} MB peak | "
            f"search p50 {row['p50_ms']:7.2f} ms p95 {row['p95_ms']:7.2f} ms (CPU p50 {row['cpu_p50_ms']:.2f} ms), "
            f"{row['search_peak_rss_mb']:6.0f} MB peak"
            f" | recall@10 {row['recall_at_10']:.3f} | {row['params']}",
            flush=True,
        )
    return rows


def table(result: dict) -> str:
    """benchmarks/README.md's table, from a results file."""
    lines = [
        "| set | vectors | kind | build s | build peak RSS MB | search peak RSS MB | p50 / p95 ms | CPU p50 / p95 ms | recall@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['set']} | {r['count']:,} | {r['kind']} | {r['build_s']:.1f} | {r['build_peak_rss_mb']:.0f} | "
            f"{r['search_peak_rss_mb']:.0f} | {r['p50_ms']:.2f} / {r['p95_ms']:.2f} | "
            f"{r['cpu_p50_ms']:.2f} / {r['cpu_p95_ms']:.2f} | {r['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="synthetic set sizes")
    p.add_argument("--dim", type=int, default=None, help="synthetic dimension (default: the model's, 128)")
    p.add_argument("--queries", type=int, default=1000, help="queries per set, for recall@10")
    p.add_argument("--latency-queries", type=int, default=200, help="queries timed one at a time")
    p.add_argument("--hnsw-up-to", type=int, default=100_000, help="largest set hnsw is built for")
    p.add_argument("--model", default="runs/tour", help="model that embeds the real set ('' skips it)")
    p.add_argument("--real-count", type=int, default=20_000, help="scenes images in the real set")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--smoke", action="store_true", help="3,000 vectors, tiny untrained model; no results file"
    )
    p.add_argument("--table", action="store_true", help="print the README table from the results file")
    p.add_argument("--child", nargs=3, metavar=("STEP", "FOLDER", "KIND"), help=argparse.SUPPRESS)
    return p.parse_args()


def run_child(args) -> None:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    step, folder, kind = args.child
    result = (
        child_build(Path(folder), kind)
        if step == "build"
        else child_search(Path(folder), kind, args.latency_queries)
    )
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident memory: /proc's VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss keeps the parent's peak across fork + exec, here the torch-loaded parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


def smoke_model(folder: Path) -> str:
    from vlkit.config import load_config
    from vlkit.data import build_dataset, iter_captions
    from vlkit.models.build import build_model, save_model
    from vlkit.models.kinds import TOKENIZER_SAMPLES

    cfg = load_config(None, [*SMOKE_MODEL, "model.image_size=32"])
    save_model(build_model(cfg, texts=iter_captions(build_dataset(cfg.data), TOKENIZER_SAMPLES)), cfg, folder)
    return str(folder)


def main() -> None:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.child:
        return run_child(args)
    if args.table:
        return print(table(json.loads((RESULTS / "index_scale.json").read_text())))
    from vlkit.config import Config

    if args.smoke:
        args.sizes, args.queries, args.latency_queries, args.real_count = [3000], 50, 20, 600
    dim = args.dim or (32 if args.smoke else Config().model.embed_dim)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.sizes:
            folder = Path(tmp) / f"synthetic-{count}"
            folder.mkdir()
            synthetic_set(folder, count, dim, args.queries)
            rows += measure(f"synthetic {count // 1000}k", folder, args)
        model = smoke_model(Path(tmp) / "model") if args.smoke else args.model
        if model:
            folder = Path(tmp) / "real"
            folder.mkdir()
            real_set(folder, model, args.real_count, args.queries)
            rows += measure(f"scenes via {Path(model).name}", folder, args)
    report(rows, args, dim, load_before)


def report(rows: list[dict], args, dim: int, load_before: float) -> None:
    default = [r for r in rows if r["kind"] == "ivf-pq" and r["set"].startswith("synthetic")]
    largest = max(default, key=lambda r: r["count"])
    met = largest["recall_at_10"] >= GOAL_RECALL
    print(
        f"\nivf-pq (the default approximate kind) recall@10 at {largest['count']:,} vectors: "
        f"{largest['recall_at_10']:.3f} (goal >= {GOAL_RECALL}): {'PASS' if met else 'MISS'}"
    )
    print(table({"rows": rows}))
    if not args.smoke:
        info = run_info(load_before, args.threads) | {"dim": dim, "queries": args.queries}
        write_results("index_scale", info | {"goal_recall_at_10": GOAL_RECALL, "goal_met": met, "rows": rows})


if __name__ == "__main__":
    main()
