"""`--ray`: the same results as one process, on a real two-node Ray cluster on this machine.

The cluster (`ray_cluster`) is started once per session: a head node and a worker node, one CPU
each, loopback only, their temp dirs under the session's tmp path; both are stopped at the end
(their process trees killed by pid, even when a test failed).
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from vlkit import cli
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.index import SearchIndex

SRC = str(Path(__file__).resolve().parents[1] / "src")
RAY = str(Path(sys.executable).with_name("ray"))


def test_commands_without_ray_do_not_import_it(tmp_path):
    code = (
        "import sys\nfrom vlkit import cli\n"
        f"cli.main(['data', 'shards', 'scenes', '--count', '4', '--out', {str(tmp_path)!r}])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("*.tar")), done.stdout


def test_ray_flag_alone_means_a_local_ray_and_takes_an_address():
    parser = cli.build_parser()
    assert parser.parse_args(["index", "m", "f", "--out", "o", "--ray"]).ray == "local"
    assert (
        parser.parse_args(["index", "m", "f", "--out", "o", "--ray", "10.0.0.1:6379"]).ray == "10.0.0.1:6379"
    )
    assert parser.parse_args(["index", "m", "f", "--out", "o"]).ray is None
    assert parser.parse_args(["eval", "m", "--ray"]).ray == "local"


# ---------------------------------------------------------------- the cluster (slow)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own session: its processes are this Popen's descendants."""
    ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port",)]
    return subprocess.Popen(
        [
            RAY,
            "start",
            *args,
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            "--block",
            *ports,
        ],
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _stop(node: subprocess.Popen) -> None:
    """Kills the node's process tree by pid (not `ray stop`, which stops every Ray on the machine)."""
    try:
        tree = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    node.wait(timeout=30)


def _started_node(args: list[str], env: dict, log: Path, tries: int = 3) -> subprocess.Popen:
    """A node once `ray start` says it runs. Ray gives a raylet 30 s to register, which a busy
    shared machine can miss: then the node's processes are killed and it is started again."""
    for attempt in range(1, tries + 1):
        node = _start_node(args, env, log)
        while node.poll() is None and "Ray runtime started" not in log.read_text():
            time.sleep(0.5)
        if node.poll() is None:
            return node
        _stop(node)
        assert attempt < tries, f"the node did not start in {tries} tries: see {log}"
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """{"address", "head", "worker"}: a head node and one worker node, 2 CPUs in all."""
    ray = pytest.importorskip("ray")
    from vlkit.scale.cluster import connected

    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
    nodes = [_started_node(head, env, temp / "head.log")]
    try:
        nodes.append(_started_node([f"--address={address}"], env, temp / "worker.log"))
        with connected(address):
            deadline = time.time() + 180
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                assert all(n.poll() is None for n in nodes), f"a node exited: see {temp}/*.log"
                assert time.time() < deadline, "the worker node did not join"
                time.sleep(1)
        yield {"address": address, "head": nodes[0], "worker": nodes[1]}
    finally:
        for node in reversed(nodes):
            _stop(node)


def scene_folder(folder: Path, count: int, make_unreadable=None) -> list[Path]:
    folder.mkdir(parents=True)
    scenes = Scenes(ScenesConfig(image_size=32, seed=5))
    for i in range(count):
        Image.fromarray(scenes[i]["image"]).save(folder / f"{i:04d}.png")
    if make_unreadable:
        make_unreadable(folder)
    return sorted(folder.iterdir())


def _same_index(a: Path, b: Path) -> None:
    one, other = SearchIndex.load(a), SearchIndex.load(b)
    assert one.keys == other.keys
    np.testing.assert_allclose(one.embeddings, other.embeddings, atol=1e-5)
    assert one.metadata == other.metadata
    read = lambda p: (p / "failures.jsonl").read_text() if (p / "failures.jsonl").exists() else None  # noqa: E731
    assert read(a) == read(b)


@pytest.mark.slow
def test_index_on_the_cluster_equals_one_process(ray_cluster, tiny_run, make_unreadable, tmp_path):
    folder = tmp_path / "images"
    scene_folder(folder, 40, make_unreadable)
    cli.main(["index", str(tiny_run), str(folder), "--out", str(tmp_path / "one")])
    address = ray_cluster["address"]
    cli.main(["index", str(tiny_run), str(folder), "--out", str(tmp_path / "ray"), "--ray", address])
    _same_index(tmp_path / "one", tmp_path / "ray")
    assert len((tmp_path / "ray" / "failures.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "ray.embeddings").exists()  # the shards are merged and removed


@pytest.mark.slow
def test_eval_on_the_cluster_equals_one_process(ray_cluster, tiny_run, tmp_path):
    common = [str(tiny_run), "--data", "scenes", "--limit", "24", "--batch-size", "8"]
    cli.main(["eval", *common, "--out", str(tmp_path / "one")])
    cli.main(["eval", *common, "--out", str(tmp_path / "ray"), "--ray", ray_cluster["address"]])
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    fanned = json.loads((tmp_path / "ray" / "result.json").read_text())
    assert fanned["metrics"] == pytest.approx(one["metrics"], abs=1e-6)
    assert one["metrics"]  # something was scored
    predictions = lambda d: (d / "predictions.jsonl").read_text()  # noqa: E731
    assert predictions(tmp_path / "ray") == predictions(tmp_path / "one")


@pytest.mark.slow
def test_generative_eval_on_the_cluster_equals_one_process(ray_cluster, tiny_vlm_run, tmp_path):
    common = [str(tiny_vlm_run), "--data", "scenes", "--limit", "6", "--batch-size", "4", "--task", "vqa"]
    cli.main(["eval", *common, "--out", str(tmp_path / "one")])
    cli.main(["eval", *common, "--out", str(tmp_path / "ray"), "--ray", ray_cluster["address"]])
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    fanned = json.loads((tmp_path / "ray" / "result.json").read_text())
    assert fanned["metrics"] == one["metrics"]
    assert (tmp_path / "ray" / "predictions.jsonl").read_text() == (
        tmp_path / "one" / "predictions.jsonl"
    ).read_text()


def _actor_on(node: subprocess.Popen) -> psutil.Process | None:
    """An embedding actor's process among the node's processes, if one is running."""
    for process in psutil.Process(node.pid).children(recursive=True):
        try:
            if "Embedder" in " ".join(process.cmdline()):
                return process
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.slow
def test_index_survives_a_killed_actor_with_identical_output(ray_cluster, tiny_run, tmp_path):
    folder = tmp_path / "images"
    scene_folder(folder, 240)
    one = ["index", str(tiny_run), str(folder), "--out", str(tmp_path / "one"), "--batch-size", "4"]
    cli.main(one)
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    args = ["index", str(tiny_run), str(folder), "--out", str(tmp_path / "ray"), "--batch-size", "4"]
    job = subprocess.Popen(
        [sys.executable, "-m", "vlkit", *args, "--ray", ray_cluster["address"], "--ray-workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shards, killed, deadline = tmp_path / "ray.embeddings", None, time.time() + 240
    while killed is None and job.poll() is None and time.time() < deadline:
        actor = _actor_on(ray_cluster["worker"])
        if actor is not None and shards.is_dir() and any(shards.glob("*.npz")):
            written = len(list(shards.glob("*.npz")))
            actor.send_signal(signal.SIGKILL)
            killed = written
        time.sleep(0.05)
    stdout, stderr = job.communicate(timeout=300)
    assert killed is not None, f"no actor was killed before the job ended\n{stderr}"
    assert killed < 60, "the job had written every shard before the kill"  # 240 images / 4
    assert job.returncode == 0, stderr
    _same_index(tmp_path / "one", tmp_path / "ray")


@pytest.mark.slow
def test_instruct_on_the_cluster_equals_one_process_and_a_killed_run_resumes(ray_cluster, tmp_path):
    from test_instruct_teachers import BY_CAPTION, FakeServer, good_reply, llava_command

    server = FakeServer(lambda caption, attempt, system: ("ok", good_reply(BY_CAPTION[caption], system)))
    command = llava_command(server.url)
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "ignore"}
    on_ray = ["--ray", ray_cluster["address"], "--ray-workers", "2"]
    try:
        one = subprocess.run(
            [*command, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True
        )
        assert one.returncode == 0, one.stderr
        killed = {**env, "VLKIT_INSTRUCT_KILL_AFTER": "7"}  # the driver SIGKILLs itself after 7 commits
        first = subprocess.run(
            [*command, "--out", str(tmp_path / "ray"), *on_ray], env=killed, capture_output=True, text=True
        )
        assert first.returncode == -9, first.stderr
        assert len((tmp_path / "ray" / "records.jsonl").read_text().splitlines()) == 7
        second = subprocess.run(
            [*command, "--out", str(tmp_path / "ray"), *on_ray], env=env, capture_output=True, text=True
        )
        assert second.returncode == 0, second.stderr
    finally:
        server.close()
    records = lambda d: json.loads((d / "llava.json").read_text())  # noqa: E731
    assert records(tmp_path / "ray") == records(tmp_path / "one")  # nothing lost, nothing twice, same order
    assert json.loads((tmp_path / "ray" / "stats.json").read_text())["runs"][-1]["skipped"] == 7
