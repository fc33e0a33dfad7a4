"""Connecting to Ray, and the settings every actor pool shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray

LOOPBACK = ("127.0.0.1", "localhost")
LOCAL = "local"  # `--ray` alone: a Ray started in this process, gone when it ends


def actor_pool(workers: int) -> dict:
    """`map_batches` arguments for a pool of `workers` actors, one CPU each. Ray Data's own
    defaults for actor pools (max_restarts=-1, max_task_retries=-1) start a killed actor again
    and re-run its unfinished batches on it; the jobs here make a re-run replace, never duplicate."""
    return {"compute": ray.data.ActorPoolStrategy(size=workers), "num_cpus": 1}


@contextmanager
def connected(address: str, progress: bool = False) -> Iterator[None]:
    """Ray for the duration of a job: joins `address` (or starts a local Ray for "local"), unless
    this process is connected already (then that connection is used and left open)."""
    if ray.is_initialized():
        yield
        return
    host = address.rpartition(":")[0]
    # A cluster on loopback (this machine, not reachable from outside) is joined on loopback too;
    # else Ray looks for this machine's node under its network address and waits minutes for it.
    own_ip = {"_node_ip_address": host} if host in LOOPBACK else {}
    ray.init(
        address=address, include_dashboard=False, log_to_driver=progress, logging_level="WARNING", **own_ip
    )
    ray.data.DataContext.get_current().enable_progress_bars = progress
    try:
        yield
    finally:
        ray.shutdown()


def pool_size(workers: int | None) -> int:
    """Actors in a pool: `workers`, or (None) one per CPU of the cluster."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--ray-workers: must be at least 1, got {workers}")
        return workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
