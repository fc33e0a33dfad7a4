"""SearchIndex: known answers, numpy/faiss agreement, approximate kinds against exact search,
sharded and memory-mapped search against in-memory search, save/load round trips, boundary errors."""

import json

import numpy as np
import pytest
import torch

from vlkit.index import SearchIndex, exact, settings


def _random_index(n=300, dim=16, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    idx = SearchIndex(dim, metadata={"model": "tiny", "embed_dim": dim}, **kwargs)
    idx.add(rng.normal(size=(n, dim)), [f"img_{i}.jpg" for i in range(n)])
    return idx, rng


def test_search_known_answer_cosine_best_first():
    idx = SearchIndex(2)
    # Scaled vectors: the index normalises, so scores are cosines regardless of length.
    idx.add([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]], ["east", "north", "north-east"])
    (hits,) = idx.search([2.0, 0.0], k=2)
    assert [key for key, _ in hits] == ["east", "north-east"]
    assert [score for _, score in hits] == pytest.approx([1.0, np.sqrt(0.5)])
    # k is clamped to the size of the index; a [Q, D] batch gives one list per query.
    batch = idx.search(np.array([[0.0, 1.0], [-1.0, 0.0]]), k=10)
    assert [[key for key, _ in hits] for hits in batch] == [
        ["north", "north-east", "east"],
        ["north", "north-east", "east"],
    ]
    assert [score for _, score in batch[1]] == pytest.approx([0.0, -np.sqrt(0.5), -1.0])
    assert len(idx) == 3


def test_numpy_and_faiss_flat_agree():
    idx, rng = _random_index()
    queries = rng.normal(size=(20, 16))
    by_numpy = _with_backend(idx, "numpy").search(queries, k=7)
    by_faiss = _with_backend(idx, "faiss").search(queries, k=7)
    for numpy_hits, faiss_hits in zip(by_numpy, by_faiss):
        assert [key for key, _ in numpy_hits] == [key for key, _ in faiss_hits]
        assert [s for _, s in numpy_hits] == pytest.approx([s for _, s in faiss_hits], abs=1e-5)


def test_auto_switches_to_faiss_above_threshold(monkeypatch):
    idx, rng = _random_index(n=50)
    queries = rng.normal(size=(5, 16))
    small = idx.search(queries, k=5)
    monkeypatch.setattr(exact, "FAISS_THRESHOLD", 10)
    assert idx._exact_uses_faiss()
    large = idx.search(queries, k=5)
    assert [[key for key, _ in hits] for hits in small] == [[key for key, _ in hits] for hits in large]


def test_ivf_pq_finds_exact_neighbours_when_probing_every_list_and_rescoring_every_vector():
    params = {"nlist": 4, "nprobe": 4, "nbits": 4, "refine": 80}  # refine * k >= 400: all re-scored
    idx, rng = _random_index(n=400, kind="ivf-pq", params=params)
    exhaustive = _with_backend(idx, "numpy")
    queries = rng.normal(size=(10, 16))
    found, expected = idx.search(queries, k=5), exhaustive.search(queries, k=5)
    assert [[key for key, _ in hits] for hits in found] == [[key for key, _ in hits] for hits in expected]
    assert [s for hits in found for _, s in hits] == pytest.approx([s for hits in expected for _, s in hits])


def test_numpy_search_in_blocks_matches_one_block(monkeypatch):
    idx, rng = _random_index()
    queries = rng.normal(size=(25, 16))
    whole = idx.search(queries, k=4)
    monkeypatch.setattr(exact, "SCORE_BLOCK_ELEMENTS", 3 * 300)  # 3 queries per block
    blocked = idx.search(queries, k=4)
    # BLAS may round differently for another matrix shape, so scores agree to float32 precision.
    assert [[key for key, _ in hits] for hits in blocked] == [[key for key, _ in hits] for hits in whole]
    assert [s for hits in blocked for _, s in hits] == pytest.approx([s for hits in whole for _, s in hits])


def test_save_load_round_trip(tmp_path):
    idx, rng = _random_index(n=30)
    idx.add(torch.randn(2, 16), [tmp_path / "a.png", "b.png"])  # torch input and path keys
    folder = idx.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "shard-00000.npy"]
    loaded = SearchIndex.load(folder)
    assert len(loaded) == 32 and loaded.dim == 16
    assert loaded.keys == idx.keys and loaded.keys[30] == str(tmp_path / "a.png")
    assert loaded.metadata == {"model": "tiny", "embed_dim": 16}
    np.testing.assert_array_equal(loaded.embeddings, idx.embeddings)
    queries = rng.normal(size=(4, 16))
    assert loaded.search(queries, k=3) == idx.search(queries, k=3)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "index.json")):
        SearchIndex.load(tmp_path / "nowhere")
    folder = _random_index(n=5)[0].save(tmp_path / "idx")
    (folder / "index.json").write_text('{"format": "vlkit.SearchIndex", "ver')
    with pytest.raises(ValueError, match=f"{folder / 'index.json'}: not valid JSON"):
        SearchIndex.load(folder)
    folder = _random_index(n=5)[0].save(tmp_path / "idx")
    (folder / "shard-00000.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=f"{folder / 'shard-00000.npy'}: not a readable"):
        SearchIndex.load(folder)
    folder = _random_index(n=5)[0].save(tmp_path / "idx")
    header = json.loads((folder / "index.json").read_text())
    header["shards"][0]["count"] = 6
    (folder / "index.json").write_text(json.dumps(header | {"count": 6, "keys": header["keys"] + ["x"]}))
    with pytest.raises(ValueError, match=r"expected float32\[6, 16\].*got float32\[5, 16\]"):
        SearchIndex.load(folder)


def test_dimension_mismatch_names_both_dims():
    idx, _ = _random_index(n=5)
    with pytest.raises(ValueError, match="dimension 8 does not match the index dimension 16"):
        idx.add(np.ones((2, 8)), ["a", "b"])
    with pytest.raises(ValueError, match="queries: dimension 32 does not match the index dimension 16"):
        idx.search(np.ones(32), k=1)


def test_keys_and_embeddings_length_mismatch():
    idx = SearchIndex(4)
    with pytest.raises(ValueError, match="got 3 embeddings but 2 keys"):
        idx.add(np.ones((3, 4)), ["a", "b"])
    assert len(idx) == 0


def test_boundary_errors():
    with pytest.raises(ValueError, match="backend: 'gpu' is not one of"):
        SearchIndex(4, backend="gpu")
    with pytest.raises(ValueError, match="metadata: must be JSON-serialisable"):
        SearchIndex(4, metadata={"path": object()})
    idx = SearchIndex(2)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search([1.0, 0.0], k=1)
    with pytest.raises(ValueError, match="embeddings: row 1 is all zeros"):
        idx.add([[1.0, 0.0], [0.0, 0.0]], ["a", "b"])


def _with_backend(idx, backend):
    copy = SearchIndex(idx.dim, idx.metadata, backend=backend)
    copy.add(idx.embeddings, idx.keys)
    return copy


def _clustered(n, dim=16, clusters=20, seed=0):
    """Vectors around a few centres (as embeddings of similar images are), and queries like them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(clusters, size=n)] + 0.4 * rng.normal(size=(n, dim))
    queries = centres[rng.integers(clusters, size=30)] + 0.4 * rng.normal(size=(30, dim))
    return vectors, queries


def _recall_at_10(approximate, exhaustive, queries):
    _, found = approximate.search_ids(queries, 10)
    _, truth = exhaustive.search_ids(queries, 10)
    return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])


@pytest.mark.parametrize(
    ("kind", "params"),
    [("ivf-pq", {"nlist": 16, "nbits": 5, "nprobe": 4}), ("hnsw", {"M": 8, "ef_search": 32})],
)
def test_approximate_kinds_recall_exact_neighbours(kind, params, tmp_path):
    vectors, queries = _clustered(2000)
    keys = [f"v{i}" for i in range(len(vectors))]
    exhaustive = SearchIndex(16, kind="exact")
    exhaustive.add(vectors, keys)
    approx = SearchIndex(16, kind=kind, params=params, shard_size=700)
    approx.add(vectors, keys)
    assert _recall_at_10(approx, exhaustive, queries) >= 0.9
    # saved with its parameters, loaded memory-mapped: the same answers
    loaded = SearchIndex.load(approx.save(tmp_path / "idx"))
    header = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert header["kind"] == kind and header["params"] == approx.resolved()[1]
    assert all(header["params"][name] == value for name, value in params.items())
    assert [s["count"] for s in header["shards"]] == [700, 700, 600]
    assert loaded.search(queries, 10) == approx.search(queries, 10)
    # a search-time parameter can change on loading
    wider = SearchIndex.load(
        tmp_path / "idx", params={"nprobe": 16} if kind == "ivf-pq" else {"ef_search": 200}
    )
    assert _recall_at_10(wider, exhaustive, queries) >= _recall_at_10(loaded, exhaustive, queries)


def test_memory_mapped_shards_search_as_in_memory(tmp_path):
    vectors, queries = _clustered(1000)
    keys = [f"v{i}" for i in range(len(vectors))]
    whole = SearchIndex(16, kind="exact")  # one shard, in memory
    whole.add(vectors, keys)
    sharded = SearchIndex(16, kind="exact", shard_size=300)
    sharded.add(vectors, keys)
    sharded.save(tmp_path / "idx")
    loaded = SearchIndex.load(tmp_path / "idx")
    assert [len(c) for c in loaded._chunks] == [300, 300, 300, 100]
    assert all(isinstance(c, np.memmap) for c in loaded._chunks)  # not read into memory
    for backend in ("numpy", "faiss"):
        loaded.backend = whole.backend = backend
        expected = whole.search(queries, 10)
        for got in (loaded.search(queries, 10), sharded.search(queries, 10)):
            assert [[key for key, _ in hits] for hits in got] == [
                [key for key, _ in hits] for hits in expected
            ]
            assert [s for hits in got for _, s in hits] == pytest.approx(
                [s for hits in expected for _, s in hits]
            )


def test_auto_is_exact_below_the_threshold_and_ivf_pq_above(monkeypatch, tmp_path):
    vectors, _ = _clustered(600)
    idx = SearchIndex(16, params={"nlist": 8, "nbits": 4})  # params: the approximate kind's
    idx.add(vectors, [f"v{i}" for i in range(600)])
    assert idx.resolved() == ("exact", {})
    monkeypatch.setattr(settings, "APPROXIMATE_THRESHOLD", 500)
    assert idx.resolved() == ("ivf-pq", {"nlist": 8, "m": 4, "nbits": 4, "nprobe": 32, "refine": 10})
    idx.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "index.json",
        "shard-00000.faiss",
        "shard-00000.npy",
    ]
    assert SearchIndex.load(tmp_path / "idx").kind == "ivf-pq"


def test_version_1_folder_still_loads(tmp_path):
    """The layout before shards: one embeddings.npy beside index.json, an exact index."""
    idx, rng = _random_index(n=20)
    folder = tmp_path / "old"
    folder.mkdir()
    np.save(folder / "embeddings.npy", idx.embeddings)
    old_header = {"format": "vlkit.SearchIndex", "version": 1, "dim": 16, "count": 20}
    (folder / "index.json").write_text(json.dumps(old_header | {"keys": idx.keys, "metadata": idx.metadata}))
    loaded = SearchIndex.load(folder)
    assert loaded.resolved() == ("exact", {}) and loaded.metadata == idx.metadata
    queries = rng.normal(size=(3, 16))
    assert loaded.search(queries, 4) == idx.search(queries, 4)
    loaded.save(folder)  # rewritten as version 2; the old file goes
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "shard-00000.npy"]
    (folder / "index.json").write_text(json.dumps(old_header | {"version": 7}))
    with pytest.raises(ValueError, match="version 7 is not supported"):
        SearchIndex.load(folder)


def test_bad_kinds_and_parameters_name_what_is_valid(tmp_path):
    with pytest.raises(ValueError, match="kind: 'annoy' is not one of"):
        SearchIndex(16, kind="annoy")
    with pytest.raises(ValueError, match=r"\['efSearch'\] do not apply to a hnsw index.*ef_search"):
        SearchIndex(16, kind="hnsw", params={"efSearch": 10})
    with pytest.raises(ValueError, match="do not apply to a ivf-pq index"):
        SearchIndex(16, params={"M": 8})  # auto: the approximate kind's parameters
    vectors, _ = _clustered(100)
    keys = [f"v{i}" for i in range(100)]
    for params, message in [
        ({"nprobe": 0}, "nprobe: must be a positive integer, got 0"),
        ({"m": 5}, "m: 5 must divide the dimension 16"),
        ({"nlist": 8}, "trained on at least 256 vectors; this one has 100"),
    ]:
        idx = SearchIndex(16, kind="ivf-pq", params=params)
        idx.add(vectors, keys)
        with pytest.raises(ValueError, match=message):
            idx.save(tmp_path / "idx")
    idx = SearchIndex(16, kind="ivf-pq", params={"nlist": 4, "nbits": 4})
    idx.add(vectors, keys)
    idx.save(tmp_path / "idx")
    with pytest.raises(
        ValueError, match=r"\['nlist'\] do not apply to a ivf-pq index here; valid: \['nprobe', 'refine'\]"
    ):
        SearchIndex.load(tmp_path / "idx", params={"nlist": 8})
    with pytest.raises(ValueError, match="expected NAME=INTEGER"):
        settings.parse(["nprobe=lots"])
