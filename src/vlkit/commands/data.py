"""Data tools."""

from __future__ import annotations

MAX_SAMPLES = 10_000_000  # a guard against a typo in --count


def shards(source: str, *, out: str, count: int | None = None, per_shard: int = 1000) -> None:
    """Write a data set as webdataset tar shards.

    Args:
        source: a data name: scenes | photos | fashion-mnist | a data folder, file or shards
        out: output folder
        count: samples to write (needed for scenes)
        per_shard: samples per tar file
    """
    from vlkit.data import open_named
    from vlkit.data.shards import write_shards

    dataset = open_named(source)
    count = count if count is not None else len(dataset)
    if count > len(dataset) or count > MAX_SAMPLES:
        raise ValueError(f"--count {count}: the source has {len(dataset)} samples; pass a smaller --count")
    paths = write_shards((dataset[i] for i in range(count)), out, max_per_shard=per_shard)
    print(f"wrote {count} samples into {len(paths)} shards under {out}")
