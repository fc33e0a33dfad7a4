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
        overrides: override a config field, e.g. train.lr=3e-4 (repeatable)
        print_config: print the resolved config and exit
    """
    from vlkit.config import load_config, save_config

    cfg = load_config(recipe, list(overrides))
    if print_config:
        save_config(cfg, "/dev/stdout")
        return
    from vlkit.eval.during_training import training_evaluator
    from vlkit.train.loop import train_stages

    out = train_stages(cfg, evaluate=training_evaluator(cfg.kind), progress=progress)
    print(f"run folder: {out}")
