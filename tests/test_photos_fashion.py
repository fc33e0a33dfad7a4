"""The two real-image sets: skimage photographs and Debian's Fashion-MNIST."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from vlkit.commands.evaluation import evaluate
from vlkit.config import DataConfig, SourceConfig, load_config, stage_configs
from vlkit.data import build_source
from vlkit.data.fashion_mnist import CLASSES, FashionMNIST, read_idx
from vlkit.data.photos import CAPTIONS, Photos, split_of, to_rgb
from vlkit.eval.embedded import named_benchmarks
from vlkit.eval.run import open_benchmarks

RECIPES = Path(__file__).parent.parent / "recipes"


def test_every_photo_loads_as_rgb_uint8_with_captions():
    photos = Photos(split="all")
    assert len(photos) == len(photos.names) >= 12
    for i in range(len(photos)):
        sample = photos[i]
        image = sample["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 100 and image.std() > 10  # a real picture, not a blank
        assert len(sample["captions"]) >= 2 and len(set(sample["captions"])) == len(sample["captions"])
        assert sample["key"] == f"photos/{photos.names[i]}"
    with pytest.raises(IndexError):
        photos[len(photos)]


def test_photo_subset_and_unknown_name():
    photos = Photos(["horse", "chelsea"], split="all")
    assert photos[0]["key"] == "photos/horse" and photos[1]["captions"] == list(CAPTIONS["chelsea"])
    with pytest.raises(ValueError, match="lena"):
        Photos(["lena"])


def test_to_rgb_converts_bool_grey_and_rgba():
    assert to_rgb(np.array([[True, False]]))[0].tolist() == [[255, 255, 255], [0, 0, 0]]
    assert to_rgb(np.array([[7]], dtype=np.uint8)).tolist() == [[[7, 7, 7]]]
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], dtype=np.uint8)
    assert to_rgb(rgba)[0].tolist() == [[10, 20, 30], [255, 255, 255]]  # transparent -> white


def test_fashion_mnist_test_split_from_debian_files():
    test = FashionMNIST("test")
    assert len(test) == 10_000 and test.classes == CLASSES and len(CLASSES) == 10
    sample = test[0]
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (28, 28, 3)
    assert (sample["image"][..., 0] == sample["image"][..., 2]).all()
    assert sample["label"] == 9  # the first test image of Fashion-MNIST is an ankle boot
    assert sample["captions"] == ["a photo of an ankle boot", "a black and white photo of an ankle boot"]
    assert sample["key"] == "fashion-mnist/test/0"
    assert np.bincount(test.labels).tolist() == [1000] * 10
    with pytest.raises(IndexError):
        test[10_000]


def test_fashion_mnist_train_split_size_and_labels():
    train = FashionMNIST("train")
    assert len(train) == 60_000 and train.images.shape == (60_000, 28, 28)
    assert train.labels.min() >= 0 and train.labels.max() == 9
    assert train[5]["key"] == "fashion-mnist/train/5"
    trouser = int(np.flatnonzero(train.labels == 1)[0])
    assert train[trouser]["captions"][0] == "a photo of a trouser"


def test_fashion_mnist_missing_root_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        FashionMNIST("train", root=tmp_path)
    message = str(error.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message and "root=" in message
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message


def test_fashion_mnist_bad_split_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'val'.*'train', 'test'"):
        FashionMNIST("val")


def test_read_idx_rejects_a_wrong_header(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02")  # claims 3 labels, has 2
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(path, 0x00000801)


def _photo_fingerprints(samples) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(s["image"]).tobytes()).hexdigest() for s in samples}


def test_training_photos_and_eval_photos_share_no_image():
    """Every stage of the recipe that trains on photos reads images that `vlkit eval --data photos`
    and training-time evaluation (both `named_benchmarks`) never score, by name and by pixels."""
    train_keys, train_pixels = set(), set()
    for _, cfg in stage_configs(load_config(RECIPES / "llava-smollm2.yaml")):
        for s, source in enumerate(cfg.data.sources):
            if source.kind == "photos":
                dataset = build_source(source, cfg.data, f"data.sources[{s}]")
                samples = [dataset[i] for i in range(len(dataset))]
                train_keys |= {sample["key"] for sample in samples}
                train_pixels |= _photo_fingerprints(samples)
    (bench, *_) = open_benchmarks("photos")
    assert bench.examples and train_keys  # both sides have photos
    eval_keys = {e["id"] for e in bench.examples}
    assert not train_keys & eval_keys
    assert not train_pixels & _photo_fingerprints(bench.examples)
    assert eval_keys == {e["id"] for e in named_benchmarks("photos")[0].examples}
    assert len(train_keys | eval_keys) == len(CAPTIONS)  # the split loses no photo
    assert {split_of(k.removeprefix("photos/")) for k in eval_keys} == {"test"}


def test_photo_split_is_fixed_by_name_and_checked():
    assert [n for n in CAPTIONS if split_of(n) == "test"] == Photos(split="test").names
    assert len(Photos(split="all")) == len(CAPTIONS)
    assert Photos(["horse", "chelsea"], split="all").names == ["horse", "chelsea"]
    with pytest.raises(ValueError, match="data.sources\\[0\\].*'val'.*train, test, all"):
        build_source(SourceConfig(kind="photos", split="val"), DataConfig())


def test_photo_eval_says_the_held_out_set_is_small(tiny_run, tmp_path, capsys):
    evaluate(str(tiny_run), data="photos", task="retrieval", out=str(tmp_path / "eval"), progress=False)
    printed = capsys.readouterr().out
    n = len(Photos(split="test"))
    assert f"note: photos (test split): only {n} images" in printed
    assert f"only {n} images" in (tmp_path / "eval" / "report.md").read_text()
