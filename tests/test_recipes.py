"""Every shipped recipe trains end to end at a tiny size (two steps), and bf16 + accumulation run."""

import json
import math
from pathlib import Path

import pytest

import vlkit
from vlkit.config import load_config
from vlkit.data import open_named
from vlkit.data.memes import write_scene_memes
from vlkit.eval.during_training import training_evaluator
from vlkit.generation import Decoding
from vlkit.train.loop import train, train_stages

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
TINY_TOWERS = [
    "model.vision_width=16",
    "model.vision_layers=1",
    "model.vision_heads=2",
    "model.text_width=16",
    "model.text_layers=1",
    "model.text_heads=2",
    "model.embed_dim=8",
    "model.vocab_size=64",
]
TINY_FUSION = [
    "model.width=16",
    "model.layers=1",
    "model.heads=2",
    "model.vocab_size=64",
    "model.embed_dim=8",
]
TINY_LM = [
    "vlm.lm_width=16",
    "vlm.lm_layers=2",
    "vlm.lm_heads=2",
    "vlm.lm_vocab_size=300",
    "vlm.max_length=192",  # a 300-token vocabulary spells words out: llava-clip-scenes' grounding turns
]


# model kind → a metric its training-time evaluation logs
EVAL_KEYS = {
    "contrastive": "eval/t2i_R@1",
    "generative": "eval/vqa_accuracy",
    "detector": "eval/grounding_acc@0.5",
    "segmenter": "eval/mIoU",
    "fusion": "eval/wino_group",
}
# a segmenter's recipe reads a trained CLIP (`segmenter.clip_init`) at three of its four layers:
# the tiny one starts from scratch and reads its only layer
TINY_SEGMENTER = ["segmenter.clip_init=", "segmenter.extract_layers=[0]"]
# a fusion recipe on a trained CLIP's image tower (`image_embedder: clip`): the tiny one embeds
# patches itself (tests/test_fusion.py trains the CLIP embedder on a tiny CLIP)
TINY_CLIP_EMBEDDER = [
    "model.image_embedder=patch",
    "model.vision_init=",
    "model.freeze_vision=false",
    "model.patch_coordinates=false",
]
# a generative recipe on a trained CLIP's tower (`vlm.vision_init`): the tiny one trains its own
# (tests/test_generative.py starts a VLM from a tiny CLIP run)
TINY_VISION_INIT = ["vlm.vision_init=", "vlm.freeze_vision=false"]


def _tiny_memes(folder: Path) -> list[str]:
    """A fine-tuning recipe's data (a Hateful Memes folder) written small, and the pre-trained run
    it starts from left out (the tiny one starts from scratch): its overrides."""
    write_scene_memes(folder, {"train": 8, "dev": 16}, image_size=32)
    return [
        "model.init_from=",
        f"data.sources=[{{kind: hateful-memes, path: {folder}}}]",
        f"eval.data={folder}",
    ]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_trains_two_steps_and_evaluates(recipe, tmp_path):
    base = load_config(recipe)
    tiny = (
        list(TINY_TOWERS) if getattr(base.model, "image_encoder", "") == "vit-tiny" else []
    )  # a copy: += below
    tiny += TINY_FUSION if base.kind == "fusion" else []
    tiny += TINY_LM if base.kind == "generative" and base.vlm.language_model == "gpt-tiny" else []
    tiny += TINY_SEGMENTER if base.kind == "segmenter" else []
    tiny += TINY_CLIP_EMBEDDER if getattr(base.model, "image_embedder", "") == "clip" else []
    tiny += TINY_VISION_INIT if base.kind == "generative" and base.vlm.vision_init else []
    classifier = base.kind == "fusion" and base.model.objective == "classify"
    tiny += _tiny_memes(tmp_path / "memes") if classifier else []
    generative = base.kind == "generative"
    cfg = load_config(
        recipe,
        [
            *tiny,
            f"train.out_dir={tmp_path / 'run'}",
            "train.steps=2",
            "train.batch_size=4",
            "train.log_every=1",
            "train.eval_every=2",
            f"eval.num_images={2 if generative else 32}",
            f"vlm.feature_cache={tmp_path / 'features'}",
        ],
    )
    # A real 135M LM generates slowly on a CPU: its recipes are scored by one short answer instead.
    small = not generative or cfg.vlm.language_model == "gpt-tiny"
    scorer = training_evaluator(cfg.kind) if small else None  # what `vlkit train` evaluates with
    run = train_stages(cfg, evaluate=scorer, progress=False)
    assert run.name == (cfg.stages[-1].name if cfg.stages else "run")
    log = _log(run)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    if small:
        evals = [r for r in log if any(k.startswith("eval/") for k in r)]
        key = "eval/hm_auroc" if classifier else EVAL_KEYS[cfg.kind]
        assert evals and 0.0 <= evals[-1].get(key, -1) <= 1.0
    else:
        image = open_named("scenes")[0]["image"]
        answer = vlkit.load(run).answer([image], ["What color is it?"], Decoding(max_new_tokens=2))
        assert len(answer) == 1 and isinstance(answer[0], str)
    assert (run / "plots" / "loss.png").is_file()


def test_bf16_autocast_and_gradient_accumulation_train(tiny_cfg):
    tiny_cfg.train.bf16, tiny_cfg.train.grad_accum, tiny_cfg.train.steps = True, 2, 2
    run = train(tiny_cfg, progress=False)
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
