"""Feature cache: hits, per-encoder storage, reopening from disk, recovery from a crashed write."""

import multiprocessing

import numpy as np
import pytest
import torch
from torch import nn

from vlkit.models.feature_cache import FeatureCache, encoder_fingerprint, image_key

SHAPE = (4, 3)


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]


class Encoder:
    """A deterministic fake encoder that records what it was asked to compute."""

    def __init__(self, offset: float = 0.0):
        self.calls: list[int] = []
        self.offset = offset

    def __call__(self, ims: list[np.ndarray]) -> torch.Tensor:
        self.calls.append(len(ims))
        x = torch.tensor(np.stack(ims), dtype=torch.float32)  # (B, 8, 8, 3)
        return x.reshape(len(ims), SHAPE[0], -1)[:, :, : SHAPE[1]] / 255 + self.offset  # (B, 4, 3)


def test_second_call_hits_and_computes_only_the_misses_in_one_batch(tmp_path):
    cache, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    ims = images(5)
    first = cache.get_or_compute(ims[:3], enc)
    assert enc.calls == [3] and (cache.hits, cache.misses) == (0, 3)
    both = cache.get_or_compute([ims[4], ims[0], ims[3], ims[2]], enc)
    assert enc.calls == [3, 2] and (cache.hits, cache.misses) == (2, 5)
    assert torch.equal(both[1], first[0]) and torch.equal(both[3], first[2])
    torch.testing.assert_close(both, Encoder()([ims[4], ims[0], ims[3], ims[2]]))
    cache.get_or_compute(ims, enc)
    assert enc.calls == [3, 2] and (cache.hits, cache.misses) == (7, 5) and len(cache) == 5  # not called


def test_duplicates_in_a_batch_are_computed_once(tmp_path):
    cache, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    im = images(1)[0]
    out = cache.get_or_compute([im, im.copy()], enc)
    assert enc.calls == [1] and len(cache) == 1 and torch.equal(out[0], out[1])


def test_a_different_encoder_key_has_its_own_storage(tmp_path):
    ims = images(2)
    a = FeatureCache(tmp_path, "enc-a", SHAPE).get_or_compute(ims, Encoder())
    other = FeatureCache(tmp_path, "enc-b", SHAPE)
    b = other.get_or_compute(ims, Encoder(offset=1.0))
    assert other.misses == 2 and torch.allclose(b, a + 1.0)


def test_a_new_object_reads_identical_features_from_disk(tmp_path):
    ims = images(4)
    stored = FeatureCache(tmp_path, "enc-a", SHAPE).get_or_compute(ims, Encoder())
    reopened, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    assert len(reopened) == 4
    assert torch.equal(reopened.get_or_compute(ims, enc), stored)
    assert enc.calls == [] and reopened.hits == 4
    with pytest.raises(ValueError, match="opened with"):
        FeatureCache(tmp_path, "enc-a", (4, 5))


def test_a_crashed_write_is_ignored_and_recomputed(tmp_path):
    ims = images(4)
    cache = FeatureCache(tmp_path, "enc-a", SHAPE)
    good = cache.get_or_compute(ims[:2], Encoder())
    row_bytes = cache.row_bytes
    # a crash while writing image 2: half its row on disk, its index line cut short
    with open(cache.data_path, "ab") as f:
        f.write(b"\x01" * (row_bytes // 2))
    with open(cache.index_path, "ab") as f:
        f.write(f"{image_key(ims[2])} 2".encode())  # no newline
    reopened, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    assert len(reopened) == 2
    out = reopened.get_or_compute(ims, enc)
    assert enc.calls == [2] and reopened.hits == 2
    assert torch.equal(out[:2], good)
    torch.testing.assert_close(out[2:], Encoder()(ims[2:]))
    assert cache.data_path.stat().st_size == 4 * row_bytes  # the partial row was trimmed
    assert cache.index_path.read_bytes().endswith(b"\n")
    fresh = FeatureCache(tmp_path, "enc-a", SHAPE)
    assert len(fresh) == 4 and torch.equal(fresh.get_or_compute(ims, Encoder()), out)


def test_index_lines_past_the_data_are_dropped_before_appending(tmp_path):
    ims = images(3)
    cache = FeatureCache(tmp_path, "enc-a", SHAPE)
    cache.get_or_compute(ims[:2], Encoder())
    with open(cache.data_path, "r+b") as f:  # lose the last row
        f.truncate(cache.row_bytes)
    reopened, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    assert len(reopened) == 1
    reopened.get_or_compute([ims[2]], enc)  # takes row 1, which the stale line for ims[1] named
    fresh = FeatureCache(tmp_path, "enc-a", SHAPE)
    out = fresh.get_or_compute(ims, Encoder())
    torch.testing.assert_close(out, Encoder()(ims))  # ims[1] recomputed, not read from ims[2]'s row


def test_two_caches_on_one_folder_share_their_appends(tmp_path):
    ims = images(3)
    a, b = FeatureCache(tmp_path, "enc-a", SHAPE), FeatureCache(tmp_path, "enc-a", SHAPE)
    a.get_or_compute(ims[:2], Encoder())
    enc = Encoder()
    b.get_or_compute(ims, enc)
    assert enc.calls == [1] and len(b) == 3
    assert len(FeatureCache(tmp_path, "enc-a", SHAPE)) == 3


def test_fingerprint_changes_with_weights_buffers_and_name():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    key = encoder_fingerprint(net, "vit/tiny")
    assert key.startswith("vit_tiny-") and key == encoder_fingerprint(net, "vit/tiny")
    assert encoder_fingerprint(net, "other") != key
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-3
    tuned = encoder_fingerprint(net, "vit/tiny")
    assert tuned != key
    net[1].running_mean += 1.0
    assert encoder_fingerprint(net, "vit/tiny") != tuned


def test_non_uint8_images_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        FeatureCache(tmp_path, "enc-a", SHAPE).get_or_compute([np.zeros((2, 2), np.float32)], Encoder())


def _fill(root, seed: int) -> None:
    cache = FeatureCache(root, "enc-a", SHAPE)
    for chunk in np.array_split(np.arange(12), 6):  # many small appends, interleaving with the other process
        cache.get_or_compute([images(12, seed)[i] for i in chunk], Encoder())


def test_two_processes_appending_to_one_folder_keep_it_consistent(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fill, args=(tmp_path, seed)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    ims = images(12, 1) + images(12, 2)
    cache, enc = FeatureCache(tmp_path, "enc-a", SHAPE), Encoder()
    assert len(cache) == 24
    torch.testing.assert_close(cache.get_or_compute(ims, enc), Encoder()(ims))
    assert enc.calls == []
