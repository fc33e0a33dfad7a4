"""`vlkit tour` and `vlkit train`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from vlkit.commands import Arg

Overrides = Annotated[Sequence[str], Arg(("--set",), metavar="KEY=VALUE")]


def tour(
    *, out: str = "runs/tour", overrides: Overrides = (), fresh: bool = False, progress: bool = True
) -> None:
    """The main job: train the default recipe on scenes, evaluate, report.

    Args:
        out: run folder
        overrides: override a config field (repeatable)
        fresh: start over instead of resuming a previous tour
    """
    from vlkit.tour import run_tour

    run_tour(out, overrides=list(overrides), fresh=fresh, progress=progress)


def train(
    recipe: str | None = None, *, overrides: Overrides = (), print_config: bool = False, progress: bool = True
) -> None:
    """Train from a recipe (resumes the run folder's latest checkpoint).

    Args:
        recipe: YAML recipe (default: the embedded defaults)
        overrides: override a config field, e.g. train.lr=3e-4, or one stage's, e.g. mix:train.steps=900 (repeatable)
        print_config: print the resolved config and exit
    """
    from vlkit.config import load_config, save_config

    cfg = load_config(recipe, list(overrides))
    if print_config:
        save_config(cfg, "/dev/stdout")
        return
    from vlkit.eval.during_training import training_evaluator
    from vlkit.train.loop import exit_distributed_process, train_stages

    out = train_stages(cfg, evaluate=training_evaluator(cfg.kind), progress=progress)
    print(f"run folder: {out}")
    exit_distributed_process()


def train_lm(
    *,
    out: str,
    data: str = "scenes",
    samples: int = 2000,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> None:
    """Train a text-only caption language model (gpt-tiny) on a data set's captions, never its images.

    Each caption becomes a chat reply to "Describe the image in one sentence.", so the model is a
    language model for `vlkit caption` to steer with a contrastive model (MaGiC search). OUT is a
    transformers causal-LM folder (`vlkit serve OUT` chats with it).

    Args:
        out: folder to write (config.json, model.safetensors, the tokenizer)
        data: captioned data whose captions are read (scenes, photos, fashion-mnist, a folder, shards, ...)
        samples: samples whose captions are read (all of them when the data has fewer)
        steps: AdamW steps
        batch_size: captions per step
        lr: peak learning rate (warmup, then cosine to 0)
        seed: initialisation and batch order

    Examples:
        vlkit train-lm --data scenes --out runs/gpt-captions
    """
    from vlkit.data import open_named
    from vlkit.train.text_lm import CaptionLM, train_caption_lm

    dataset = open_named(data)
    captions = [c for i in range(min(samples, len(dataset))) for c in dataset[i]["captions"]]
    settings = CaptionLM(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    train_caption_lm(captions, settings, out, log=lambda step, loss: print(f"step {step}: loss {loss:.3f}"))
    print(f"wrote {out} (gpt-tiny on {len(captions)} captions of {data}, {steps} steps)")
