"""The main job: train the default contrastive recipe on scenes, evaluate it, print a report.

`vlkit tour` (= `make tour`) runs on the embedded defaults only: no files, no network. The report
comes from the evaluation harness (`vlkit eval`), over every task a dual encoder can do on scenes.
"""

from __future__ import annotations

import time
from pathlib import Path

from vlkit.config import load_config
from vlkit.eval.contrastive import evaluate_scenes
from vlkit.eval.run import run_eval
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import train

# Every task a dual encoder can do on scenes (VQA, captioning, segmentation need a generative model).
TOUR_TASKS = ("zero-shot", "retrieval", "winoground", "grounding")


def run_tour(
    out: str = "runs/tour", overrides: list[str] = (), fresh: bool = False, progress: bool = True
) -> dict:
    cfg = load_config(None, [f"train.out_dir={out}", *overrides])
    run = Path(cfg.train.out_dir)
    if fresh and run.exists():
        import shutil

        shutil.rmtree(run)
    print(f"vlkit tour: training a CLIP-style dual encoder from scratch on procedural scenes → {run}")
    print(
        f"  {cfg.train.steps} steps × {cfg.train.batch_size} image-caption pairs, "
        f"{cfg.model.image_encoder} + {cfg.model.text_encoder}, {cfg.model.loss} loss"
    )
    started = time.perf_counter()
    train(cfg, evaluate=evaluate_scenes, progress=progress)
    minutes = (time.perf_counter() - started) / 60
    import vlkit

    model = vlkit.load(latest_checkpoint(run))
    result = run_eval(
        model,
        "scenes",
        out_dir=str(run / "report"),
        task=TOUR_TASKS,
        progress=progress,
        title="vlkit tour: CLIP on scenes",
        extra_details={"training minutes (this session)": round(minutes, 2)},
        extra_plots=sorted((run / "plots").glob("*.png")),
    )
    scores, report = result["metrics"], result["report"]
    print()
    print(f"held-out 32-way colour×shape zero-shot: top-1 {scores['top1']:.1%}, top-5 {scores['top5']:.1%}")
    print(
        f"retrieval on held-out scenes: text→image R@1 {scores['t2i_R@1']:.1%}, R@5 {scores['t2i_R@5']:.1%}; "
        f"image→text R@1 {scores['i2t_R@1']:.1%}, R@5 {scores['i2t_R@5']:.1%}"
    )
    print(
        f"Winoground-style colour swap: text {scores['wino_text']:.1%}, image {scores['wino_image']:.1%}, "
        f"group {scores['wino_group']:.1%}"
    )
    (grounding,) = [r for r in result["results"] if r.task == "grounding"]
    chance = grounding.breakdowns["grounding_acc@0.5 vs a random pick"]["random pick"]
    print(
        f"grounding by crops (pick the scene object the phrase names): Acc@0.5 {scores['grounding_acc@0.5']:.1%} "
        f"(a random pick: {chance:.1%})"
    )
    print(f"report: {report}   plots: {run / 'plots'}   model: {model.path}")
    return scores
