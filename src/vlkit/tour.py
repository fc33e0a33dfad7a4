"""The main job: train the default contrastive recipe on scenes, evaluate it; then a short
LLaVA-style generative model whose vision tower starts from that CLIP tower answers questions
about held-out scenes; one report for both, written by the evaluation harness (`vlkit eval`):
every task a dual encoder can do on scenes (zero-shot, retrieval, Winoground, grounding by
crops) with breakdowns, plots and per-sample predictions, plus the VLM's held-out VQA.

`vlkit tour` (= `make tour`) runs on the embedded defaults only: no files, no network.
"""

from __future__ import annotations

import time
from pathlib import Path

from vlkit.config import load_config
from vlkit.data.scenes import ZERO_SHOT_CLASSES
from vlkit.eval.cards import write_model_card
from vlkit.eval.during_training import evaluate_scenes
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.report import task_plots, write_predictions, write_report
from vlkit.eval.result import RETRIEVAL_CHANCE
from vlkit.eval.scenes_generative import evaluate_generative, held_out_scenes
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import train

# The generative step: recipes/llava-scenes.yaml's model (the defaults' vit-tiny → mlp2x_gelu →
# gpt-tiny), its vision tower initialised from the tour's CLIP run, as LLaVA starts from CLIP.
GENERATIVE = [
    "kind=generative",
    "train.batch_size=64",
    "train.lr=0.001",
    "train.warmup_steps=30",
    "data.sources=[{kind: scenes}]",  # every caption style and 1-3 objects (not the CLIP's mix)
]
GENERATIVE_STEPS = 300
# Every task a dual encoder can do on scenes (VQA and captions are the generative step's).
TOUR_TASKS = ("zero-shot", "retrieval", "winoground", "grounding")


def run_tour(
    out: str = "runs/tour",
    overrides: list[str] = (),
    fresh: bool = False,
    progress: bool = True,
    generative_overrides: list[str] = (),
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
    d, e = cfg.data, cfg.eval
    benches = scene_benchmarks(d.image_size, d.min_objects, d.max_objects, e.seed, e.num_images, TOUR_TASKS)
    results = evaluate_benchmarks(model, benches, templates=e.templates, progress=progress)
    scores = {k: v for r in results for k, v in r.metrics.items()}
    _print_contrastive(scores, results)
    generative, generative_minutes = run_generative_step(run, overrides, generative_overrides, progress)
    scores |= {f"llava_{k}": v for k, v in generative.items()}
    folder = run / "report"
    report = write_report(
        folder,
        title="vlkit tour: CLIP and a LLaVA-style VLM on scenes",
        metrics=scores,
        details={
            "model": str(model.path),
            "generative model": str(latest_checkpoint(run / "llava")),
            "tasks": [f"{r.benchmark}/{r.task}" for r in results] + ["scenes/vqa (generative)"],
            "training minutes (this session)": round(minutes, 2),
            "generative training minutes (this session)": round(generative_minutes, 2),
        },
        plots=sorted((run / "plots").glob("*.png"))
        + sorted((run / "llava" / "plots").glob("*.png"))
        + task_plots(folder / "plots", results),
        breakdowns={f"{r.benchmark} {r.task}: {k}": v for r in results for k, v in r.breakdowns.items()},
    )
    write_predictions(folder, results)
    write_model_card(model.path, model.path.name, results)
    print(f"report: {report}   plots: {run / 'plots'}   model: {model.path}")
    return scores


def run_generative_step(
    run: Path, overrides: list[str], generative_overrides: list[str], progress: bool
) -> tuple[dict, float]:
    """Trains the generative model from the CLIP run's tower, scores it, shows a few answers."""
    # the shared sizes (model.*, data.*) of the tour's overrides apply to both models
    shared = [o for o in overrides if o.startswith(("model.", "data."))]
    cfg = load_config(
        None,
        [
            *GENERATIVE,
            f"train.steps={GENERATIVE_STEPS}",
            f"train.out_dir={run / 'llava'}",
            f"vlm.vision_init={run}",
            *shared,
            *generative_overrides,
        ],
    )
    print()
    print(
        f"vlkit tour: a LLaVA-style VLM ({cfg.model.image_encoder} from the CLIP run → {cfg.vlm.connector} → ",
        end="",
    )
    print(
        f"{cfg.vlm.language_model}), {cfg.train.steps} steps of captions and questions → {cfg.train.out_dir}"
    )
    started = time.perf_counter()
    train(cfg, progress=progress)  # scored once below (also when a rerun resumes a finished run)
    minutes = (time.perf_counter() - started) / 60
    import vlkit

    model = vlkit.load(latest_checkpoint(cfg.train.out_dir))
    scores = evaluate_generative(model, cfg)
    d = cfg.data
    scene = held_out_scenes(d.image_size, d.min_objects, d.max_objects, cfg.eval.seed, cfg.eval.num_images)[0]
    print(f"a held-out scene: {scene.captions[0]}")
    print(f"  caption: {model.caption([scene.image])[0]}")
    answers = model.answer([scene.image] * len(scene.qa), [qa.question for qa in scene.qa])
    for qa, answer in zip(scene.qa, answers):
        print(f"  Q: {qa.question}  A: {answer}  (truth: {qa.answer})")
    kinds = ", ".join(
        f"{k[4:]} {v:.0%} (prior {scores.get('prior_' + k[4:], float('nan')):.0%})"
        for k, v in scores.items()
        if k.startswith("vqa_") and k != "vqa_accuracy"
    )
    print(
        f"held-out VQA exact match {scores['vqa_accuracy']:.1%}, question-only prior "
        f"{scores['prior_accuracy']:.1%} ({kinds}); captions naming every object: "
        f"{scores['caption_all_named']:.1%}"
    )
    return scores, minutes


def _print_contrastive(scores: dict, results: list) -> None:
    print()
    print(
        f"held-out 32-way colour×shape zero-shot: top-1 {scores['top1']:.1%}, top-5 {scores['top5']:.1%} "
        f"(chance {1 / len(ZERO_SHOT_CLASSES):.1%}; colour right, shape guessed: 25%)"
    )
    (retrieval,) = [r for r in results if r.task == "retrieval"]
    chance = retrieval.breakdowns[RETRIEVAL_CHANCE]
    print(
        f"retrieval on held-out scenes: text→image R@1 {scores['t2i_R@1']:.1%} (chance {chance['t2i_R@1']:.1%}), "
        f"R@5 {scores['t2i_R@5']:.1%}; image→text R@1 {scores['i2t_R@1']:.1%} (chance {chance['i2t_R@1']:.1%}), "
        f"R@5 {scores['i2t_R@5']:.1%}"
    )
    print(
        f"  {scores['t2i_shared_queries']:.1%} of the text queries are also another image's caption; counting "
        f"any image with the query text as a hit, text→image R@1 is {scores['t2i_R@1_any']:.1%}"
    )
    print(
        f"Winoground-style colour swap: text {scores['wino_text']:.1%}, image {scores['wino_image']:.1%}, "
        f"group {scores['wino_group']:.1%} (chance: text 25%, image 25%, group 16.7%)"
    )
    (grounding,) = [r for r in results if r.task == "grounding"]
    chance = grounding.breakdowns["grounding_acc@0.5 vs a random pick"]["random pick"]
    print(
        f"grounding by crops (pick the scene object the phrase names): Acc@0.5 {scores['grounding_acc@0.5']:.1%} "
        f"(a random pick: {chance:.1%})"
    )
