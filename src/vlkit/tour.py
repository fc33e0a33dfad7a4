"""The main job: train the default contrastive recipe on scenes (the defaults in the curriculum
`vlkit.config.default_stages`: colour × shape, then binding), evaluate it; then a LLaVA-style
generative model on that CLIP's tower (`GENERATIVE`: recipes/llava-clip-scenes-staged.yaml's
two stages; the tower frozen in the first, trained in the second) answers questions about
held-out scenes; one report for both, written by `vlkit eval`'s `run_eval`: every task a dual
encoder can do on scenes (zero-shot, retrieval, Winoground, grounding by crops) with breakdowns,
plots and per-sample predictions, plus the VLM's held-out VQA and caption coverage (its own
`vlkit eval` report is in `<run>/llava/eval-scenes`).

`vlkit tour` (= `make tour`) runs on the embedded defaults only: no files, no network. It prints
this machine's fp32 `torch.mm` peak and its minutes, also scaled to a 250 GFLOP/s machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vlkit.config import Config, default_stages, load_config, stage_configs
from vlkit.data.scenes import ZERO_SHOT_CLASSES
from vlkit.eval.during_training import GENERATIVE_TASKS, evaluate_scenes
from vlkit.eval.embedded import held_out_scenes
from vlkit.eval.result import RETRIEVAL_CHANCE, flat_scores
from vlkit.eval.run import run_eval
from vlkit.models.folders import resolve_model_dir
from vlkit.train.loop import train_stages
from vlkit.train.machine import REFERENCE_GFLOPS, matmul_peak, scaled_minutes
from vlkit.train.precision import cpu_bf16_speedup, use_bf16, use_fixed_shapes

# The generative step: recipes/llava-clip-scenes-staged.yaml (tests/test_config.py checks that the
# two train the same), on the tour's CLIP tower, reading its layer before the last as LLaVA reads
# CLIP's: a from-scratch Llama reading its questions through the packaged MiniLM, first on where
# things are (with a head naming each named object's cell; the tower frozen), then on captions and
# questions in varied wordings (the tower trained with it). Why each setting: the recipe's header
# and benchmarks/README.md.
_GROUNDING = {
    "kind": "scenes",
    "min_objects": 2,
    "question_wordings": "varied",
    "position_questions": True,
    "question_types": ["position", "relation"],
}
GENERATIVE = {
    "kind": "generative",
    "vlm": {
        "freeze_vision": True,
        "vision_feature_layer": -2,
        "language_model": "gpt-tiny-reader",
        "logits_at_answers": True,
        "data_vocabulary": True,
        "lm_width": 128,
        "lm_layers": 4,
        "lm_heads": 4,
        "max_length": 192,
        "length_groups": 3,
        "short_answer_once": True,
        "connector": "merge2x2_mlp",
        "connector_coordinates": True,
        "tasks": ["caption", "vqa"],
    },
    "data": {"sources": [{"kind": "scenes", "question_wordings": "varied"}, _GROUNDING]},
    "train": {
        "bf16": "auto",  # bf16 autocast where this machine multiplies faster in it (vlkit/train/precision.py)
        "steps": 1200,
        "batch_size": 64,
        "lr": 0.001,
        "warmup_steps": 30,
        "eval_every": 300,
        "save_every": 300,
    },
    "eval": {"num_images": 128},
    "stages": [
        {
            "name": "grounding",
            "set": [
                f"data.sources=[{json.dumps(_GROUNDING)}]",
                "vlm.tasks=[vqa]",
                "vlm.lm_init_std=0.06",
                "vlm.grounding_weight=1",
                "vlm.grounding_layer=2",
                "train.steps=600",
            ],
        },
        {"name": "mix", "set": ["vlm.freeze_vision=false"]},
    ],
}
# Every task a dual encoder can do on scenes (VQA and captions are the generative step's).
TOUR_TASKS = ("zero-shot", "retrieval", "winoground", "grounding")


def clip_defaults() -> dict:
    """The tour's CLIP: `Config`'s defaults in the curriculum `default_stages`, in bf16 autocast
    where this machine multiplies faster in it (recipes/clip-scenes.yaml writes the same)."""
    return {"train": {"bf16": "auto"}, "stages": default_stages()}


def _device_type() -> str:
    """The device the tour's training runs on (accelerate's choice: a GPU where there is one)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def precision_line(setting: bool | str) -> str:
    """Which precision `train.bf16` (true, false, "auto") trains in here, and why."""
    device = _device_type()
    if not use_bf16(setting, device):
        return "fp32" + (" (this machine multiplies no faster in bf16)" if setting == "auto" else "")
    if device == "cpu":
        return f"bf16 autocast, attention in fp32 (this CPU's bf16 matmul runs {cpu_bf16_speedup():.1f}x its fp32)"
    return "bf16 autocast"


def shapes_note(cfg: Config) -> str:
    """The printout's note for a generative stage whose passes are padded to repeating shapes
    (`vlm.fixed_shapes` resolved for this machine); "" for one whose are not."""
    device = _device_type()
    fixed = use_fixed_shapes(cfg.vlm.fixed_shapes, use_bf16(cfg.train.bf16, device), device)
    return ", passes padded to repeating shapes (vlm.fixed_shapes)" if fixed else ""


def run_tour(
    out: str = "runs/tour",
    overrides: list[str] = (),
    fresh: bool = False,
    progress: bool = True,
    generative_overrides: list[str] = (),
) -> dict:
    cfg = load_config(None, [f"train.out_dir={out}", *overrides], defaults=clip_defaults())
    run = Path(cfg.train.out_dir)
    if fresh and run.exists():
        import shutil

        shutil.rmtree(run)
    peak = matmul_peak()[0]
    _print_clip_header(cfg, peak)
    tour_started = started = time.perf_counter()
    clip = train_stages(cfg, evaluate=evaluate_scenes, progress=progress)  # the last stage's run
    minutes = (time.perf_counter() - started) / 60
    generative, generative_minutes, vlm_stages = run_generative_step(
        clip, run, overrides, generative_overrides, progress
    )
    # one report for both, written by `vlkit eval`'s run_eval: the CLIP's tasks, the VLM's scores
    result = run_eval(
        str(clip),
        "scenes",
        task=TOUR_TASKS,
        out_dir=str(run / "report"),
        progress=progress,
        model_card=True,
        title="vlkit tour: CLIP and a LLaVA-style VLM on scenes",
        extra_details={
            "generative model": str(resolve_model_dir(vlm_stages[-1])),
            "generative tasks": [f"scenes/{t}" for t in GENERATIVE_TASKS],
            "training minutes (this session)": round(minutes, 2),
            "generative training minutes (this session)": round(generative_minutes, 2),
            "fp32 torch.mm peak (GFLOP/s)": round(peak),
            "training precision": precision_line(cfg.train.bf16),
        },
        extra_plots=[p for folder in (clip, *vlm_stages) for p in sorted((folder / "plots").glob("*.png"))],
        extra_metrics={f"llava_{k}": v for k, v in generative.items()},
    )
    scores = result["metrics"]
    _print_contrastive(scores, result["results"])
    print(f"report: {result['report']}   plots: {clip / 'plots'}   model: {result['model']}")
    all_told = (time.perf_counter() - tour_started) / 60
    spent = {"CLIP training": minutes, "VLM training": generative_minutes, "the tour all told": all_told}
    print(
        f"minutes (this session; scaled to {REFERENCE_GFLOPS:.0f} GFLOP/s): "
        + ", ".join(f"{k} {v:.1f} ({scaled_minutes(v, peak):.1f})" for k, v in spent.items())
    )
    return scores


def _print_clip_header(cfg, peak: float) -> None:
    print(
        f"vlkit tour: this machine's fp32 torch.mm peak is {peak:.0f} GFLOP/s at {torch.get_num_threads()} "
        f"threads (minutes below are also scaled to a {REFERENCE_GFLOPS:.0f} GFLOP/s machine)"
    )
    print(
        f"vlkit tour: training a CLIP-style dual encoder from scratch on procedural scenes → {cfg.train.out_dir}"
    )
    stages = stage_configs(cfg)
    print(
        f"  {' + '.join(f'{s.train.steps} ({name})' for name, s in stages)} steps × {cfg.train.batch_size} "
        f"image-caption pairs, {cfg.model.image_encoder} + {cfg.model.text_encoder}, {cfg.model.loss} loss, "
        f"in {precision_line(cfg.train.bf16)}"
    )


def run_generative_step(
    clip: Path, run: Path, overrides: list[str], generative_overrides: list[str], progress: bool
) -> tuple[dict, float, list[Path]]:
    """Trains the generative model's stages (in `run`/llava) from the CLIP run's tower, scores it,
    shows a few answers. → (its scores, training minutes, its stages' run folders)"""
    # the shared sizes (model.*, data.*) of the tour's overrides apply to both models
    shared = [o for o in overrides if o.startswith(("model.", "data."))]
    extra = [f"train.out_dir={run / 'llava'}", f"vlm.vision_init={clip}", *shared, *generative_overrides]
    cfg = load_config(None, extra, defaults=GENERATIVE)
    stages = stage_configs(cfg)
    print()
    print(
        f"vlkit tour: a LLaVA-style VLM ({cfg.model.image_encoder} from the CLIP run → {cfg.vlm.connector} → "
        f"{cfg.vlm.language_model}), {' + '.join(f'{s.train.steps} ({name})' for name, s in stages)} steps "
        f"× {cfg.train.batch_size} conversations → {cfg.train.out_dir}"
    )
    print("  " + "; ".join(f"{name} in {precision_line(s.train.bf16)}{shapes_note(s)}" for name, s in stages))
    started = time.perf_counter()
    last = train_stages(cfg, progress=progress)  # scored once below (also when a rerun resumes)
    minutes = (time.perf_counter() - started) / 60
    import vlkit

    model = vlkit.load(resolve_model_dir(last))
    # `vlkit eval runs/tour/llava --task vqa` and `--task caption-coverage`: what training-time eval runs
    result = run_eval(
        model, "scenes", task=GENERATIVE_TASKS, out_dir=str(run / "llava" / "eval-scenes"), progress=progress
    )
    scores = flat_scores(result["results"])
    _print_generative(model, stages[-1][1], scores)
    return scores, minutes, [Path(s.train.out_dir) for _, s in stages]


def _print_generative(model, cfg, scores: dict) -> None:
    d = cfg.data
    scene = held_out_scenes(
        d.image_size, d.min_objects, d.max_objects, cfg.eval.seed, cfg.eval.num_images
    ).asked[0]
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
