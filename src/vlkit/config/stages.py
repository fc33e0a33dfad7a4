"""Multi-stage recipes: each stage's config, every later one continuing the one before
(`StageConfig`), and the check that a continued run describes the same architecture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from vlkit.config.loading import apply_override, config_from_dict, to_dict
from vlkit.config.schema import Config, check_ranges
from vlkit.config.sections import ConfigError

# kind → the section whose `init_from` a later stage sets to the previous stage's run
_CONTINUES = {"contrastive": "model", "generative": "vlm", "fusion": "model"}


def stage_configs(cfg: Config) -> list[tuple[str, Config]]:
    """The configs of a multi-stage recipe, in order (see `StageConfig`); [] for a one-stage one."""
    out: list[tuple[str, Config]] = []
    base = to_dict(cfg) | {"stages": []}
    for k, stage in enumerate(cfg.stages):
        if not stage.name or "/" in stage.name:
            raise ConfigError(f"stages[{k}].name: {stage.name!r}; give each stage a plain folder name")
        data = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
        for assignment in stage.set:
            apply_override(data, assignment)
        data["train"]["out_dir"] = str(Path(cfg.train.out_dir) / stage.name)
        if out:  # every later stage continues the last one
            section = _CONTINUES.get(data.get("kind", "contrastive"))
            if section is None:
                raise ConfigError(f"stages[{k}] ({stage.name}): a {data.get('kind')} recipe has no stages")
            data.setdefault(section, {})["init_from"] = out[-1][1].train.out_dir
        try:
            out.append((stage.name, config_from_dict(data)))
            check_ranges(out[-1][1])
        except ConfigError as e:
            raise ConfigError(f"stages[{k}] ({stage.name}): {e}") from None
    return out


def check_continues(cfg: Config, previous: Config, fields: Sequence[str]) -> None:
    """A model that starts from another run's weights (`model.init_from`) must be of its kind and
    describe the same architecture (`fields` of the model section); else a ValueError naming the
    run and every field that differs."""
    where = f"model.init_from={cfg.model.init_from!r}"
    if previous.kind != cfg.kind:
        raise ValueError(f"{where}: a {previous.kind} model; a {cfg.kind} recipe continues a {cfg.kind} one")
    changed = [
        f"model.{k}: {getattr(previous.model, k, None)!r} there, {getattr(cfg.model, k, None)!r} here"
        for k in fields
        if getattr(previous.model, k, None) != getattr(cfg.model, k, None)
    ]
    if changed:
        raise ValueError(
            f"{where}: the architecture differs ({'; '.join(changed)}); the model section must "
            "describe the run it continues"
        )
