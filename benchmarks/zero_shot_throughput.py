"""Zero-shot classification throughput: vlkit vs transformers' pipeline, same checkpoint, same images.

    python benchmarks/zero_shot_throughput.py                       # untrained default model, 512 images
    python benchmarks/zero_shot_throughput.py --model runs/clip-scenes --images 1024 --threads 2
    python benchmarks/zero_shot_throughput.py --smoke               # tiny model, 16 images, < 1 min (CI)

The vlkit model is exported with `vlkit.export.export_transformers` and the exported folder is
loaded by `transformers.pipeline("zero-shot-image-classification")`. Both classify the same PIL
images (scenes, seed 12345) into the 32 scenes classes with the same template. The images are
rendered at `--render-size` (default 1.5x the model's input size), never at the model's size:
vlkit skips resizing an image that already has it while the transformers processor resizes
anyway, so both sides must be given the same resize work. Measured in one process, interleaved,
median over `--repeats` rounds:
  (a) the pipeline called once per image,
  (b) the pipeline called with the whole list and `batch_size` (best of `--pipeline-batch`),
  (c) vlkit `classify(images, labels, templates)`, first call, so embedding the labels is
      included (best of `--vlkit-batch`; 32 is classify's default),
  (c') the same call again with the label embeddings cached, and
  (d) the image tower alone on preprocessed tensors: a floor on the time of any implementation.
Goals: (c) >= 10x (a) and >= 4x (b), with identical top-1 labels. A top-1 mismatch is a
correctness failure (exit 1); a missed speed goal prints MISS only, because timings here are noisy.
Writes benchmarks/results/zero_shot_throughput.json (not with --smoke).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import SMOKE_MODEL, run_info, write_results
from PIL import Image

SPEEDUP_GOALS = {"a": 10.0, "b": 4.0}  # vlkit (c) over pipeline (a) per image, (b) batched
SCENES_SEED = 12345


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a vlkit model or run folder (default: an untrained default model)")
    p.add_argument("--images", type=int, default=512, help="scenes images to classify")
    p.add_argument(
        "--render-size",
        type=int,
        default=0,
        help="scenes render size (default: 1.5x the model's; never equal)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are reported")
    p.add_argument("--pipeline-batch", default="32,64", help="pipeline batch sizes for (b); best reported")
    p.add_argument("--vlkit-batch", default="32,128", help="classify batch sizes for (c); best reported")
    p.add_argument("--template", default="This is a photo of {}.", help="the one template both use")
    p.add_argument("--smoke", action="store_true", help="tiny model, 16 images, one round: for CI")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.repeats, args.pipeline_batch, args.vlkit_batch = min(args.images, 16), 1, "8", "8"
    args.pipeline_batch = [int(b) for b in args.pipeline_batch.split(",")]
    args.vlkit_batch = [int(b) for b in args.vlkit_batch.split(",")]
    return args


# --------------------------------------------------------------------------- setup


def untrained_model(folder: Path, overrides: list[str]) -> Path:
    """Builds and saves a default (or overridden) model, untrained: speed does not depend on weights."""
    from vlkit.config import load_config
    from vlkit.data import build_dataset, iter_captions
    from vlkit.models.build import build_model, save_model
    from vlkit.models.kinds import TOKENIZER_SAMPLES

    # CLIP's patch stem: the transformers pipeline on the other side needs a CLIPModel export
    cfg = load_config(None, ["model.vision_stem=patch", *overrides])
    model = build_model(cfg, texts=iter_captions(build_dataset(cfg.data), TOKENIZER_SAMPLES))
    save_model(model, cfg, folder)
    return folder


def scenes_images(n: int, image_size: int) -> list[Image.Image]:
    from vlkit.data.scenes import Scenes, ScenesConfig

    scenes = Scenes(ScenesConfig(image_size=image_size, seed=SCENES_SEED))
    return [Image.fromarray(scenes[i]["image"]) for i in range(n)]


def quiet_transformers() -> None:
    """No progress bars or the no-torchvision warning in the benchmark's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_pipeline(export_dir: Path):
    from transformers import pipeline

    with warnings.catch_warnings():  # without torchvision the image processor warns about its PIL fallback
        warnings.simplefilter("ignore")
        return pipeline("zero-shot-image-classification", model=str(export_dir), device="cpu")


# --------------------------------------------------------------------------- the ways to classify


def pipeline_per_image(pipe, images: list[Image.Image], labels: list[str], template: str) -> list[list[dict]]:
    return [pipe(im, candidate_labels=labels, hypothesis_template=template) for im in images]


def pipeline_batched(pipe, images, labels, template, batch_size: int) -> list[list[dict]]:
    return pipe(images, candidate_labels=labels, hypothesis_template=template, batch_size=batch_size)


def vlkit_first_call(vl, images, labels, templates, batch_size: int):
    """A fresh wrapper around the same model, so its label cache is empty: the labels are embedded."""
    from vlkit.api import ContrastiveModel

    fresh = ContrastiveModel(vl.model, vl.cfg, vl.path)
    return fresh, fresh.classify(images, labels, templates, batch_size=batch_size)


@torch.inference_mode()
def image_tower_only(vl, pixel_values: torch.Tensor, batch_size: int) -> None:
    for start in range(0, len(pixel_values), batch_size):
        vl.model.encode_images(pixel_values[start : start + batch_size])


def pipeline_probs(outputs: list[list[dict]], labels: list[str]) -> np.ndarray:
    """The pipeline's per-image lists (sorted by score) → float[N, C] in `labels` order."""
    column = {label: c for c, label in enumerate(labels)}
    probs = np.zeros((len(outputs), len(labels)))
    for i, ranked in enumerate(outputs):
        for entry in ranked:
            probs[i, column[entry["label"]]] = entry["score"]
    return probs


# --------------------------------------------------------------------------- measuring


def measure(args, vl, pipe, images, labels) -> tuple[dict[str, float], dict]:
    """images/s per method (median over rounds, interleaved) and the outputs compared for agreement."""
    t, templates = args.template, [args.template]
    pixel_values = vl.model.image_tower.preprocess([np.asarray(im) for im in images])
    # Warm-up on a few images; vlkit warms up with another template so the timed call embeds the labels.
    pipeline_per_image(pipe, images[:2], labels, t)
    pipeline_batched(pipe, images[:4], labels, t, args.pipeline_batch[0])
    vl.classify(images[:4], labels, ["a {}."])

    seconds: dict[str, list[float]] = {}
    outputs: dict = {}

    def clock(key: str, fn):
        start = time.perf_counter()
        outputs[key] = fn()
        seconds.setdefault(key, []).append(time.perf_counter() - start)

    for _ in range(args.repeats):  # interleaved, so a busy moment on the machine hits every method
        clock("a", lambda: pipeline_per_image(pipe, images, labels, t))
        for b in args.pipeline_batch:
            clock(f"b{b}", lambda b=b: pipeline_batched(pipe, images, labels, t, b))
        for b in args.vlkit_batch:
            clock(f"c{b}", lambda b=b: vlkit_first_call(vl, images, labels, templates, b))
            fresh = outputs[f"c{b}"][0]
            clock(f"c'{b}", lambda b=b, fresh=fresh: fresh.classify(images, labels, templates, batch_size=b))
            clock(f"d{b}", lambda b=b: image_tower_only(vl, pixel_values, b))
    rate = {k: len(images) / statistics.median(v) for k, v in seconds.items()}
    for method, sizes in (("b", args.pipeline_batch), ("c", args.vlkit_batch)):
        best = max(sizes, key=lambda b: rate[f"{method}{b}"])
        rate[method], rate[f"{method}-best"] = rate[f"{method}{best}"], best
    rate["c'"] = rate[f"c'{rate['c-best']}"]
    rate["d"] = max(rate[f"d{b}"] for b in args.vlkit_batch)
    return rate, outputs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vlkit.api import load
    from vlkit.data.scenes import ZERO_SHOT_CLASSES
    from vlkit.export import export_transformers

    labels = list(ZERO_SHOT_CLASSES)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vlkit-zero-shot-") as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = untrained_model(Path(tmp) / "model", SMOKE_MODEL if args.smoke else [])
        export_dir = export_transformers(model_dir, Path(tmp) / "exported")
        vl = load(model_dir)
        pipe = load_pipeline(export_dir)
        model_size = args.model_size = vl.cfg.model.image_size
        args.render_size = args.render_size or model_size * 3 // 2
        if args.render_size == model_size:
            raise SystemExit(
                f"--render-size {model_size} is the model's: vlkit would skip the resize the pipeline does"
            )
        images = scenes_images(args.images, args.render_size)
        rate, outputs = measure(args, vl, pipe, images, labels)
    ok, figures = report(args, rate, outputs, labels, load_before)
    if not args.smoke:
        import transformers

        info = run_info(load_before, torch.get_num_threads())
        info |= {"torch": torch.__version__, "transformers": transformers.__version__}
        sizes = {"model_image_size": model_size, "render_size": args.render_size, "images": args.images}
        write_results("zero_shot_throughput", info | sizes | figures)
    return 0 if ok else 1


# --------------------------------------------------------------------------- reporting


def report(args, rate: dict, outputs: dict, labels: list[str], load_before: float) -> tuple[bool, dict]:
    """Prints the tables; → (top-1 labels identical, the figures for the results file)."""
    print(
        f"\nZero-shot classification: {args.images} scenes images ({args.render_size} px, both sides resize) "
        f"x {len(labels)} labels, template {args.template!r}"
    )
    untrained = (
        f"untrained {'tiny smoke' if args.smoke else 'default'} config (speed does not depend on weights)"
    )
    print(f"model: {args.model or untrained}; input {args.model_size} px, images {args.render_size} px")
    print(
        f"torch threads: {torch.get_num_threads()}; median of {args.repeats} interleaved round(s); ", end=""
    )
    load_after = os.getloadavg()[0]
    print(f"load average before/after: {load_before:.1f}/{load_after:.1f} on {os.cpu_count()} CPUs")
    if max(load_before, load_after) > (os.cpu_count() or 1):
        print("WARNING: other processes are busy: absolute figures are unreliable; try --threads 1")
    rows = [("(a) pipeline, one call per image", rate["a"])]
    rows += [(f"(b) pipeline, whole list, batch_size={b}", rate[f"b{b}"]) for b in args.pipeline_batch]
    rows += [(f"(c) vlkit classify, first call, batch_size={b}", rate[f"c{b}"]) for b in args.vlkit_batch]
    rows += [
        (f"(c') vlkit classify, labels cached, batch_size={b}", rate[f"c'{b}"]) for b in args.vlkit_batch
    ]
    rows += [(f"(d) image tower alone, batch_size={b}", rate[f"d{b}"]) for b in args.vlkit_batch]
    print(f"\n{'method':<54}{'images/s':>10}{'vlkit (c) is':>14}")
    for name, r in rows:
        print(f"{name:<54}{r:>10.1f}{rate['c'] / r:>13.2f}x")
    print(f"(b) = best pipeline batch_size {rate['b-best']}, (c) = best vlkit batch_size {rate['c-best']}")

    _, vl_result = outputs[f"c{rate['c-best']}"]
    batched = outputs[f"b{rate['b-best']}"]
    ok, agreement = True, {}
    print(f"\n{'agreement with vlkit (c)':<40}{'top-1 identical':>18}{'max |dprob|':>14}")
    for name, out in (("(a) pipeline per image", outputs["a"]), ("(b) pipeline batched", batched)):
        same = float(np.mean([o[0]["label"] == top for o, top in zip(out, vl_result.top)]))
        diff = float(np.abs(pipeline_probs(out, labels) - vl_result.probs).max())
        ok &= same == 1.0
        agreement[name] = {"top1_identical": same, "max_abs_dprob": diff}
        print(f"{name:<40}{same:>17.2%}{diff:>14.2e}")

    print("\ngoals")
    verdicts = {}
    for key, goal in SPEEDUP_GOALS.items():
        ratio = rate["c"] / rate[key]
        verdicts[f"(c) >= {goal:g}x ({key})"] = {
            "ratio": ratio,
            "verdict": "PASS" if ratio >= goal else "MISS",
        }
        print(
            f"  vlkit (c) >= {goal:g}x pipeline ({key}): {ratio:6.2f}x  {'PASS' if ratio >= goal else 'MISS'}"
        )
    ceiling = rate["d"] / rate["b"]
    print(f"  (ceiling: the image tower alone is {ceiling:.2f}x the batched pipeline)")
    print(f"  identical top-1 labels: {'PASS' if ok else 'FAIL'}")
    if not ok:
        print(
            "FAIL: vlkit and the pipeline disagree on top-1 labels for the same checkpoint", file=sys.stderr
        )
    images_per_s = {name: r for name, r in rows}
    figures = {"images_per_s": images_per_s, "best_batch": {"b": rate["b-best"], "c": rate["c-best"]}}
    return ok, figures | {"agreement": agreement, "goals": verdicts, "ceiling_d_over_b": ceiling}


if __name__ == "__main__":
    sys.exit(main())
