"""Streaming data at size: webdataset shards opened lazily (an index file per shard), mixed by
weight, and a job re-scaled from 2 processes to 1 continuing from the exact sample position."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlkit.config import SourceConfig, save_config
from vlkit.data import shards as shards_module
from vlkit.data.shards import WebDatasetShards, index_path, write_shards

ROOT = Path(__file__).resolve().parents[1]


def _samples(count: int, start: int = 0):
    rng = np.random.default_rng(start)
    for n in range(start, start + count):
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        yield {"image": image, "captions": [f"sample {n}", f"another caption of {n}"]}


def _counting(monkeypatch, name: str) -> list:
    calls, original = [], getattr(shards_module, name)

    def counted(shard, *args):
        calls.append(Path(shard).name)
        return original(shard, *args)

    monkeypatch.setattr(shards_module, name, counted)
    return calls


def test_shards_open_lazily_from_their_index_files(tmp_path, monkeypatch):
    paths = write_shards(_samples(60), tmp_path / "indexed", max_per_shard=5)  # 12 shards
    assert len(paths) == 12 and all(index_path(p).is_file() for p in paths)
    plain = tmp_path / "plain"  # the same tars without index files: scanned on construction
    plain.mkdir()
    for p in paths:
        shutil.copy(p, plain / p.name)
    scanned = _counting(monkeypatch, "_index_shard")
    lazy = WebDatasetShards(str(tmp_path / "indexed" / "*.tar"), cached_shards=2)
    assert scanned == [] and len(lazy) == 60  # counts come from the index files' first lines
    eager = WebDatasetShards(str(plain / "*.tar"))
    assert len(scanned) == 12 and len(eager) == 60
    read = _counting(monkeypatch, "_read_index")
    for i in range(60):
        a, b = lazy[i], eager[i]
        assert a["captions"] == b["captions"] == [f"sample {i}", f"another caption of {i}"]
        np.testing.assert_array_equal(a["image"], b["image"])
    assert read == [p.name for p in paths]  # each index file read once, in turn
    for i in (0, 59, 0, 59):  # shard 0 was evicted (2 shards kept) and is read once; 11 is kept
        lazy[i]  # noqa: B018
    assert read[12:] == ["shard-000000.tar"]


def test_a_stale_index_file_is_ignored_and_the_shard_scanned(tmp_path):
    (shard,) = write_shards(_samples(4), tmp_path, max_per_shard=10)
    stale = index_path(shard).read_text()
    write_shards(_samples(3, start=10), tmp_path, max_per_shard=10)  # the tar changes size
    index_path(shard).write_text(stale)
    data = WebDatasetShards(shard)
    assert len(data) == 3 and data[0]["captions"][0] == "sample 10"


def _launch(config: Path, processes: int, record: Path, stop_at: int | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    env["RECORD_SAMPLES"] = str(record)
    record.mkdir(exist_ok=True)
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    tail = [] if stop_at is None else [str(stop_at)]
    worker = str(ROOT / "tests" / "train_worker.py")
    subprocess.run([*launcher, worker, str(config), *tail], check=True, env=env, timeout=1800)


def _sequence(record: Path) -> list[tuple[int, int, str]]:
    """Every (micro-step, global position, sample key) the processes trained on, in global order."""
    rows = [tuple(json.loads(x)) for f in record.glob("*.jsonl") for x in f.read_text().splitlines()]
    return sorted(rows)


@pytest.mark.slow
def test_two_processes_then_one_resume_see_the_uninterrupted_sample_sequence(tiny_cfg, tmp_path):
    """ "Equal" here: global batch k is the samples at global positions [k·B, (k+1)·B) (B =
    train.batch_size), process r of n taking positions k·B + r·B/n ... + B/n; a position's sample
    depends on (seed, position) only. So the re-scaled job must train, at every position, the
    sample the uninterrupted one trained there: each global batch, in position order."""
    write_shards(_samples(24), tmp_path / "a", max_per_shard=4)  # 6 shards
    write_shards(_samples(12, start=100), tmp_path / "b", max_per_shard=4)  # 3 shards
    tiny_cfg.data.sources = [
        SourceConfig(kind="webdataset", path=str(tmp_path / "a" / "*.tar"), weight=3.0),
        SourceConfig(kind="webdataset", path=str(tmp_path / "b" / "*.tar"), weight=1.0),
    ]
    t = tiny_cfg.train
    t.steps, t.batch_size, t.save_every, t.log_every = 6, 8, 3, 1
    configs = {}
    for name in ("straight", "rescaled"):
        t.out_dir = str(tmp_path / name)
        configs[name] = tmp_path / f"{name}.yaml"
        save_config(tiny_cfg, configs[name])
    _launch(configs["straight"], 1, tmp_path / "straight-seen")
    _launch(configs["rescaled"], 2, tmp_path / "rescaled-seen", stop_at=3)  # checkpoint at 3, then ends
    _launch(configs["rescaled"], 1, tmp_path / "rescaled-seen")  # 1 process resumes at step 3

    straight, rescaled = _sequence(tmp_path / "straight-seen"), _sequence(tmp_path / "rescaled-seen")
    assert [position for _, position, _ in straight] == list(range(6 * 8))  # each position once
    assert rescaled == straight
    files = sorted(f.name for f in (tmp_path / "rescaled-seen").glob("*.jsonl"))
    assert files == ["rank0-of-1.jsonl", "rank0-of-2.jsonl", "rank1-of-2.jsonl"]
    keys = {key.split("#")[0].split("/")[-2] for _, _, key in straight}
    assert keys == {"a", "b"}  # both sources mixed in
