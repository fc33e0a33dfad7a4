"""Images per second of `vlkit index --ray` with 1 and 2 actors, beside one process, on this machine.

    python benchmarks/ray_index.py                 # 1024 scenes at 64 px, the default CLIP
    python benchmarks/ray_index.py --smoke         # tiny model, 32 images, no results file: for CI

A local Ray is started in this process with 2 CPUs (`--cpus`); each run embeds the same PNG files
into an index, from the file list to the saved index (actor start-up and model loading
included: that is what a user waits for). Every index is checked equal to the one-process one.
Writes benchmarks/results/ray_index.json (with the load average before and after: these CPUs
are shared, so compare figures from one run only).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SMOKE_MODEL, run_info, write_results  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the one-process run")
    p.add_argument("--smoke", action="store_true", help="tiny model, 32 images; no results file")
    args = p.parse_args(argv)
    if args.smoke:
        args.images = min(args.images, 32)
    return args


def setup(folder: Path, args) -> tuple[Path, list[Path]]:
    """An untrained model (speed does not depend on weights) and the scene PNGs."""
    from PIL import Image

    from vlkit.config import load_config
    from vlkit.data.scenes import Scenes, ScenesConfig
    from vlkit.models.build import build_model, save_model

    cfg = load_config(None, SMOKE_MODEL if args.smoke else [])
    save_model(build_model(cfg, texts=["a red circle", "a blue star"] * 50), cfg, folder / "model")
    scenes = Scenes(ScenesConfig(image_size=args.image_size, seed=0))
    (folder / "images").mkdir()
    files = []
    for i in range(args.images):
        files.append(folder / "images" / f"{i:05d}.png")
        Image.fromarray(scenes[i]["image"]).save(files[-1])
    return folder / "model", files


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from vlkit.api import load
    from vlkit.index import SearchIndex
    from vlkit.scale import cluster, indexing

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, files = setup(Path(tmp), args)
        model = load(model_dir, kind="contrastive")
        one = Path(tmp) / "one"
        runs["one process"] = timed(lambda: model.index_files(files, one, args.batch_size))
        reference = SearchIndex.load(one)
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        with cluster.connected(cluster.LOCAL):
            for workers in (1, 2):
                out = Path(tmp) / f"ray{workers}"
                runs[f"ray, {workers} worker{'s' * (workers > 1)}"] = timed(
                    lambda: indexing.index_files(model, files, out, args.batch_size, workers=workers)  # noqa: B023
                )
                built = SearchIndex.load(out)
                assert built.keys == reference.keys
                np.testing.assert_allclose(built.embeddings, reference.embeddings, atol=1e-5)
        ray.shutdown()
    rates = {name: round(len(files) / seconds, 1) for name, seconds in runs.items()}
    for name, rate in rates.items():
        print(f"{name:>16}: {rate:8.1f} images/s ({runs[name]:.1f} s)")
    result = {
        "images": len(files),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "ray_cpus": args.cpus,
        "model": "smoke" if args.smoke else "default config (untrained)",
        "seconds": {k: round(v, 2) for k, v in runs.items()},
        "images_per_second": rates,
        **run_info(load_before, args.threads),
    }
    if not args.smoke:
        write_results("ray_index", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
