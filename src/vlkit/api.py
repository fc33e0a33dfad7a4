"""Python API for trained dual encoders: `vlkit.load(path)` → embed, classify, index, search.

Images may be file paths, PIL images or uint8 arrays [H, W, 3]. A file that cannot be read is
an `ImageError` naming it (inference never skips silently). Label sets are embedded once and
cached, and images are embedded in batches: the two things that make zero-shot classification
fast compared with calling a pipeline per image. Batches of 32 measured faster than 128 on the
2-core CPUs here (benchmarks/zero_shot_throughput.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlkit.config import Config
from vlkit.data.images import ImageInput, as_array
from vlkit.index import SearchIndex
from vlkit.models.build import load_model
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.folders import resolve_model_dir
from vlkit.models.towers import tokenize

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass
class Classification:
    labels: list[str]
    probs: np.ndarray  # float[N, C], softmax over labels of the scaled cosine similarities
    logits: np.ndarray  # float[N, C]

    @property
    def top(self) -> list[str]:
        return [self.labels[i] for i in self.probs.argmax(1)]


class ContrastiveModel:
    """A loaded dual encoder with inference helpers (see `load`)."""

    def __init__(self, model: DualEncoder, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path
        self._label_cache: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ embeddings
    @torch.inference_mode()
    def embed_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """→ unit vectors float32[N, E]."""
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [as_array(im) for im in images[start : start + batch_size]]
            out.append(self.model.encode_images(self.model.image_tower.preprocess(chunk)))
        return torch.cat(out).float().numpy() if out else np.zeros((0, self.cfg.model.embed_dim), np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """→ unit vectors float32[N, E]."""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = tokenize(self.model.text_tower, list(texts[start : start + batch_size]))
            out.append(self.model.encode_texts(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(out).float().numpy() if out else np.zeros((0, self.cfg.model.embed_dim), np.float32)

    def label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> np.ndarray:
        """Per label, the mean of its normalised template embeddings, renormalised (CLIP's ensembling)."""
        key = (tuple(labels), tuple(templates))
        if key not in self._label_cache:
            for t in templates:
                if "{}" not in t:
                    raise ValueError(f"template {t!r} has no '{{}}' where the label goes")
            texts = [t.format(label) for label in labels for t in templates]
            emb = torch.from_numpy(self.embed_texts(texts)).view(len(labels), len(templates), -1)
            self._label_cache[key] = torch.nn.functional.normalize(emb.mean(1), dim=-1)
        return self._label_cache[key].numpy()

    # ------------------------------------------------------------------ tasks
    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 32,
    ) -> Classification:
        if not labels:
            raise ValueError("classify needs at least one label")
        label_emb = self.label_embeddings(labels, templates)  # (C, E)
        image_emb = self.embed_images(images, batch_size)  # (N, E)
        logits = torch.from_numpy(image_emb @ label_emb.T) * self.model.scale().item()
        return Classification(list(labels), logits.softmax(-1).numpy(), logits.numpy())

    def build_index(
        self, images: Sequence[ImageInput], keys: Sequence[str], batch_size: int = 32
    ) -> SearchIndex:
        index = SearchIndex(dim=self.cfg.model.embed_dim, metadata={"model": str(self.path or "")})
        index.add(self.embed_images(images, batch_size), list(keys))
        return index

    def search(self, index: SearchIndex, queries: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """Text → image: the k best keys of `index` per query text, with cosine scores."""
        return index.search(self.embed_texts(queries), k)

    def search_by_image(
        self, index: SearchIndex, images: Sequence[ImageInput], k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """Image → whatever the index holds (images, or texts embedded with `embed_texts`)."""
        return index.search(self.embed_images(images), k)


def load(path: str | Path):
    """Loads a trained vlkit model from a model/checkpoint folder or a run folder: a
    `ContrastiveModel` (embed, classify, search) or a `vlkit.generation.GenerativeModel`
    (caption, answer, chat), by the model's kind."""
    folder = resolve_model_dir(path)
    model, cfg = load_model(folder)
    if cfg.kind == "generative":
        from vlkit.generation import GenerativeModel

        return GenerativeModel(model, cfg, folder)
    return ContrastiveModel(model, cfg, folder)
