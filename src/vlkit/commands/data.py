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


def memes(
    out: str,
    *,
    train: int = 2000,
    dev: int = 500,
    test: int = 500,
    image_size: int = 64,
    seed: int = 0,
    positive_share: float = 0.5,
) -> None:
    """Write a scenes-derived binary task in the Hateful Memes format: does the caption describe the image?

    A folder with img/ and train.jsonl, dev.jsonl, test.jsonl ({"id", "img", "label", "text"} per
    line). Label 1: one of the scene's own captions; label 0: a hard negative in the same wording
    (colours swapped between its objects, a shape changed) or another scene's caption. Each split
    comes from its own scenes world. Fine-tune a fusion model on it with recipes/vilt-memes.yaml,
    then score it with vlkit eval (task hateful-memes, data OUT/test.jsonl)

    Args:
        out: output folder
        train: memes in train.jsonl
        dev: memes in dev.jsonl
        test: memes in test.jsonl
        image_size: scene size in pixels
        seed: scenes world seed (dev and test use their own worlds derived from it)
        positive_share: share of memes whose caption is true of the image (label 1)
    """
    from vlkit.data.memes import write_scene_memes

    counts = {"train": train, "dev": dev, "test": test}
    if any(n < 2 or n > MAX_SAMPLES for n in counts.values()):
        raise ValueError(f"--train / --dev / --test: {counts}; give 2 to {MAX_SAMPLES} memes per split")
    files = write_scene_memes(out, counts, image_size=image_size, seed=seed, positive_share=positive_share)
    for split, file in files.items():
        print(f"wrote {counts[split]} memes to {file}")
