"""`vlkit eval`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

from vlkit.commands import Arg, RayAddress
from vlkit.eval.tasks import Task  # `vlkit eval --task` choices (a leaf: the parser stays cheap)


def evaluate(
    model: str | None = None,
    *,
    data: str = "scenes",
    task: Task | None = None,
    limit: int | None = None,
    out: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    card: bool = False,
    compare: Annotated[Sequence[str] | None, Arg(nargs="+", metavar="RESULT")] = None,
    ray: RayAddress = None,
    ray_workers: int | None = None,
    progress: bool = True,
) -> None:
    """Evaluate a model on benchmarks: JSON, predictions, markdown report, plots (and a model card).

    Args:
        model: vlkit model or run folder, transformers folder or cached hub id
        data: scenes | photos (held-out split) | fashion-mnist (test split) | a benchmark's files
            (VQAv2, COCO / Karpathy captions, Winoground, Hateful Memes, SNLI-VE, NLVR2, RefCOCO,
            class folders) | any other data name (a data folder, shards, a saved HF dataset)
        task: one task (default: every task the model and the data support)
        limit: at most N samples (scenes: N scenes)
        out: report folder (default: <run>/eval-<data> for a run folder, <model>/eval-<data> for a
            model folder)
        batch_size: images per model call
        max_new_tokens: generation length for generative models
        card: also write a model card (README.md with a model-index block) into the model folder
        compare: print result.json files / eval folders side by side (MODEL, if given, first)
        ray: answer the batches on Ray actors: alone, a Ray started here; with ADDRESS, that
            cluster's (metrics computed here, once: the same as without)
        ray_workers: actors at once with --ray (default: one per CPU of the cluster)
    """
    if compare:
        from vlkit.eval.report import compare as compare_results

        print(compare_results(([model] if model else []) + list(compare)))
        return
    if not model:
        raise ValueError("vlkit eval: give a MODEL (or --compare RESULT ...)")
    arguments = dict(data=data, limit=limit, out_dir=out, task=task, batch_size=batch_size)
    arguments |= dict(max_new_tokens=max_new_tokens, progress=progress, model_card=card)
    if ray:
        from vlkit.scale import cluster, evaluation

        with cluster.connected(ray, progress):
            result = evaluation.evaluate(model, ray_workers, **arguments)
    else:
        from vlkit.eval.run import run_eval

        result = run_eval(model, **arguments)
    print(json.dumps(result["metrics"], indent=1))
    if result["note"]:
        print(f"note: {result['note']}")
    print(f"report: {result['report']}")
