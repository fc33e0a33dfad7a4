"""Reading and writing configs: YAML recipes and saved `config.yaml` files, `--set key=value`
overrides, every key and type checked (an unknown key names the valid ones)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from vlkit.config.schema import KIND_SECTIONS, SECTIONS, Config, check_ranges
from vlkit.config.sections import ConfigError, ModelConfig

log = logging.getLogger(__name__)


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Builds dataclass `cls` from nested dicts, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; valid keys here: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(hints[k], v, _join(where, k)) for k, v in data.items()}
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _coerce(arm, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: value {value!r} is not a {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arm,) = typing.get_args(tp)
        return [_coerce(arm, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        arms = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(arms):
            raise ConfigError(f"{where}: expected a list of {len(arms)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(arms, value)))
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def to_dict(cfg: Any) -> dict:
    """Plain dict (tuples become lists) for YAML; a section the kind lacks (None) is left out."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: v for k, v in plain(dataclasses.asdict(cfg)).items() if v is not None}  # no absent sections


def config_from_dict(data: Any) -> Config:
    """A `Config` from nested dicts, its sections typed by its kind (`KIND_SECTIONS`), every key
    and type checked. Keys of another kind's sections are dropped (`_drop_foreign`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"Config: expected a mapping, got {data!r}")
    kind = data.get("kind", Config.kind)
    if not isinstance(kind, str) or kind not in KIND_SECTIONS:
        raise ConfigError(f"kind: {kind!r} is not a model kind; valid: {', '.join(KIND_SECTIONS)}")
    data = _drop_foreign(data, kind)
    sections = {name: from_dict(cls, data.get(name) or {}, name) for name, cls in KIND_SECTIONS[kind].items()}
    absent = [name for name in SECTIONS if name not in sections and data.get(name)]
    if absent:
        raise ConfigError(f"{absent[0]}: a {kind} config has no {absent[0]} section; got {data[absent[0]]!r}")
    if kind != "contrastive" and type(sections["model"]) is ModelConfig and sections["model"].init_from:
        raise ConfigError(
            f"model.init_from: a {kind} model does not continue a dual encoder's weights; "
            "a detector or segmenter starts from a CLIP with detector.clip_init / segmenter.clip_init"
        )
    rest = {k: v for k, v in data.items() if k not in SECTIONS}
    return dataclasses.replace(from_dict(Config, rest), **sections)


def _drop_foreign(data: dict, kind: str) -> dict:
    """`data` without the keys that only other kinds' sections have. Configs saved before the
    split carry every kind's fields, and the tour passes the dual encoder's sizes to its
    generative step: those keys never had an effect on this kind. The ones not at their default
    are logged, so a setting that does nothing is never silent."""
    out, ignored = dict(data), {}
    for name in SECTIONS:
        section = data.get(name)
        if not isinstance(section, dict):
            continue
        own = KIND_SECTIONS[kind].get(name)
        mine = {f.name for f in dataclasses.fields(own)} if own else set()
        owners: dict[str, list[tuple[str, Any]]] = {}  # field → the other kinds having it, their default
        for other, sections in KIND_SECTIONS.items():
            if name in sections and other != kind:
                for f in dataclasses.fields(sections[name]):
                    if f.name not in mine:
                        owners.setdefault(f.name, []).append((other, _default(f)))
        for k in (k for k in section if k in owners):
            if all(section[k] != default for _, default in owners[k]):  # at no owner's default
                ignored.setdefault(owners[k][0][0], []).append(f"{name}.{k}={section[k]!r}")
        out[name] = {k: v for k, v in section.items() if k not in owners}
    if ignored:
        owned = "; ".join(f"{', '.join(keys)}: a {owner} model's" for owner, keys in ignored.items())
        log.warning("ignoring %s (a %s config has no such fields)", owned, kind)
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def apply_override(data: dict, assignment: str) -> None:
    """Applies one `section.key=value` (value parsed as YAML) to nested dict `data` in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected key=value, e.g. train.lr=3e-4")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):  # YAML reads '3e-4' as a string; accept it as a number
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value for c in ".eE") else int(value)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), defaults: dict | None = None
) -> Config:
    """Reads a recipe (or the defaults when `path` is None: `Config`'s, with `defaults`' keys, e.g.
    `{"stages": default_stages()}`) and applies overrides: `key=value` to the config and every
    stage, `STAGE:key=value` to the stage named STAGE only."""
    data: dict = yaml.safe_load(yaml.safe_dump(defaults)) if defaults and path is None else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    staged = [o for o in overrides if ":" in o.split("=", 1)[0]]  # STAGE:key=value
    overrides = [o for o in overrides if o not in staged]
    for assignment in overrides:
        apply_override(data, assignment)
    # Overrides win in every stage too: a stage's own `set` would otherwise undo them.
    for stage in data.get("stages") or []:
        if isinstance(stage, dict):
            stage["set"] = [*stage.get("set", []), *overrides]
    _stage_overrides(data.get("stages") or [], staged)
    try:
        cfg = config_from_dict(data)
        check_ranges(cfg)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def _stage_overrides(stages: list, staged: list[str]) -> None:
    """`STAGE:key=value` overrides go last into the named stage's `set` (that stage only)."""
    named = {s.get("name"): s for s in stages if isinstance(s, dict)}
    for assignment in staged:
        name, override = assignment.split(":", 1)
        if name.strip() not in named:
            where = f"the stages are {', '.join(map(str, named))}" if named else "this recipe has no stages"
            raise ConfigError(f"override {assignment!r}: no stage named {name.strip()!r} ({where})")
        stage = named[name.strip()]
        stage["set"] = [*stage.get("set", []), override]


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
