"""Serving under load: concurrent clients against `vlkit serve`'s app, on loopback only.

    python benchmarks/serve_load.py --threads 1            # the recipes' sizes, untrained; writes
                                                           # benchmarks/results/serve_load.json
    python benchmarks/serve_load.py --smoke --threads 1    # tiny models, under a minute

Two servers run in this process (`BackgroundServer` on 127.0.0.1, the app `vlkit serve` builds):
a generative model (recipes/llava-scenes.yaml's architecture, untrained, with seeded noise on its
weights so replies are several tokens long) answering vision chat (an image as a data URL and a
question, `max_tokens` fixed, greedy) and a contrastive one (recipes/clip-scenes.yaml's) answering
/v1/classify (one image, four labels). At each concurrency (1, then 4, 8, 16) that many client
threads send `--requests` requests in all (each run also stops at `--max-seconds`); every latency
is recorded: p50 / p95, throughput (successful requests/s) and the speed-up over concurrency 1,
the sequential run. Below capacity (`--max-queue` 64 admitted requests, more than the 16 clients)
every request must succeed: the script exits 1 otherwise. Then each server is rebuilt with
`--overload-queue` (4) and gets 16 clients: its 429s are counted as refusals, not failures (a
client retries after Retry-After). Resident memory of the process (VmRSS) is read before the
models are built, once they are, and after all the runs. The clients run in the same process as
the servers (GIL shared), so absolute figures are lower bounds on a separate client's.
"""

import argparse
import base64
import io
import itertools
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import torch
from common import SMOKE_MODEL, SMOKE_VLM, run_info, write_results
from PIL import Image

from vlkit.api import WRAPPERS
from vlkit.config import load_config
from vlkit.data import build_dataset
from vlkit.models.build import build_model
from vlkit.models.kinds import texts_for
from vlkit.serve.app import create_app
from vlkit.serve.kinds import SERVED_KINDS
from vlkit.serve.schemas import Limits
from vlkit.serve.server import BackgroundServer

RECIPES = {"chat": "recipes/llava-scenes.yaml", "classify": "recipes/clip-scenes.yaml"}
CONCURRENCY = (1, 4, 8, 16)
LABELS = ["a red circle", "a blue square", "a green triangle", "a yellow star"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64, help="requests per run (per concurrency)")
    p.add_argument("--max-tokens", type=int, default=16, help="chat replies' max_tokens")
    p.add_argument("--max-seconds", type=float, default=120.0, help="each run stops after this long")
    p.add_argument("--max-queue", type=int, default=64, help="admitted requests below capacity")
    p.add_argument("--overload-queue", type=int, default=4, help="admitted requests in the overload run")
    p.add_argument("--max-batch", type=int, default=8, help="chat requests generated together")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--smoke", action="store_true", help="tiny models, 16 requests a run, 4 tokens")
    args = p.parse_args(argv)
    if args.smoke:
        args.requests, args.max_tokens, args.max_seconds = 16, 4, 20.0
    return args


def rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB (Linux /proc)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def build(task: str, smoke: bool):
    """The recipe's model, untrained, as `vlkit.load` would return it."""
    overrides = (SMOKE_VLM if task == "chat" else SMOKE_MODEL) if smoke else []
    cfg = load_config(os.path.join(ROOT, RECIPES[task]), overrides)
    torch.manual_seed(0)
    model = build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))).eval()
    if task == "chat":  # untrained weights end every reply at once: seeded noise gives replies length
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator), alpha=0.3)
    return WRAPPERS[cfg.kind](model, cfg, None), cfg


def data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def bodies(task: str, image: np.ndarray, max_tokens: int) -> tuple[str, bytes]:
    """(path, JSON body) of the task's request."""
    url = data_url(image)
    if task == "classify":
        return "/classify", json.dumps({"images": [url], "labels": LABELS}).encode()
    content = [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "What is in the image?"},
    ]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0}
    return "/chat/completions", json.dumps(body).encode()


def post(url: str, body: bytes) -> int:
    """The status of one POST; 0 when no HTTP answer came (a refused or broken connection)."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            reply.read()
            return reply.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except OSError:
        return 0


def load_run(url: str, body: bytes, concurrency: int, requests: int, max_seconds: float) -> dict:
    """`concurrency` client threads send `requests` POSTs in all (stopping at `max_seconds`)."""
    latencies, statuses, lock = [], Counter(), threading.Lock()
    tickets, deadline = itertools.count(), time.monotonic() + max_seconds

    def client() -> None:
        while next(tickets) < requests and time.monotonic() < deadline:
            start = time.perf_counter()
            status = post(url, body)
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ok, limited = statuses[200], statuses[429]
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "rate_limited_429": limited,
        "errors": sum(statuses.values()) - ok - limited,
        "seconds": round(seconds, 3),
        "throughput_rps": round(ok / seconds, 3),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
    }


def served(task: str, loaded, args, max_queue: int):
    """The app `vlkit serve` builds around the model, admitting `max_queue` requests at once."""
    batching = {"max_batch": args.max_batch, "wait_ms": 10.0, "max_pending": max_queue}
    model = SERVED_KINDS[loaded.cfg.kind].wrap(loaded, batching)
    limits = Limits(max_tokens=max(args.max_tokens, 16), max_active=max_queue)
    return create_app(model, task, limits), model


def task_runs(task: str, loaded, image: np.ndarray, args) -> dict:
    """Concurrency 1, 4, 8, 16 below capacity, then 16 clients against the overload queue."""
    path, body = bodies(task, image, args.max_tokens)
    rows = []
    app, model = served(task, loaded, args, args.max_queue)
    with BackgroundServer(app, host="127.0.0.1") as url:
        post(url + path, body)  # warm-up: first-call costs stay out of the figures
        for concurrency in CONCURRENCY:
            batches = getattr(model, "batches", None)
            if batches is not None:
                batches.clear()
            row = load_run(url + path, body, concurrency, args.requests, args.max_seconds)
            if batches:
                row["mean_batch"] = round(sum(batches) / len(batches), 2)
            rows.append(row)
            print_row(task, row, rows[0])
    app, _ = served(task, loaded, args, args.overload_queue)
    with BackgroundServer(app, host="127.0.0.1") as url:
        overload = load_run(url + path, body, CONCURRENCY[-1], args.requests, args.max_seconds)
    overload["max_queue"] = args.overload_queue
    print(
        f"{task} overload (--max-queue {args.overload_queue}, {CONCURRENCY[-1]} clients): "
        f"{overload['ok']} ok, {overload['rate_limited_429']} refused with 429 (counted, not failures), "
        f"{overload['errors']} errors"
    )
    return {"runs": rows, "overload": overload}


def print_row(task: str, row: dict, sequential: dict) -> None:
    speedup = row["throughput_rps"] / sequential["throughput_rps"] if sequential["throughput_rps"] else 0.0
    name = "sequential" if row["concurrency"] == 1 else f"concurrency {row['concurrency']}"
    batch = f", mean batch {row['mean_batch']}" if "mean_batch" in row else ""
    print(
        f"{task:<9} {name:<15} {row['ok']:>3}/{row['requests']:<3} ok, {row['errors']} errors, "
        f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, {row['throughput_rps']:.2f} req/s "
        f"({speedup:.2f}x sequential){batch}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before, memory = os.getloadavg()[0], {"before_models": rss_mb()}
    models = {task: build(task, args.smoke) for task in RECIPES}
    memory["models_built"] = rss_mb()
    image = build_dataset(models["chat"][1].data)[10_000]["image"]
    results = {task: task_runs(task, loaded, image, args) for task, (loaded, _) in models.items()}
    memory["after_runs"] = rss_mb()
    print(
        f"resident memory: {memory['before_models']['VmRSS']:.0f} MB before the models, "
        f"{memory['models_built']['VmRSS']:.0f} MB built, {memory['after_runs']['VmRSS']:.0f} MB after the runs "
        f"(peak {memory['after_runs']['VmHWM']:.0f} MB); load average before {load_before:.1f}"
    )
    errors = sum(row["errors"] + row["rate_limited_429"] for r in results.values() for row in r["runs"])
    print(f"errors below capacity: {errors} ({'PASS' if errors == 0 else 'FAIL'})")
    if not args.smoke:
        sizes = {task: RECIPES[task] for task in RECIPES}
        write_results(
            "serve_load",
            {
                **run_info(load_before, args.threads),
                "models": sizes,
                "requests_per_run": args.requests,
                "max_tokens": args.max_tokens,
                "results": results,
                "memory_mb": memory,
            },
        )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
