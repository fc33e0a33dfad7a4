"""Every model kind in `vlkit.models.kinds.KINDS`, swept: it builds a tiny model, saves and
reloads it, and every floor's per-kind table (objective, training evaluator, harness, user-facing
wrapper, export) has its entry. A new kind is tested here without editing a list."""

import re

import pytest
import torch

from tests.conftest import TINY_CONFIGS
from vlkit import api, export
from vlkit.config import KIND_SECTIONS
from vlkit.data import build_dataset
from vlkit.eval import during_training, harness
from vlkit.models.build import build_model, load_model, save_model
from vlkit.models.kinds import KINDS, can_stand_in, kind_of, model_kind, per_kind
from vlkit.train import loop

KIND_NAMES = sorted(KINDS)


def test_every_floor_names_every_kind_and_every_kind_has_a_tiny_config():
    tables = {
        "tiny configs": TINY_CONFIGS,
        "config sections": KIND_SECTIONS,
        "objectives": loop.OBJECTIVES,
        "training evaluators": during_training.EVALUATORS,
        "task runners": harness.RUNNERS,
        "opt-in tasks": harness.OPT_IN,
        "wrappers": api.WRAPPERS,
        "exports": export.EXPORTS,
    }
    for what, table in tables.items():
        assert set(table) == set(KINDS), what
    for name, kind in KINDS.items():
        assert kind.name == name and kind.abilities
        if export.EXPORTS[name] is None:  # a kind without an export says why
            assert export.WHY_NOT[name]
            continue
        takes, _ = export.FORMATS[export.EXPORTS[name]]
        assert takes == name  # a kind's export takes that kind


def test_a_table_that_misses_a_kind_fails_when_it_is_built():
    others = sorted(set(KINDS) - {"contrastive"})
    with pytest.raises(ValueError, match=re.escape(f"missing {others}, unknown ['dense']")):
        per_kind("things", {"contrastive": 1, "dense": 2})
    with pytest.raises(ValueError, match=f"kind: 'dense' is not a model kind; valid: {', '.join(KINDS)}"):
        model_kind("dense")


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_builds_saves_loads_trains_evaluates_and_exports(name, tmp_path):
    cfg = TINY_CONFIGS[name]()
    cfg.train.out_dir, cfg.eval.num_images = str(tmp_path / "run"), 4
    kind = KINDS[name]
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, texts=kind.tokenizer_texts(dataset))
    save_model(model, cfg, tmp_path / "model")
    loaded, loaded_cfg = load_model(tmp_path / "model")
    assert loaded_cfg == cfg and loaded_cfg.kind == name
    saved, again = model.state_dict(), loaded.state_dict()
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)

    if kind.trainable:
        objective = loop.make_objective(cfg, model)
        loss = objective.loss(model.train(), objective.collate([(i, dataset[i]) for i in range(2)]))
        assert loss.ndim == 0 and torch.isfinite(loss)
    else:  # refused before any data or encoder loads, saying how such a model is built
        with pytest.raises(ValueError, match=f"kind: '{name}' has nothing to train"):
            loop.prepare(cfg)
    scores = during_training.training_evaluator(name)(loaded, cfg)
    assert scores and all(isinstance(v, float) for v in scores.values())

    user = api.load(tmp_path / "model", kind=name)
    assert kind_of(user) == name and harness.supported_tasks(user)
    if export.EXPORTS[name] is None:  # a kind without an export says why (`WHY_NOT`)
        with pytest.raises(ValueError, match=rf"a {name} model has no export format\. \S"):
            export.export(tmp_path / "model", tmp_path / "exported")
    else:
        out = export.export(tmp_path / "model", tmp_path / "exported")
        assert (out / "config.json").is_file()
    for other in KIND_NAMES:  # a kind that cannot stand in for another is refused with what it needs
        if can_stand_in(name, other):
            assert kind_of(api.load(tmp_path / "model", kind=other)) == name
        else:
            with pytest.raises(ValueError, match=f"is a {name} model; the caller needs a {other} one"):
                api.load(tmp_path / "model", kind=other)


@pytest.mark.parametrize("name", KIND_NAMES)
def test_an_export_format_for_another_kind_says_which_one_fits(name, tmp_path):
    """`vlkit export --format transformers` on a generative model ended in an AttributeError."""
    cfg = TINY_CONFIGS[name]()
    save_model(
        build_model(cfg, texts=KINDS[name].tokenizer_texts(build_dataset(cfg.data))), cfg, tmp_path / "m"
    )
    wrong = next(f for f, (takes, _) in export.FORMATS.items() if takes != name)
    own = f"--format {export.EXPORTS[name]}" if export.EXPORTS[name] else "this model has no export"
    with pytest.raises(ValueError, match=f"a {name} model; .* export needs a .* one .*{own}"):
        export.export(tmp_path / "m", tmp_path / "out", wrong)
