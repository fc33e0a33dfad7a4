"""Multi-stage recipes: each stage's config, every later one continuing the one before
(`StageConfig`), and the check that a continued run describes the same architecture."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import yaml

from vlkit.config.loading import apply_override, config_from_dict, to_dict
from vlkit.config.schema import Config, check_ranges
from vlkit.config.sections import ConfigError, SourceConfig

# kind → the section whose `init_from` a later stage sets to the previous stage's run
_CONTINUES = {"contrastive": "model", "generative": "vlm", "fusion": "model"}


def stage_configs(cfg: Config) -> list[tuple[str, Config]]:
    """The configs of a multi-stage recipe, in order (see `StageConfig`); [] for a one-stage one."""
    data = _stage_dicts(cfg)
    if data and data[0].get("kind") == "generative":
        _tokenizer_sees_every_stage(data)
    out: list[tuple[str, Config]] = []
    for k, (stage, stage_data) in enumerate(zip(cfg.stages, data, strict=True)):
        try:
            out.append((stage.name, config_from_dict(stage_data)))
            check_ranges(out[-1][1])
        except ConfigError as e:
            raise ConfigError(f"stages[{k}] ({stage.name}): {e}") from None
    return out


def _stage_dicts(cfg: Config) -> list[dict]:
    """Each stage's config as a dict: the recipe, its `set` overrides applied, its own run
    folder, and (after the first) the previous stage's run as its `init_from`."""
    out: list[dict] = []
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
            data.setdefault(section, {})["init_from"] = out[-1]["train"]["out_dir"]
        out.append(data)
    return out


def _tokenizer_sees_every_stage(data: list[dict]) -> None:
    """A generative recipe's later stages keep the first stage's tokenizer (a from-scratch LM's is
    trained on its data): the first stage's tokenizer also learns the texts of every later stage's
    sources (`data.tokenizer_sources`), so no word of theirs is split into bytes. Contrastive
    curricula are left as they are: their published figures were measured without it."""
    first = data[0].setdefault("data", {})
    own = [_filled(s) for s in first.get("sources") or []]
    extra = [_filled(s) for s in first.get("tokenizer_sources") or []]
    for later in data[1:]:
        for source in (later.get("data") or {}).get("sources") or []:
            if _filled(source) not in own + extra:
                extra.append(_filled(source))
    first["tokenizer_sources"] = extra


def _filled(source: dict) -> dict:
    """A source as a dict with every field (its defaults filled in), to tell equal ones apart from
    how they were written; a source with an unknown field as written (its stage's check names it)."""
    try:
        return dataclasses.asdict(SourceConfig(**source))
    except TypeError:
        return source


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
