"""SearchIndex: known answers, numpy/faiss agreement, save/load round trip and boundary errors."""

import json

import numpy as np
import pytest
import torch

from vlkit import index as index_module
from vlkit.index import SearchIndex


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
    monkeypatch.setattr(index_module, "FAISS_THRESHOLD", 10)
    assert idx._use_faiss()
    large = idx.search(queries, k=5)
    assert [[key for key, _ in hits] for hits in small] == [[key for key, _ in hits] for hits in large]


def test_ivf_finds_exact_neighbours_when_probing_every_cluster():
    idx, rng = _random_index(n=400, backend="faiss", nlist=4, nprobe=4)
    exact = _with_backend(idx, "numpy")
    queries = rng.normal(size=(10, 16))
    assert [[k for k, _ in hits] for hits in idx.search(queries, k=5)] == [
        [k for k, _ in hits] for hits in exact.search(queries, k=5)
    ]


def test_numpy_search_in_blocks_matches_one_block(monkeypatch):
    idx, rng = _random_index()
    queries = rng.normal(size=(25, 16))
    whole = idx.search(queries, k=4)
    monkeypatch.setattr(index_module, "_SCORE_BLOCK_ELEMENTS", 3 * 300)  # 3 queries per block
    blocked = idx.search(queries, k=4)
    # BLAS may round differently for another matrix shape, so scores agree to float32 precision.
    assert [[key for key, _ in hits] for hits in blocked] == [[key for key, _ in hits] for hits in whole]
    assert [s for hits in blocked for _, s in hits] == pytest.approx([s for hits in whole for _, s in hits])


def test_save_load_round_trip(tmp_path):
    idx, rng = _random_index(n=30)
    idx.add(torch.randn(2, 16), [tmp_path / "a.png", "b.png"])  # torch input and path keys
    folder = idx.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "index.json"]
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
    (folder / "embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=f"{folder / 'embeddings.npy'}: not a readable"):
        SearchIndex.load(folder)
    folder = _random_index(n=5)[0].save(tmp_path / "idx")
    header = json.loads((folder / "index.json").read_text())
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
    with pytest.raises(ValueError, match="needs backend='faiss'"):
        SearchIndex(4, nlist=8)
    with pytest.raises(ValueError, match="backend: 'gpu' is not one of"):
        SearchIndex(4, backend="gpu")
    with pytest.raises(ValueError, match="metadata: must be JSON-serialisable"):
        SearchIndex(4, metadata={"path": object()})
    idx = SearchIndex(2)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search([1.0, 0.0], k=1)
    with pytest.raises(ValueError, match="embeddings: row 1 is all zeros"):
        idx.add([[1.0, 0.0], [0.0, 0.0]], ["a", "b"])
    small = SearchIndex(2, backend="faiss", nlist=4)
    small.add([[1.0, 0.0], [0.0, 1.0]], ["a", "b"])
    with pytest.raises(
        ValueError, match="nlist=4: an IVF index needs at least nlist vectors, the index has 2"
    ):
        small.search([1.0, 0.0], k=1)


def _with_backend(idx, backend):
    copy = SearchIndex(idx.dim, idx.metadata, backend=backend)
    copy.add(idx.embeddings, idx.keys)
    return copy
