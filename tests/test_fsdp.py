"""`train.distributed: fsdp`: 2 sharded gloo processes train like 1 process, resume exactly, and
write checkpoints one process loads (`vlkit.load`) and resumes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vlkit
from vlkit.config import ConfigError, load_config, save_config
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import prepare

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "train_worker.py")


def _losses(run: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def _launch(config: Path, processes: int, stop_at: int | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    tail = [] if stop_at is None else [str(stop_at)]
    subprocess.run([*launcher, WORKER, str(config), *tail], check=True, env=env, timeout=1800)


def _config(cfg, tmp_path: Path, name: str) -> Path:
    cfg.train.out_dir = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    save_config(cfg, path)
    return path


def test_distributed_is_checked_where_the_config_enters(tiny_cfg, tmp_path):
    path = tmp_path / "c.yaml"
    save_config(tiny_cfg, path)
    with pytest.raises(ConfigError, match=r"train.distributed='zero3': valid values are ddp, fsdp"):
        load_config(path, ["train.distributed=zero3"])
    tiny_cfg.train.distributed = "fsdp"  # a dual encoder's loss calls its towers outside forward
    with pytest.raises(ValueError, match="kind: generative only, not 'contrastive'; use ddp"):
        prepare(tiny_cfg)


def test_fsdp_refuses_a_feature_cache_it_cannot_fill(tiny_vlm_cfg, tmp_path):
    tiny_vlm_cfg.train.distributed = "fsdp"
    tiny_vlm_cfg.vlm.freeze_vision, tiny_vlm_cfg.vlm.feature_cache = True, str(tmp_path / "cache")
    with pytest.raises(ValueError, match="set vlm.feature_cache=''"):
        prepare(tiny_vlm_cfg)


@pytest.mark.slow
def test_fsdp_two_processes_match_one_resume_exactly_and_load_in_one(tiny_vlm_cfg, tmp_path):
    t = tiny_vlm_cfg.train
    t.steps, t.batch_size, t.log_every, t.save_every, t.keep_last = 4, 8, 1, 2, 3
    _launch(_config(tiny_vlm_cfg, tmp_path, "one"), 1)
    tiny_vlm_cfg.train.distributed = "fsdp"
    _launch(_config(tiny_vlm_cfg, tmp_path, "fsdp"), 2)
    crashed = _config(tiny_vlm_cfg, tmp_path, "crashed")
    _launch(crashed, 2, stop_at=3)  # checkpoint at step 2, ends after step 3
    shutil.copytree(tmp_path / "crashed", tmp_path / "rescaled")  # ... resumed by 1 process below
    _launch(crashed, 2)  # resumes from step 2 on 2 processes
    _launch(_config(tiny_vlm_cfg, tmp_path, "rescaled"), 1)

    one, fsdp = _losses(tmp_path / "one"), _losses(tmp_path / "fsdp")
    assert sorted(one) == [1, 2, 3, 4] and one.keys() == fsdp.keys()
    for step, loss in one.items():  # the same global batches; float32 sums in another order
        assert fsdp[step] == pytest.approx(loss, rel=1e-4), step
    assert _losses(tmp_path / "crashed") == fsdp  # exact: weights, AdamW state, schedule, data
    final = {name: load_file(latest_checkpoint(tmp_path / name) / "model.safetensors") for name in
             ("one", "fsdp", "crashed", "rescaled")}  # fmt: skip
    assert final["fsdp"].keys() == final["one"].keys() == final["crashed"].keys()
    for key, weight in final["fsdp"].items():
        torch.testing.assert_close(final["crashed"][key], weight, rtol=0, atol=0)
        torch.testing.assert_close(weight, final["one"][key], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(final["rescaled"][key], weight, rtol=1e-4, atol=1e-5)
    assert _losses(tmp_path / "rescaled")[4] == pytest.approx(fsdp[4], rel=1e-4)

    model = vlkit.load(tmp_path / "fsdp")  # one process, no process group: the unsharded layout
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    reference = vlkit.load(tmp_path / "one")
    assert model.answer([image], ["What color is the circle?"]) == reference.answer(
        [image], ["What color is the circle?"]
    )


@pytest.mark.slow
def test_ddp_generative_in_length_groups_matches_one_process(tiny_vlm_cfg, tmp_path):
    """Each process runs its rows as `vlm.length_groups` passes (as many on every process: DDP's
    forward broadcasts buffers); two processes train like one on the same global batches."""
    t = tiny_vlm_cfg.train
    t.steps, t.batch_size, t.log_every, t.save_every = 3, 8, 1, 3
    tiny_vlm_cfg.vlm.length_groups = 3
    _launch(_config(tiny_vlm_cfg, tmp_path, "one"), 1)
    _launch(_config(tiny_vlm_cfg, tmp_path, "ddp"), 2)  # train.distributed: ddp, the default
    one, ddp = _losses(tmp_path / "one"), _losses(tmp_path / "ddp")
    assert sorted(one) == [1, 2, 3] and one.keys() == ddp.keys()
    for step, loss in one.items():
        assert ddp[step] == pytest.approx(loss, rel=1e-4), step
