"""What the user-facing models return, and the image search every embedding model does.

Shared by vlkit's own wrappers (`vlkit.api`) and transformers' (`vlkit.models.hf_models`), so it
sits on the floor below both: `Classification` (zero-shot), `Detections` (open-vocabulary
detection), `ImageSearch`, the index / search methods of any model that embeds images and
texts into one space, and `MatchReranking`, a search's hits re-ordered by image-text matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlkit.data.images import ImageError, ImageInput, require_readable, write_failures
from vlkit.index import SearchIndex

FAILURES_FILE = "failures.jsonl"  # written into an index folder when some images were skipped


@dataclass
class Classification:
    labels: list[str]
    probs: np.ndarray  # float[N, C], softmax over labels of the scaled cosine similarities
    logits: np.ndarray  # float[N, C]
    rows: list[int] | None = None  # the input position of each row (None: every input, in order)
    failures: list[ImageError] = field(default_factory=list)  # inputs skipped (strict=False)

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = list(range(len(self.probs)))

    @property
    def top(self) -> list[str]:
        return [self.labels[i] for i in self.probs.argmax(1)]


@dataclass
class Detections:
    """One image's detections, best first. boxes: float[K, 4] (x1, y1, x2, y2) pixels."""

    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray  # float[K], sigmoid of the (patch, query) logit

    def as_json(self) -> list[dict]:
        return [
            {"label": label, "score": float(score), "box": [round(float(v), 2) for v in box]}
            for box, label, score in zip(self.boxes, self.labels, self.scores)
        ]


class ImageSearch:
    """Index and search for a model with `embed_readable(images, batch_size, strict)` → (unit
    vectors float32[M, E], their input positions, the errors of the rest), `embed_images`,
    `embed_texts`, `embed_dim` (E) and `path`."""

    path: str | Path | None

    def build_index(
        self, images: Sequence[ImageInput], keys: Sequence[str], batch_size: int = 32
    ) -> SearchIndex:
        index = SearchIndex(dim=self.embed_dim, metadata={"model": str(self.path or "")})
        index.add(self.embed_images(images, batch_size), list(keys))
        return index

    def index_files(
        self,
        files: Sequence[str | Path],
        out: str | Path,
        batch_size: int = 32,
        strict: bool = False,
        kind: str = "auto",
        params: dict[str, int] | None = None,
    ) -> tuple[SearchIndex, list[ImageError]]:
        """Embeds image files into a search index saved in folder `out` (keys: the paths as given),
        and returns it with the files that could not be read. Those are skipped and listed in
        `out/failures.jsonl` (one {"path", "reason"} per line; removed when there are none);
        strict: the first one raises and nothing is written. A ValueError when none can be read.
        kind, params: the index's (`vlkit.index.settings`), checked before any image is embedded."""
        model = str(Path(self.path).resolve()) if self.path else ""
        index = SearchIndex(dim=self.embed_dim, metadata={"model": model}, kind=kind, params=params)
        embeddings, rows, failures = self.embed_readable(files, batch_size, strict)
        require_readable(len(files), failures)
        index.add(embeddings, [str(files[i]) for i in rows])
        index.save(out)
        write_failures(failures, Path(out) / FAILURES_FILE)
        return index, failures

    def search(self, index: SearchIndex, queries: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """Text → image: the k best keys of `index` per query text, with cosine scores."""
        return index.search(self.embed_texts(queries), k)

    def search_by_image(
        self, index: SearchIndex, images: Sequence[ImageInput], k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """Image → whatever the index holds (images, or texts embedded with `embed_texts`)."""
        return index.search(self.embed_images(images), k)


class MatchReranking:
    """`rerank` for a model with `match(images, texts)` → ITM logits float32[N] of the pairs
    (> 0: the model says they match): a fusion encoder (ViLT), BLIP's matching head."""

    def rerank(
        self, query: str, hits: Sequence[tuple[str, float]], k: int, weight: float = 0.0
    ) -> list[tuple[str, float]]:
        """A search's hits for `query` (keys: image paths, as `vlkit index` writes them; scores:
        the dual encoder's cosines) re-ordered by ITM logit + `weight` x the hit's score: the best
        `k`, each with that score (ALBEF / BLIP re-ranking; weight = the dual encoder's logit scale
        adds its logit, `vlkit.eval.fusion.rerank_similarity`)."""
        keys = [key for key, _ in hits]
        scores = self.match(keys, [query] * len(keys)) + weight * np.array([s for _, s in hits])
        order = np.argsort(-scores, kind="stable")[:k]
        return [(keys[i], float(scores[i])) for i in order]
