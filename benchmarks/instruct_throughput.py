"""LLaVA generation against the local OpenAI-compatible server: sequential vs concurrent.

    python benchmarks/instruct_throughput.py                    # smollm2-135m, 24 records, 96 new tokens
    python benchmarks/instruct_throughput.py --lm PATH --records 48 --max-tokens 128
    python benchmarks/instruct_throughput.py --smoke            # a tiny random Llama, seconds

Goal: with --concurrency 8, records/s >= 4x the sequential run on the same records. Both runs
use `generate_llava` with the `openai:` teacher (official client) against one server started
in this process (`vlkit.serve`: FastAPI + uvicorn, micro-batching engine), each run into a
fresh folder (no cache hits), same scenes, same kind (conversation), greedy decoding. The
server batches concurrent requests into one `generate` call (left-padded); the table shows
the batch sizes it actually ran. Order: sequential, concurrent, then both again; best of the
two rounds per mode is reported, with the load average (other processes skew absolute times).
"""

import argparse
import os
import tempfile
import time

import torch

from vlkit.config import VLMConfig
from vlkit.data.contexts import scene_contexts
from vlkit.decoding import Decoding
from vlkit.generation import BatchingEngine, Engine
from vlkit.instruct import Settings, generate_llava
from vlkit.models.registry import build_language_model
from vlkit.serve.app import create_app
from vlkit.serve.server import BackgroundServer


def tiny_lm(folder: str) -> str:
    from vlkit.instruct.prompts import KINDS, llava_messages
    from vlkit.models.language_models import gpt_tiny

    texts = [m["content"] for k in KINDS for m in llava_messages(k, next(scene_contexts(1)).symbolic())]
    torch.manual_seed(0)
    cfg = VLMConfig(lm_width=64, lm_layers=2, lm_heads=4, lm_vocab_size=2000, max_length=2040)
    lm, tokenizer = gpt_tiny(cfg, None, texts * 3)
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm", default="smollm2-135m", help="registry LM or folder")
    p.add_argument("--records", type=int, default=24)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wait-ms", type=float, default=25.0, help="how long the server lets a batch fill")
    p.add_argument("--smoke", action="store_true", help="tiny random Llama, 16 records, 32 tokens")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if args.smoke:
        args.lm, args.records, args.max_tokens, args.rounds = tiny_lm(tmp.name + "/lm"), 16, 32, 1
    model, tokenizer = build_language_model(args.lm, VLMConfig())
    engine = BatchingEngine(Engine(model, tokenizer), max_batch=args.concurrency, wait_ms=args.wait_ms)
    contexts = list(scene_contexts(args.records, seed=3))
    settings = Settings(Decoding(max_new_tokens=args.max_tokens), timeout=3600)  # greedy
    load_before = os.getloadavg()[0]
    results: dict[int, list[tuple[float, float]]] = {1: [], args.concurrency: []}
    with BackgroundServer(create_app(engine, "bench")) as url:
        for r in range(args.rounds):
            for concurrency in (1, args.concurrency):
                engine.batches.clear()
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    stats = generate_llava(
                        contexts,
                        out,
                        f"openai:bench@{url}",
                        ["conversation"],
                        concurrency=concurrency,
                        settings=settings,
                        progress=False,
                    )
                    seconds = time.perf_counter() - start
                assert stats["teacher_calls"] == args.records, stats  # every record asked once, no cache
                mean_batch = sum(engine.batches) / len(engine.batches)
                results[concurrency].append((seconds, mean_batch))
                print(
                    f"round {r + 1}, concurrency {concurrency}: {seconds:.1f} s, mean batch {mean_batch:.1f}, kept {stats['records']}"
                )
    prompt_tokens = sum(len(engine.engine.prompt(_msgs(c))[0]) for c in contexts[:4]) / 4
    print(
        f"\nLM {args.lm}, {args.records} records (LLaVA conversation prompts, ~{prompt_tokens:.0f} tokens), max_tokens {args.max_tokens}, {args.threads} threads"
    )
    print(f"load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<28} {'seconds':>8} {'records/s':>10} {'mean batch':>11} {'speed-up':>9}")
    base = min(s for s, _ in results[1])
    for concurrency, runs in results.items():
        seconds, batch = min(runs)
        name = "sequential" if concurrency == 1 else f"concurrency {concurrency}"
        print(
            f"{name:<28} {seconds:>8.1f} {args.records / seconds:>10.2f} {batch:>11.1f} {base / seconds:>8.2f}x"
        )
    speedup = base / min(s for s, _ in results[args.concurrency])
    print(
        f"goal >= 4x with concurrency {args.concurrency}: {'PASS' if speedup >= 4 else 'MISS'} ({speedup:.2f}x)"
    )


def _msgs(ctx):
    from vlkit.instruct.prompts import llava_messages

    return llava_messages("conversation", ctx.symbolic())


if __name__ == "__main__":
    main()
