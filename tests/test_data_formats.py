"""Data formats: robust decoding, folder + JSONL, tar shards, saved HF datasets, mixing."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlkit.config import DataConfig, SourceConfig
from vlkit.data import ImageError, build_dataset, iter_captions, load_image, open_named
from vlkit.data.folder import ImageFolderCaptions
from vlkit.data.mix import MixedDataset, permute_index
from vlkit.data.shards import WebDatasetShards, write_shards


def _pattern(height: int = 12, width: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- images


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((10, 20, 3), np.uint8)  # wide: red left half, blue right half
    array[:, :10] = (255, 0, 0)
    array[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90° clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, quality=95, exif=exif)

    image = load_image(path)
    assert image.shape == (20, 10, 3)  # now tall
    assert image[2, 5, 0] > 200 and image[2, 5, 2] < 60  # red came to the top
    assert image[17, 5, 2] > 200 and image[17, 5, 0] < 60  # blue at the bottom


def _palette_with_transparency() -> Image.Image:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0  # palette entry 0 (everything but pixel (0, 0)) is see-through
    return img


MODE_CASES = {
    # mode: (image, file format, expected RGB at pixel (0, 0), expected RGB at pixel (1, 1))
    "P+transparency": (_palette_with_transparency(), "PNG", (255, 0, 0), (255, 255, 255)),
    "RGBA": (Image.new("RGBA", (4, 4), (255, 0, 0, 128)), "PNG", (255, 127, 127), (255, 127, 127)),
    "LA": (Image.new("LA", (4, 4), (0, 0)), "PNG", (255, 255, 255), (255, 255, 255)),
    "I;16": (Image.fromarray(np.full((4, 4), 65535, np.uint16)), "PNG", (255, 255, 255), (255, 255, 255)),
    "CMYK": (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "TIFF", (255, 0, 0), (255, 0, 0)),
    "1": (Image.new("1", (4, 4), 1), "PNG", (255, 255, 255), (255, 255, 255)),
    "L": (Image.new("L", (4, 4), 100), "PNG", (100, 100, 100), (100, 100, 100)),
}


@pytest.mark.parametrize("case", list(MODE_CASES))
def test_every_mode_becomes_rgb_uint8(tmp_path: Path, case: str) -> None:
    img, file_format, first, other = MODE_CASES[case]
    path = tmp_path / f"image.{file_format.lower()}"
    img.save(path, format=file_format)
    for source in (path, path.read_bytes(), img):
        image = load_image(source)
        assert image.dtype == np.uint8 and image.shape == (4, 4, 3)
        np.testing.assert_allclose(image[0, 0], first, atol=1)
        np.testing.assert_allclose(image[1, 1], other, atol=1)


def test_sixteen_bit_and_float_scaling() -> None:
    sixteen = load_image(Image.fromarray(np.array([[0, 257, 65535]], np.uint16)))
    assert sixteen[0, :, 0].tolist() == [0, 1, 255]
    unit_float = load_image(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)))
    assert unit_float[0, :, 0].tolist() == [0, 128, 255]
    wide_int = load_image(Image.fromarray(np.array([[-100, 0, 155]], np.int32)))
    assert wide_int[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize("file_format", ["PNG", "JPEG"])
def test_truncated_file_raises_image_error(tmp_path: Path, file_format: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_pattern(64, 64)).save(buffer, format=file_format)
    path = tmp_path / f"cut.{file_format.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut") as error:
        load_image(path)
    assert error.value.path == str(path)


def test_garbage_and_missing_files_raise_image_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"definitely not an image" * 10)
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(path)
    with pytest.raises(ImageError, match="member#7"):
        load_image(b"\x89PNG junk", name="member#7")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "absent.png")


def test_pixel_limit_rejects_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_pattern(5, 6)).save(path)
    with pytest.raises(ImageError, match=r"big.png.*6x5 = 30 pixels.*limit of 10"):
        load_image(path, max_pixels=10)
    assert load_image(path, max_pixels=30).shape == (5, 6, 3)
    # PIL's own check (warning above its limit, error above twice it) maps to ImageError too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path, max_pixels=None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path, max_pixels=None)


def test_image_error_pickles() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(ImageError("a.png", "broken")))
    assert (error.path, str(error)) == ("a.png", "a.png: broken")


# --------------------------------------------------------------------------- folder + JSONL


def _write_folder(root: Path, lines: list[str]) -> Path:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pattern(seed=1)).save(root / "sub" / "a.png")
    Image.fromarray(_pattern(seed=2)).save(root / "b.png")
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_folder_merges_captions_and_passes_fields(tmp_path: Path) -> None:
    root = _write_folder(
        tmp_path,
        [
            json.dumps({"image": "sub/a.png", "caption": "first", "label": 3}),
            json.dumps({"image": "b.png", "captions": ["x", "y"], "boxes": [[0, 0, 4, 4]]}),
            "",
            json.dumps({"image": "sub/a.png", "captions": ["second", "third"]}),
        ],
    )
    data = ImageFolderCaptions(root)
    assert len(data) == 2
    first = data[0]
    assert first["captions"] == ["first", "second", "third"]
    assert first["label"] == 3 and "boxes" not in first
    assert first["key"] == str(root / "sub" / "a.png")
    np.testing.assert_array_equal(first["image"], _pattern(seed=1))
    assert data[1]["boxes"] == [[0, 0, 4, 4]] and "label" not in data[1]
    assert data.captions(1) == ["x", "y"]
    with pytest.raises(IndexError):
        data[2]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"image": "b.png", "caption": ', r"captions.jsonl:2: not valid JSON"),
        ('{"caption": "no image"}', r"captions.jsonl:2: missing field 'image'"),
        ('{"image": "b.png"}', r"captions.jsonl:2: missing field 'caption'"),
        ('{"image": "b.png", "captions": "not a list"}', r"captions.jsonl:2: field 'captions'"),
        ('{"image": "nowhere.png", "caption": "x"}', r"captions.jsonl:2: image 'nowhere.png' not found"),
        (
            '{"image": "sub/a.png", "caption": "x", "label": 4}',
            r"captions.jsonl:2: field 'label' = 4 contradicts 3",
        ),
    ],
)
def test_folder_validation_names_file_line_and_field(tmp_path: Path, bad_line: str, message: str) -> None:
    good = json.dumps({"image": "sub/a.png", "caption": "ok", "label": 3})
    root = _write_folder(tmp_path, [good, bad_line])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ImageFolderCaptions(root)


def test_folder_decodes_lazily(tmp_path: Path) -> None:
    root = _write_folder(tmp_path, [json.dumps({"image": "broken.jpg", "caption": "x"})])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    data = ImageFolderCaptions(root)  # existence is checked, content is not
    assert data.captions(0) == ["x"]
    with pytest.raises(ImageError, match="broken.jpg"):
        data[0]


# --------------------------------------------------------------------------- tar shards


def _samples(count: int) -> list[dict]:
    return [
        {
            "image": _pattern(seed=i),
            "captions": [f"caption {i}", f"other {i}"],
            "key": f"s{i}",
            "label": i % 3,
        }
        for i in range(count)
    ]


def test_write_and_read_shards(tmp_path: Path) -> None:
    paths = write_shards(_samples(5), tmp_path / "out", max_per_shard=2)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]

    data = WebDatasetShards(str(tmp_path / "out" / "shard-{000000..000002}.tar"))
    assert len(data) == 5
    for i, expected in enumerate(_samples(5)):
        sample = data[i]
        np.testing.assert_array_equal(sample["image"], expected["image"])  # PNG is lossless
        assert sample["captions"] == expected["captions"]
        assert sample["label"] == expected["label"]
        assert data.captions(i) == expected["captions"]
    assert data[3]["key"] == f"{paths[1]}#000000003"
    assert len(WebDatasetShards(str(tmp_path / "out" / "*.tar"))) == 5
    with pytest.raises(IndexError):
        data[5]


def test_written_shards_are_read_by_webdataset(tmp_path: Path) -> None:
    import webdataset

    paths = write_shards(_samples(3), str(tmp_path / "ds-%03d.tar"), image_format="jpg")
    assert [p.name for p in paths] == ["ds-000.tar"]
    read = list(webdataset.WebDataset(str(paths[0]), shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in read] == ["000000000", "000000001", "000000002"]
    assert read[1]["json"]["captions"] == ["caption 1", "other 1"]
    assert read[1]["txt"] == "caption 1"
    assert read[1]["jpg"].shape == (12, 16, 3)
    # JPEG is lossy, but close on a noisy pattern's mean.
    assert abs(float(read[1]["jpg"].mean()) - float(_pattern(seed=1).mean())) < 5


def _tar_with(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_member_names_shard_and_key(tmp_path: Path) -> None:
    shard = tmp_path / "hand.tar"
    _tar_with(
        shard,
        {
            "good.png": _png_bytes(_pattern()),
            "good.txt": b"a fine picture",
            "bad.jpg": b"\xff\xd8\xff not really a jpeg",
            "bad.json": json.dumps({"caption": "broken"}).encode(),
            "bad.cls": b"7",
        },
    )
    data = WebDatasetShards([shard])
    assert data[0]["captions"] == ["a fine picture"] and "label" not in data[0]
    assert data.captions(1) == ["broken"]
    with pytest.raises(ImageError, match=f"{shard}#bad"):
        data[1]
    assert iter_captions(data, 10) == ["a fine picture", "broken"]


def test_shard_validation(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shard not found"):
        WebDatasetShards(str(tmp_path / "x-{0..1}.tar"))
    _tar_with(tmp_path / "nocap.tar", {"k.png": _png_bytes(_pattern())})
    with pytest.raises(ValueError, match=r"nocap.tar#k: no caption"):
        WebDatasetShards(tmp_path / "nocap.tar")
    _tar_with(tmp_path / "noimg.tar", {"k.txt": b"x"})
    with pytest.raises(ValueError, match=r"noimg.tar#k: no image member \(found .txt\)"):
        WebDatasetShards(tmp_path / "noimg.tar")


# --------------------------------------------------------------------------- Hugging Face


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from vlkit.data.hf import HFDiskDataset

    images = [Image.fromarray(_pattern(seed=i)) for i in range(3)]
    table = datasets.Dataset.from_dict(
        {"image": images, "text": ["zero", "one", "two"], "label": [0, 1, 2], "extra": [1.0, 2.0, 3.0]}
    ).cast_column("image", datasets.Image())
    table.save_to_disk(str(tmp_path / "flat"))
    datasets.DatasetDict({"train": table, "test": table.select([2])}).save_to_disk(str(tmp_path / "dict"))

    data = HFDiskDataset(tmp_path / "flat")
    assert (data.image_column, data.caption_column, len(data)) == ("image", "text", 3)
    sample = data[1]
    np.testing.assert_array_equal(sample["image"], _pattern(seed=1))
    assert sample["captions"] == ["one"] and sample["label"] == 1
    assert data.captions(2) == ["two"]
    assert len(HFDiskDataset(tmp_path / "dict")) == 3
    assert HFDiskDataset(tmp_path / "dict", split="test").captions(0) == ["two"]
    with pytest.raises(ValueError, match="no split 'val'; available splits: train, test"):
        HFDiskDataset(tmp_path / "dict", split="val")
    with pytest.raises(ValueError, match=r"caption column 'nope' not found; columns: image .*text"):
        HFDiskDataset(tmp_path / "flat", caption_column="nope")
    table.remove_columns(["text"]).save_to_disk(str(tmp_path / "nocap"))
    with pytest.raises(ValueError, match=r"no caption column .*Columns: image"):
        HFDiskDataset(tmp_path / "nocap")


# --------------------------------------------------------------------------- mixing


class _Numbers:
    """A stand-in source: sample j of source `name` is just its id."""

    def __init__(self, name: str, size: int):
        self.name, self.size = name, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, j: int) -> dict:
        return {
            "image": np.zeros((1, 1, 3), np.uint8),
            "captions": [f"{self.name}{j}"],
            "key": f"{self.name}{j}",
        }


def test_permute_index_is_a_bijection() -> None:
    for n in (1, 2, 3, 7, 64, 1000):
        assert sorted(permute_index(p, n, [1, 2, 3, 4]) for p in range(n)) == list(range(n))
    assert [permute_index(p, 1000, [1, 2, 3, 4]) for p in range(10)] != list(range(10))


def test_mix_is_deterministic_and_weighted() -> None:
    sources = [_Numbers("a", 50), _Numbers("b", 30)]
    mix = MixedDataset(sources, [3.0, 1.0], seed=7, size=4000)
    keys = [mix[i]["key"] for i in range(4000)]
    again = MixedDataset(sources, [3.0, 1.0], seed=7, size=4000)
    assert [again[i]["key"] for i in (3999, 12, 0, 1234)] == [keys[3999], keys[12], keys[0], keys[1234]]
    assert [MixedDataset(sources, [3.0, 1.0], seed=8)[i]["key"] for i in range(40)] != keys[:40]
    share = sum(k.startswith("a") for k in keys) / len(keys)
    assert abs(share - 0.75) < 0.02
    # Each pass over a source visits every one of its samples exactly once.
    from_a = [k for k in keys if k.startswith("a")]
    assert sorted(from_a[:50]) == sorted(f"a{j}" for j in range(50))
    assert Counter(from_a[:500]) == Counter({f"a{j}": 10 for j in range(50)})
    assert mix.captions(5) == mix[5]["captions"]
    with pytest.raises(IndexError):
        mix[4000]


def test_mix_tiny_weight_still_drawn() -> None:
    mix = MixedDataset([_Numbers("a", 10), _Numbers("b", 10)], [1.0, 1e-3], seed=0, size=20_000)
    drawn = sum(mix.locate(i)[0] for i in range(20_000))
    assert 15 <= drawn <= 25  # exactly floor-proportional: 20 expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [1.0, 0.0]}, r"weights\[1\] = 0.0"),
        ({"weights": [1.0]}, "2 data sets but 1 weights"),
        ({"weights": [1.0, 1.0], "seed": -1}, "seed must be >= 0"),
    ],
)
def test_mix_validation(kwargs: dict, message: str) -> None:
    arguments = {"datasets": [_Numbers("a", 2), _Numbers("b", 2)], "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        MixedDataset(**arguments)


# --------------------------------------------------------------------------- build_dataset


def test_build_dataset_from_folder_and_shards(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "folder", [json.dumps({"image": "b.png", "caption": "from the folder"})])
    write_shards(_samples(4), tmp_path / "shards")
    folder = SourceConfig(kind="folder", path=str(root), weight=1.0)
    shards = SourceConfig(kind="webdataset", path=str(tmp_path / "shards" / "*.tar"), weight=2.0)

    single = build_dataset(DataConfig(sources=[folder]))
    assert isinstance(single, ImageFolderCaptions)

    mixed = build_dataset(DataConfig(sources=[folder, shards], seed=3))
    assert isinstance(mixed, MixedDataset) and len(mixed) == 5
    sample = mixed[0]
    assert sample["image"].dtype == np.uint8 and sample["image"].ndim == 3 and sample["captions"]
    captions = iter_captions(mixed, 5)
    assert "from the folder" in captions and any(c.startswith("caption ") for c in captions)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            SourceConfig(kind="imagenet"),
            r"data.sources\[0\].kind: unknown kind 'imagenet'; valid kinds: scenes, ",
        ),
        (SourceConfig(kind="folder"), r"data.sources\[0\].path: kind 'folder' needs a path"),
        (SourceConfig(kind="scenes", path="x"), r"data.sources\[0\].path: kind 'scenes' is embedded"),
        (SourceConfig(kind="folder", path="x", weight=0.0), r"data.sources\[0\].weight: must be > 0"),
    ],
)
def test_build_dataset_validation(source: SourceConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_dataset(DataConfig(sources=[source]))


def test_open_named_infers_the_kind(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "folder", [json.dumps({"image": "b.png", "caption": "x"})])
    assert isinstance(open_named(str(root)), ImageFolderCaptions)
    write_shards(_samples(3), tmp_path / "shards", max_per_shard=2)
    assert len(open_named(str(tmp_path / "shards"))) == 3
    assert len(open_named(str(tmp_path / "shards" / "shard-000001.tar"))) == 1
    with pytest.raises(ValueError, match="not an embedded set"):
        open_named(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        open_named(str(tmp_path / "nope"))


def _write_coco_and_llava(root: Path) -> dict[str, Path]:
    """One image two ways: COCO captions + instances, and a LLaVA JSON / chat JSONL conversation."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pattern(seed=3)).save(root / "a.png")
    image = {"id": 7, "file_name": "a.png", "width": 16, "height": 12}
    captions = {"images": [image], "annotations": [{"id": 1, "image_id": 7, "caption": "a dog "}]}
    instances = {
        "images": [image],
        "categories": [{"id": 1, "name": "dog"}],
        "annotations": [{"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 8, 6]}],
    }
    (root / "captions_val.json").write_text(json.dumps(captions))
    (root / "instances_val.json").write_text(json.dumps(instances))
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A dog."}]
    (root / "llava.json").write_text(json.dumps([{"id": "q", "image": "a.png", "conversations": turns}]))
    messages = [{"role": "user", "content": "<image> What?"}, {"role": "assistant", "content": "A dog."}]
    (root / "chat.jsonl").write_text(json.dumps({"id": "q", "image": "a.png", "messages": messages}) + "\n")
    return {n: root / n for n in ("captions_val.json", "llava.json", "chat.jsonl")}


def test_one_resolver_names_a_source_kind_for_data_sets_instruction_sources_and_eval(tmp_path: Path) -> None:
    """`resolve_name` is the one home of data-by-name: data sets (open_named), instruction sources
    (open_source) and eval data (open_benchmarks, after the benchmarks' own layouts) agree on it,
    and every kind it names is a data source kind."""
    from vlkit.data import SOURCE_KINDS, resolve_name
    from vlkit.data.contexts import open_source
    from vlkit.eval.run import open_benchmarks

    files = _write_coco_and_llava(tmp_path / "coco")
    kinds = {name: resolve_name(str(path))[0] for name, path in files.items()}
    assert kinds == {
        "captions_val.json": "coco",
        "llava.json": "conversations",
        "chat.jsonl": "conversations",
    }
    assert resolve_name(str(tmp_path / "coco"))[0] == "coco"  # a folder of COCO files
    assert set(kinds.values()) <= set(SOURCE_KINDS)

    (sample,) = open_named(str(tmp_path / "coco"))  # the coco kind: images with their captions
    assert (
        sample["captions"] == ["a dog"] and sample["key"] == "coco-7" and sample["image"].shape == (12, 16, 3)
    )
    for name in ("llava.json", "chat.jsonl"):
        assert open_named(str(files[name]))[0]["messages"][-1]["content"] == "A dog."
        (ctx,) = open_source(str(files[name]))
        assert ctx.captions == ["A dog."]
        with pytest.raises(ValueError, match="no captions"):
            open_benchmarks(str(files[name]))
    (ctx,) = open_source(str(tmp_path / "coco"))
    assert ctx.captions == ["a dog"] and ctx.objects[0].category == "dog"
    assert [b.task for b in open_benchmarks(str(files["captions_val.json"]))] == ["caption", "retrieval"]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        open_source(str(tmp_path / "nope"))


def test_user_kinds_refuse_an_index_out_of_range_alike(tmp_path: Path) -> None:
    files = _write_coco_and_llava(tmp_path / "coco")
    write_shards(_samples(3), tmp_path / "shards", max_per_shard=2)
    folder = _write_folder(tmp_path / "folder", [json.dumps({"image": "b.png", "caption": "x"})])
    names = [folder, tmp_path / "shards", tmp_path / "coco", files["llava.json"], files["chat.jsonl"]]
    for dataset in map(open_named, map(str, names)):
        for i in (len(dataset), -1):
            with pytest.raises(IndexError, match=f"index {i} out of range for {len(dataset)} "):
                dataset[i]


def test_any_data_source_is_an_instruction_source(tmp_path: Path) -> None:
    from vlkit.data.contexts import open_source

    write_shards(_samples(3), tmp_path / "shards", max_per_shard=2)
    contexts = list(open_source(str(tmp_path / "shards"), count=2))
    assert [c.image for c in contexts] == ["images/webdataset/000000.png", "images/webdataset/000001.png"]
    assert contexts[0].captions == _samples(1)[0]["captions"] and contexts[0].array.ndim == 3


def test_eval_reads_saved_hf_datasets_and_scores_the_test_split(tmp_path: Path) -> None:
    """A save_to_disk folder is not mistaken for Karpathy's dataset_<name>.json (its
    dataset_info.json / dataset_dict.json match that glob), and a DatasetDict is scored on its
    test split, never silently on train."""
    datasets = pytest.importorskip("datasets")
    from vlkit.eval.run import open_benchmarks

    images = [Image.fromarray(_pattern(seed=i)) for i in range(3)]
    table = datasets.Dataset.from_dict({"image": images, "text": ["zero", "one", "two"]})
    table = table.cast_column("image", datasets.Image())
    table.save_to_disk(str(tmp_path / "flat"))
    datasets.DatasetDict({"train": table, "test": table.select([2])}).save_to_disk(str(tmp_path / "dict"))
    datasets.DatasetDict({"train": table}).save_to_disk(str(tmp_path / "train-only"))

    (flat,) = [b for b in open_benchmarks(str(tmp_path / "flat")) if b.task == "retrieval"]
    assert [e["captions"] for e in flat.examples] == [["zero"], ["one"], ["two"]]
    (held_out,) = [b for b in open_benchmarks(str(tmp_path / "dict")) if b.task == "retrieval"]
    assert [e["captions"] for e in held_out.examples] == [["two"]]
    with pytest.raises(ValueError, match="no split 'test'; available splits: train"):
        open_benchmarks(str(tmp_path / "train-only"))
