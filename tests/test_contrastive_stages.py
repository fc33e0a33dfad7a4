"""A contrastive curriculum: a later stage starts from the earlier stage's weights and tokenizer
(`model.init_from`), with its own data, a fresh optimizer and schedule."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_tiny_cfg
from vlkit.config import ConfigError, StageConfig, config_from_dict, stage_configs, to_dict
from vlkit.models.build import load_model
from vlkit.train.loop import train, train_stages


def _recipe(tmp_path):
    cfg = make_tiny_cfg()
    cfg.train.out_dir = str(tmp_path / "run")
    cfg.stages = [
        StageConfig(name="shapes", set=["train.steps=2"]),
        StageConfig(name="binding", set=["train.steps=2", "data.sources=[{kind: scenes, min_objects: 2}]"]),
    ]
    return cfg


def test_a_later_stage_continues_the_earlier_ones_weights_and_tokenizer(tmp_path):
    cfg = _recipe(tmp_path)
    (_, first), (_, second) = stage_configs(cfg)
    assert not first.model.init_from and second.model.init_from == first.train.out_dir
    assert second.data.sources[0].min_objects == 2
    train_stages(cfg, progress=False)
    before, _ = load_model(first.train.out_dir + "/checkpoints/step-0000002")
    from vlkit.models.build import build_model, initial_parts

    started = build_model(second, **initial_parts(second))  # what stage two trained from
    for (name, a), (_, b) in zip(before.state_dict().items(), started.state_dict().items()):
        assert torch.equal(a, b), name
    assert started.text_tower.tokenizer.get_vocab() == before.text_tower.tokenizer.get_vocab()
    after, _ = load_model(second.train.out_dir + "/checkpoints/step-0000002")
    moved = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
    assert any(moved)  # and then it trained


def test_a_changed_architecture_or_kind_is_refused_by_name(tmp_path):
    first = make_tiny_cfg()
    first.train.out_dir = str(tmp_path / "first")
    train(first, progress=False)
    second = make_tiny_cfg()
    second.model.init_from = first.train.out_dir
    second.model.text_layers = 2
    from vlkit.models.build import build_model, initial_parts

    with pytest.raises(ValueError, match=r"model.init_from=.*model.text_layers: 1 there, 2 here"):
        build_model(second, **initial_parts(second))
    data = to_dict(make_tiny_cfg()) | {"kind": "segmenter"}
    data["model"]["init_from"] = first.train.out_dir
    with pytest.raises(ConfigError, match=r"model.init_from: a segmenter model"):
        config_from_dict(data)


def test_a_staged_run_folder_opens_as_its_last_trained_stage(tmp_path):
    import vlkit
    from vlkit.models.folders import resolve_model_dir

    cfg = _recipe(tmp_path)
    train_stages(cfg, progress=False)
    run = tmp_path / "run"
    assert resolve_model_dir(run) == run / "binding" / "checkpoints" / "step-0000002"
    assert vlkit.load(run).embed_texts(["a red circle"]).shape == (1, cfg.model.embed_dim)
    import shutil

    shutil.rmtree(run / "binding")  # an interrupted curriculum: the last stage that trained
    assert resolve_model_dir(run) == run / "shapes" / "checkpoints" / "step-0000002"
