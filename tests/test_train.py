"""The training loop: exact resume, crash safety, skipped samples, two processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vlkit.config import SourceConfig, save_config
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import train

ROOT = Path(__file__).resolve().parents[1]


def _losses(run: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_resume_reproduces_an_uninterrupted_run(tiny_cfg, tmp_path):
    tiny_cfg.train.steps, tiny_cfg.train.save_every, tiny_cfg.train.log_every = 6, 3, 1
    tiny_cfg.train.out_dir = str(tmp_path / "straight")
    straight = train(tiny_cfg, progress=False)

    tiny_cfg.train.out_dir = str(tmp_path / "crashed")
    crashed = train(tiny_cfg, stop_at_step=4, progress=False)  # checkpoint at 3, dies after step 4
    assert latest_checkpoint(crashed).name == "step-0000003"
    half_written = crashed / "checkpoints" / "step-0000005.tmp"  # a crash in the middle of a save
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"truncated")
    assert latest_checkpoint(crashed).name == "step-0000003"

    train(tiny_cfg, progress=False)  # resumes from step 3
    assert _losses(crashed) == _losses(straight)  # exact: same data, weights, optimizer, schedule
    assert sorted(_losses(crashed)) == [1, 2, 3, 4, 5, 6]  # the crashed run's step-4 line was replaced
    a = load_file(latest_checkpoint(straight) / "model.safetensors")
    b = load_file(latest_checkpoint(crashed) / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_keeps_last_n_checkpoints(tiny_cfg, tmp_path):
    tiny_cfg.train.steps, tiny_cfg.train.save_every, tiny_cfg.train.keep_last = 6, 1, 2
    tiny_cfg.train.out_dir = str(tmp_path / "run")
    run = train(tiny_cfg, progress=False)
    kept = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["step-0000005", "step-0000006"]
    assert (run / "config.yaml").is_file() and (latest_checkpoint(run) / "config.yaml").is_file()


def test_corrupt_images_are_skipped_and_counted(tiny_cfg, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(12):
        path = folder / f"{i}.png"
        if i in (3, 7):
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        else:
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        lines.append(json.dumps({"image": path.name, "caption": f"picture number {i}"}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    tiny_cfg.data.sources = [SourceConfig(kind="folder", path=str(folder))]
    tiny_cfg.train.steps, tiny_cfg.train.batch_size, tiny_cfg.train.log_every = 3, 12, 1
    tiny_cfg.train.out_dir = str(tmp_path / "run")
    run = train(tiny_cfg, progress=False)
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log if "skipped" in r] == [2, 4, 6]  # each epoch meets both


def test_a_batch_without_one_readable_image_is_an_error_naming_the_files(tiny_cfg, tmp_path, make_unreadable):
    folder = tmp_path / "data"
    bad = make_unreadable(folder)
    lines = [json.dumps({"image": p.name, "caption": f"picture {p.stem}"}) for p in bad]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    tiny_cfg.data.sources = [SourceConfig(kind="folder", path=str(folder))]
    tiny_cfg.train.steps, tiny_cfg.train.batch_size = 1, 2
    with pytest.raises(ValueError, match="all 2 samples of this batch are unreadable") as error:
        train(tiny_cfg, progress=False)
    assert all(p.name in str(error.value) for p in bad)


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batch(tiny_cfg, tmp_path):
    tiny_cfg.train.batch_size = 8
    for loss in ("clip", "siglip"):
        tiny_cfg.model.loss = loss
        config = tmp_path / f"{loss}.yaml"
        save_config(tiny_cfg, config)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        worker = str(ROOT / "tests" / "dist_worker.py")
        one, two = tmp_path / f"{loss}-1.pt", tmp_path / f"{loss}-2.pt"
        subprocess.run([sys.executable, worker, config, one], check=True, env=env, timeout=300)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        subprocess.run([*launcher, worker, config, two], check=True, env=env, timeout=300)
        single, dual = torch.load(one), torch.load(two)
        assert (single["world"], dual["world"]) == (1, 2)
        torch.testing.assert_close(dual["loss"], single["loss"], rtol=1e-5, atol=1e-6)
        assert dual["grads"].keys() == single["grads"].keys() and len(single["grads"]) > 10
        for name, grad in single["grads"].items():
            # float32 sums in another order: errors scale with the tensor's largest gradient
            scale = grad.abs().max().item()
            torch.testing.assert_close(dual["grads"][name], grad, rtol=1e-4, atol=1e-6 * max(scale, 1.0))


@pytest.mark.slow
def test_training_loop_under_torchrun_matches_one_process(tiny_cfg, tmp_path):
    """The real loop, launched as users do: 2 gloo processes give the losses of 1 process."""
    tiny_cfg.train.steps, tiny_cfg.train.batch_size, tiny_cfg.train.log_every = 3, 8, 1
    config = tmp_path / "tiny.yaml"
    save_config(tiny_cfg, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"procs-{n}"
        command = ["-m", "vlkit", "-q", "train", str(config), "--set", f"train.out_dir={out}"]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        subprocess.run([*launcher, *command], check=True, env=env, timeout=300)
        runs[n] = _losses(out)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["processes"] for r in lines if "loss" in r] == [n] * 3  # one writer, n processes
    assert sorted(runs[1]) == [1, 2, 3]
    assert runs[2].keys() == runs[1].keys()
    for step, loss in runs[1].items():
        assert runs[2][step] == pytest.approx(loss, rel=1e-4), step


def test_the_optimizer_is_torchs_fused_adamw_with_no_decay_on_vectors():
    from vlkit.config import load_config
    from vlkit.train.loop import make_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = make_optimizer(model, load_config(None, ["train.weight_decay=0.1"]))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    decay, no_decay = optimizer.param_groups
    assert [p.shape for p in decay["params"]] == [(3, 4)] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0  # biases, norm weights
