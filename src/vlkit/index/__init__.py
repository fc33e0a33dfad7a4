"""An embedding index for text-to-image and image-to-text search.

`SearchIndex` keeps L2-normalised float32 embeddings with one string key per row (for example an
image path) and a small JSON metadata dict (for example the model that made the embeddings), so
scores are cosine similarities.

Search is exact (a numpy matmul, or faiss's knn from 50k vectors up) below
`settings.APPROXIMATE_THRESHOLD` vectors, and approximate above it or when asked: a faiss ivf-pq
index whose candidates are re-scored exactly, or an hnsw graph (`settings`). A saved index is a
folder of shards (`layout`), memory-mapped on loading and searched shard by shard, so a search
does not read every vector into memory.

    settings.py     the kinds, their parameters and defaults, "auto"
    exact.py        exact top-k over one shard, and the merge of shards' top-k
    approximate.py  faiss ivf-pq / hnsw per shard: build, search, write, read
    layout.py       the folder: index.json, shard-NNNNN.npy / .faiss, version 1 compatibility
    search.py       SearchIndex
"""

from vlkit.index.exact import FAISS_THRESHOLD
from vlkit.index.search import SearchIndex
from vlkit.index.settings import APPROXIMATE_THRESHOLD, KINDS

__all__ = ["APPROXIMATE_THRESHOLD", "FAISS_THRESHOLD", "KINDS", "SearchIndex"]
