"""The `vlkit` command: a thin argparse layer over the library (no logic lives here)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EPILOG = """examples:
  vlkit tour                                        train, evaluate and report on the embedded scenes
  vlkit train recipes/clip-scenes.yaml --set train.lr=3e-4
  vlkit eval runs/clip-scenes --data scenes
  vlkit eval llava-hf-folder --task vqa --data vqav2/ --limit 100
  vlkit eval --compare runs/a/eval-scenes runs/b/eval-scenes
  vlkit classify runs/clip-scenes photo.png --labels "red circle,blue star"
  vlkit index runs/clip-scenes images/ --out images.index
  vlkit search images.index "a small red circle"
  vlkit export runs/clip-scenes --format transformers --out clip-hf
  vlkit train recipes/llava-scenes.yaml                 a generative VLM (vision → connector → LM)
  vlkit caption runs/llava-scenes photo.png
  vlkit ask runs/llava-scenes photo.png "What color is the circle?"
  vlkit chat runs/llava-scenes --image photo.png      interactive; /image PATH switches images
  vlkit data shards scenes --count 1000 --out shards/
"""

# `vlkit eval --task` choices (kept here so `vlkit --help` needs no imports beyond argparse).
TASKS = (
    "zero-shot", "retrieval", "winoground", "vqa", "caption", "grounding",
    "segmentation", "hateful-memes", "snli-ve", "nlvr2",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vlkit",
        description="Build, train, evaluate and serve vision-language models, offline-first.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("tour", help="the main job: train the default recipe on scenes, evaluate, report")
    s.add_argument("--out", default="runs/tour", help="run folder (default: %(default)s)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    s.add_argument("--fresh", action="store_true", help="start over instead of resuming a previous tour")

    s = sub.add_parser("train", help="train from a recipe (resumes the run folder's latest checkpoint)")
    s.add_argument("recipe", nargs="?", help="YAML recipe (default: the embedded defaults)")
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=3e-4"
    )
    s.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    s = sub.add_parser(
        "eval", help="evaluate a model on benchmarks: JSON, predictions, markdown report, plots, model card"
    )
    s.add_argument("model", nargs="?", help="vlkit model or run folder, transformers folder or cached hub id")
    s.add_argument(
        "--data",
        default="scenes",
        help="scenes | photos | fashion-mnist | a benchmark's files (VQAv2, COCO / Karpathy captions, "
        "Winoground, Hateful Memes, SNLI-VE, NLVR2, RefCOCO, class folders) | a vlkit data folder "
        "(default: scenes)",
    )
    s.add_argument(
        "--task",
        default=None,
        choices=TASKS,
        help="one task (default: every task the model and the data support)",
    )
    s.add_argument("--limit", type=int, default=None, help="at most N samples (scenes: N scenes)")
    s.add_argument("--out", default=None, help="report folder (default: <model>/eval-<data>)")
    s.add_argument("--batch-size", type=int, default=32, help="images per model call (default: %(default)s)")
    s.add_argument(
        "--max-new-tokens",
        type=int,
        default=16,
        help="generation length for generative models (default: %(default)s)",
    )
    s.add_argument("--no-card", action="store_true", help="do not write the model card next to the model")
    s.add_argument(
        "--compare",
        nargs="+",
        metavar="RESULT",
        default=None,
        help="print result.json files / eval folders side by side",
    )

    s = sub.add_parser("classify", help="zero-shot classify images against labels")
    s.add_argument("model", help="model or run folder")
    s.add_argument("images", nargs="+", help="image files")
    s.add_argument("--labels", required=True, help="comma-separated labels")
    s.add_argument(
        "--template", action="append", default=None, help="prompt template with {} (repeat to ensemble)"
    )
    s.add_argument("--top", type=int, default=3, help="labels to print per image")
    _strict_arg(s)

    s = sub.add_parser("index", help="embed a folder of images into a search index")
    s.add_argument("model", help="model or run folder")
    s.add_argument("folder", help="folder of images (searched recursively)")
    s.add_argument("--out", required=True, help="index folder to write")
    _strict_arg(s)

    s = sub.add_parser("search", help="text → top-k images of an index")
    s.add_argument("index", help="index folder written by `vlkit index`")
    s.add_argument("query", nargs="+", help="query text(s)")
    s.add_argument("-k", type=int, default=5, help="results per query")
    s.add_argument("--model", default=None, help="model folder (default: the one the index was built with)")
    s.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "numpy", "faiss"],
        help="exact numpy search, or faiss (auto: faiss from 50k images up)",
    )

    s = sub.add_parser("caption", help="caption images with a generative model")
    s.add_argument("model", help="generative model or run folder")
    s.add_argument("images", nargs="+", help="image files")
    s.add_argument("--prompt", default=None, help="condition the caption on this instruction")
    _strict_arg(s)
    _decoding_args(s)

    s = sub.add_parser("ask", help="answer a question about an image (short-answer VQA)")
    s.add_argument("model", help="generative model or run folder")
    s.add_argument("image", help="image file")
    s.add_argument("question", nargs="+", help="question(s) about the image")
    _decoding_args(s, max_new_tokens=8)

    s = sub.add_parser("chat", help="talk about an image with a generative model (interactive, streamed)")
    s.add_argument("model", help="generative model or run folder")
    s.add_argument("--image", default=None, help="image file the conversation is about")
    _decoding_args(s, max_new_tokens=128)

    s = sub.add_parser("export", help="export to another library's format")
    s.add_argument("model", help="model or run folder")
    s.add_argument(
        "--format",
        default=None,
        choices=["transformers", "llava"],
        help="transformers (CLIPModel, dual encoders) or llava (LlavaForConditionalGeneration, "
        "generative models); default: the one for the model's kind",
    )
    s.add_argument("--out", required=True, help="output folder")

    s = sub.add_parser("data", help="data tools")
    dsub = s.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    w = dsub.add_parser("shards", help="write a data set as webdataset tar shards")
    w.add_argument("source", help="scenes | photos | fashion-mnist | a folder with captions.jsonl")
    w.add_argument("--out", required=True, help="output folder")
    w.add_argument("--count", type=int, default=None, help="samples to write (needed for scenes)")
    w.add_argument("--per-shard", type=int, default=1000)

    s = sub.add_parser(
        "instruct",
        help="generate visual instruction data: LLaVA, MiniGPT-4, MultiInstruct, in-context sets",
        description="Turn images with symbolic annotations into instruction data (LLaVA JSON + chat JSONL, "
        "stats.json, CARD.md). Runs resume where they stopped; teacher replies are cached in <out>/cache.sqlite.\n"
        "Sources: scenes (with --count) | a COCO instances/captions file or folder | a LLaVA JSON | "
        "a folder with captions.jsonl.\nTeachers: template: (exact, no LLM) | local:NAME (registry LM or folder) | "
        "openai:MODEL@BASE_URL (key from --api-key-env).",
        epilog="examples:\n"
        "  vlkit instruct llava --source scenes --count 1000 --out data/scenes-instruct\n"
        "  vlkit serve --lm smollm2-135m --port 8000 &\n"
        "  vlkit instruct llava --source coco/ --teacher openai:smollm2-135m@http://127.0.0.1:8000/v1 --concurrency 8 --out out/\n"
        "  vlkit instruct minigpt4 --source photos/ --describer runs/vlm --teacher local:smollm2-135m --out out/\n"
        "  vlkit instruct multiinstruct --source scenes --count 500 --out data/multi\n"
        "  vlkit instruct incontext --input data/scenes-instruct/llava.json --k 3 --out data/icl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    isub = s.add_subparsers(dest="instruct_command", required=True, metavar="GENERATOR")
    gens = {
        "llava": isub.add_parser("llava", help="conversation, detailed description, complex reasoning"),
        "minigpt4": isub.add_parser("minigpt4", help="a VLM describes each image, a teacher cleans the text"),
        "multiinstruct": isub.add_parser(
            "multiinstruct", help="task templates: VQA, captioning, grounding, ..."
        ),
    }
    for name, g in gens.items():
        g.add_argument(
            "--source", required=True, help="scenes | COCO file/folder | LLaVA JSON | captions.jsonl folder"
        )
        g.add_argument("--count", type=int, default=None, help="images to use (needed for scenes)")
        g.add_argument("--seed", type=int, default=0, help="scenes world seed")
        g.add_argument("--out", required=True, help="output folder (rerun to resume)")
        if name == "multiinstruct":
            g.add_argument("--tasks", default=None, help="comma-separated tasks (default: all)")
            continue
        g.add_argument(
            "--teacher",
            default="template:" if name == "llava" else None,
            required=name != "llava",
            help="template: | local:NAME | openai:MODEL@BASE_URL",
        )
        g.add_argument(
            "--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key"
        )
        g.add_argument("--concurrency", type=int, default=1, help="teacher calls in flight")
        g.add_argument("--max-tokens", type=int, default=512)
        g.add_argument("--temperature", type=float, default=0.0)
        g.add_argument("--rate", type=float, default=0.0, help="max teacher calls per minute (0: no limit)")
        g.add_argument(
            "--retries", type=int, default=4, help="retries on timeouts, 429 and 5xx (backoff doubles)"
        )
        g.add_argument("--timeout", type=float, default=120.0, help="seconds per teacher call")
        g.add_argument(
            "--cache", default=None, help="SQLite file of teacher replies (default: <out>/cache.sqlite)"
        )
    gens["llava"].add_argument(
        "--kinds", default="conversation,detail,reasoning", help="comma-separated kinds"
    )
    gens["minigpt4"].add_argument("--describer", required=True, help="generative VLM folder (vlkit.load)")
    g = isub.add_parser("incontext", help="group similar records into sets of k examples + a query")
    g.add_argument("--input", required=True, help="a LLaVA JSON (e.g. <out>/llava.json)")
    g.add_argument("--k", type=int, default=3, help="in-context examples per set")
    g.add_argument(
        "--by", default="text", choices=["text", "image"], help="embed texts (--encoder) or images (--model)"
    )
    g.add_argument("--encoder", default="minilm-l6", help="registry text encoder (default: %(default)s)")
    g.add_argument("--model", default=None, help="vlkit contrastive model for --by image")
    g.add_argument("--limit", type=int, default=None, help="at most N records")
    g.add_argument("--out", required=True, help="output folder")

    s = sub.add_parser("serve", help="OpenAI-compatible chat-completions server for a language model")
    s.add_argument(
        "--lm", required=True, help="registry language model (smollm2-135m) or a transformers folder"
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch", type=int, default=8, help="concurrent requests generated together")
    s.add_argument("--wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    return p


def _strict_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image (default: skip it, go on, and list the skipped ones)",
    )


def _decoding_args(s: argparse.ArgumentParser, max_new_tokens: int = 48) -> None:
    s.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="(default: %(default)s)")
    s.add_argument("--beams", type=int, default=1, help="beam search with N beams (default: greedy)")
    s.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    s.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    s.add_argument("--seed", type=int, default=None, help="sampling seed")


def _decoding(args: argparse.Namespace):
    from vlkit.generation import Decoding

    return Decoding(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.beams,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
    )


def _load_generative(path: str):
    import vlkit

    model = vlkit.load(path)
    if not hasattr(model, "chat"):
        raise ValueError(
            f"{path} is a {model.cfg.kind} model; captions, answers and chat need a generative one"
        )
    return model


def _chat_loop(model, image: str | None, decoding) -> None:
    """Reads user turns from stdin, streams the replies; `/image PATH` starts over on another image."""
    history: list[dict] = []
    print(
        "chat: type a message; /image PATH to switch images, /reset to clear, Ctrl-D to quit", file=sys.stderr
    )
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line.startswith("/image "):
            image, history = line.split(" ", 1)[1].strip(), []
            continue
        if line == "/reset":
            history = []
            continue
        content: list[dict] = [{"type": "text", "text": line}]
        if image and not history:
            content.insert(0, {"type": "image", "image": image})
        history.append({"role": "user", "content": content})
        reply = ""
        for piece in model.stream(history, decoding):
            print(piece, end="", flush=True)
            reply += piece
        print()
        history.append({"role": "assistant", "content": reply.strip()})


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _image_files(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise SystemExit(f"error: {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"error: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Quiet transformers (weight-loading bars, info logs) without importing it: config-only
    # commands stay instant.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        _run(args)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _contrastive(path: str, command: str):
    """vlkit.load(path), refused with what to do when it is a generative model (no embeddings)."""
    import vlkit

    model = vlkit.load(path)
    if not hasattr(model, "embed_images"):
        raise SystemExit(
            f"vlkit {command}: {path} is a generative model; {command} needs a contrastive one "
            "(CLIP, SigLIP, LiT). Ask the generative model instead: vlkit ask MODEL IMAGE QUESTION"
        )
    return model


def _report_failures(failures: list, total: int, listed_in: Path | None = None) -> None:
    from vlkit.data.images import describe_failures

    if failures:
        print(f"warning: {describe_failures(failures, total, listed_in)}", file=sys.stderr)


def _run(args: argparse.Namespace) -> None:
    if args.command == "tour":
        from vlkit.tour import run_tour

        run_tour(args.out, overrides=args.set, fresh=args.fresh, progress=not args.quiet)
    elif args.command == "train":
        from vlkit.config import load_config, save_config

        cfg = load_config(args.recipe, args.set)
        if args.print_config:
            save_config(cfg, "/dev/stdout")
            return
        from vlkit.eval.during_training import evaluate
        from vlkit.eval.scenes_generative import evaluate_generative
        from vlkit.train.loop import train_stages

        evaluate = evaluate_generative if cfg.kind == "generative" else evaluate
        out = train_stages(cfg, evaluate=evaluate, progress=not args.quiet)
        print(f"run folder: {out}")
    elif args.command == "eval":
        if args.compare:
            from vlkit.eval.report import compare

            print(compare(([args.model] if args.model else []) + args.compare))
            return
        if not args.model:
            raise ValueError("vlkit eval: give a MODEL (or --compare RESULT ...)")
        from vlkit.eval.run import run_eval

        result = run_eval(
            args.model,
            args.data,
            limit=args.limit,
            out_dir=args.out,
            task=args.task,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            progress=not args.quiet,
            model_card=not args.no_card,
        )
        print(json.dumps(result["metrics"], indent=1))
        print(f"report: {result['report']}")
    elif args.command == "classify":
        import vlkit

        labels = [x.strip() for x in args.labels.split(",") if x.strip()]
        templates = args.template or ["a photo of a {}."]
        model = _contrastive(args.model, "classify")
        result = model.classify(args.images, labels, templates, strict=args.strict)
        for row, probs in zip(result.rows, result.probs):
            best = probs.argsort()[::-1][: args.top]
            print(args.images[row] + "\t" + "\t".join(f"{labels[i]}={probs[i]:.3f}" for i in best))
        _report_failures(result.failures, len(args.images))
    elif args.command == "index":
        from vlkit.api import FAILURES_FILE

        files = _image_files(args.folder)
        model = _contrastive(args.model, "index")
        index, failures = model.index_files(files, args.out, strict=args.strict)
        print(f"indexed {len(index)} images into {args.out}")
        _report_failures(failures, len(files), Path(args.out) / FAILURES_FILE)
    elif args.command == "search":
        import vlkit
        from vlkit.index import SearchIndex

        index = SearchIndex.load(args.index, backend=args.backend)
        model_path = args.model or index.metadata.get("model")
        if not model_path:
            raise ValueError(f"{args.index}: the index names no model; pass --model")
        hits = vlkit.load(model_path).search(index, args.query, args.k)
        for query, results in zip(args.query, hits):
            print(f"# {query}")
            for key, score in results:
                print(f"{score:.4f}\t{key}")
    elif args.command == "caption":
        from vlkit.data.images import ImageError

        model = _load_generative(args.model)
        captions = model.caption(args.images, args.prompt, _decoding(args), strict=args.strict)
        for path, caption in zip(args.images, captions):
            if not isinstance(caption, ImageError):
                print(f"{path}\t{caption}")
        _report_failures([c for c in captions if isinstance(c, ImageError)], len(args.images))
    elif args.command == "ask":
        model = _load_generative(args.model)
        answers = model.answer([args.image] * len(args.question), args.question, _decoding(args))
        for question, answer in zip(args.question, answers):
            print(f"{question}\t{answer}")
    elif args.command == "chat":
        _chat_loop(_load_generative(args.model), args.image, _decoding(args))
    elif args.command == "export":
        from vlkit.export import export, export_llava, export_transformers

        exporter = {None: export, "transformers": export_transformers, "llava": export_llava}[args.format]
        print(f"exported to {exporter(args.model, args.out)}")
    elif args.command == "data":
        from vlkit.data import open_named
        from vlkit.data.shards import write_shards

        dataset = open_named(args.source)
        count = args.count if args.count is not None else len(dataset)
        if count > len(dataset) or count > 10_000_000:
            raise ValueError(
                f"--count {count}: the source has {len(dataset)} samples; pass a smaller --count"
            )
        paths = write_shards((dataset[i] for i in range(count)), args.out, max_per_shard=args.per_shard)
        print(f"wrote {count} samples into {len(paths)} shards under {args.out}")
    elif args.command == "instruct":
        from vlkit import instruct

        cmd, progress = args.instruct_command, not args.quiet
        if cmd == "incontext":
            stats = instruct.generate_incontext(
                args.input, args.out, args.k, args.by, args.encoder, args.model, args.limit
            )
        elif cmd == "multiinstruct":
            tasks = args.tasks.split(",") if args.tasks else instruct.TASKS
            stats = instruct.generate_multiinstruct(
                args.source, args.out, tasks, args.count, args.seed, progress
            )
        else:
            settings = instruct.Settings(
                args.max_tokens,
                args.temperature,
                timeout=args.timeout,
                retries=args.retries,
                rate_per_minute=args.rate,
            )
            common = dict(
                count=args.count,
                seed=args.seed,
                concurrency=args.concurrency,
                settings=settings,
                api_key_env=args.api_key_env,
                progress=progress,
                cache=args.cache,  # was parsed and silently ignored
            )
            if cmd == "llava":
                stats = instruct.generate_llava(
                    args.source, args.out, args.teacher, args.kinds.split(","), **common
                )
            else:
                import vlkit

                describer = vlkit.load(args.describer)
                stats = instruct.generate_minigpt4(
                    args.source,
                    args.out,
                    describer,
                    args.teacher,
                    describer_name=str(Path(args.describer).resolve()),
                    **common,
                )
        print(json.dumps({k: v for k, v in stats.items() if k not in ("per_kind", "runs")}, indent=1))
        print(f"output: {args.out}")
    elif args.command == "serve":
        from vlkit.serve.app import serve

        print(f"serving {args.lm} on http://{args.host}:{args.port}/v1 (OpenAI-compatible)")
        serve(args.lm, args.host, args.port, args.max_batch, args.wait_ms)
