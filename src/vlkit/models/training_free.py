"""Training-free VLMs: two frozen pretrained unimodal encoders joined without any training.

    asif    ASIF (Norelli et al. 2023, "ASIF: coupled data turns unimodal models to multimodal
            without training"): an image is described by its cosine similarities to A anchor
            images, a text by its similarities to the A anchors' captions; both live in the same
            A-dimensional space because anchor i is one image-caption pair. Each description keeps
            its top-k similarities (clamped at 0), raised to the power p, unit-normalised.
    conse   ConSE (Norouzi et al. 2014, "Zero-shot learning by convex combination of semantic
            embeddings"): an ImageNet classifier's top-T class probabilities weigh the text
            embeddings of those class names; a text is its own text embedding.

Both expose the dual encoder's interface (`encode_images`, `encode_texts`, `scale`,
`image_tower`, `text_tower`, `embed_dim`), so `vlkit.api.ContrastiveModel` and everything above it
(classify, index / search, the harness) use them unchanged. The towers are the registry's
pretrained encoders, never stored: a model folder holds the config and the small tensors
(anchors' features, class-name embeddings); loading rebuilds the towers by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlkit.config import TrainingFreeConfig
from vlkit.models.towers import tokenize


def relative(features: torch.Tensor, anchors: torch.Tensor, k: int, p: float) -> torch.Tensor:
    """ASIF's relative representation. features: float[N, D] and anchors: float[A, D], unit rows
    → float[N, A] unit rows: the cosines to the anchors, all but the k largest set to 0, the kept
    ones clamped at 0 (a negative cosine raised to an even power would count as similar) and raised
    to the power p."""
    sims = features @ anchors.T  # (N, A)
    top = sims.topk(min(k, anchors.shape[0]), dim=-1)
    sparse = torch.zeros_like(sims).scatter_(-1, top.indices, top.values.clamp(min=0) ** p)
    return F.normalize(sparse, dim=-1)


def convex_combination(probs: torch.Tensor, class_texts: torch.Tensor, top: int) -> torch.Tensor:
    """ConSE's image embedding. probs: float[N, C] class probabilities, class_texts: float[C, D]
    → float[N, D] unit rows: the class embeddings of the top-T classes weighted by their
    probabilities (renormalised to sum to 1), then unit-normalised."""
    weights, classes = probs.topk(min(top, probs.shape[-1]), dim=-1)  # (N, T)
    weights = weights / weights.sum(-1, keepdim=True)
    mixed = (weights.unsqueeze(-1) * class_texts[classes]).sum(1)  # (N, D)
    return F.normalize(mixed, dim=-1)


class TrainingFree(nn.Module):
    """What both methods share: the frozen towers, unit features, the fixed logit scale."""

    def __init__(self, cfg: TrainingFreeConfig, image_tower: nn.Module, text_tower: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.image_tower = image_tower.eval().requires_grad_(False)
        self.text_tower = text_tower.eval().requires_grad_(False)
        self.register_buffer("logit_scale", torch.tensor(float(cfg.scale)))

    def train(self, mode: bool = True) -> TrainingFree:
        super().train(mode)
        self.image_tower.eval()  # frozen: batch norm statistics and dropout never change
        self.text_tower.eval()
        return self

    def scale(self) -> torch.Tensor:
        return self.logit_scale

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → unit embeddings float[B, embed_dim]."""
        return self.encode_image_features(self.tower_features(pixel_values))

    def encode_image_features(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tower_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → the image tower's pooled features float[B, D_img]."""
        return self.image_tower(pixel_values)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """→ the text tower's pooled features float[B, D_txt]."""
        return self.text_tower(input_ids, attention_mask)


class ASIF(TrainingFree):
    """Buffers: anchor_images float[A, D_img] and anchor_texts float[A, D_txt] (centred, unit
    rows), image_mean / text_mean (the anchors' mean features; zeros when `center` is off)."""

    def __init__(self, cfg: TrainingFreeConfig, image_tower: nn.Module, text_tower: nn.Module):
        super().__init__(cfg, image_tower, text_tower)
        a = cfg.anchors
        self.register_buffer("anchor_images", torch.zeros(a, image_tower.out_dim))
        self.register_buffer("anchor_texts", torch.zeros(a, text_tower.out_dim))
        self.register_buffer("image_mean", torch.zeros(image_tower.out_dim))
        self.register_buffer("text_mean", torch.zeros(text_tower.out_dim))
        self.embed_dim = a

    def set_anchors(self, image_features: torch.Tensor, text_features: torch.Tensor) -> None:
        """Raw tower features of the A anchor pairs (row i: an image and its caption)."""
        if image_features.shape != self.anchor_images.shape or text_features.shape != self.anchor_texts.shape:
            raise ValueError(
                f"anchors: expected {tuple(self.anchor_images.shape)} image and "
                f"{tuple(self.anchor_texts.shape)} text features, got {tuple(image_features.shape)} "
                f"and {tuple(text_features.shape)}"
            )
        center = self.cfg.center
        self.image_mean.copy_(image_features.mean(0) if center else 0)
        self.text_mean.copy_(text_features.mean(0) if center else 0)
        self.anchor_images.copy_(F.normalize(image_features - self.image_mean, dim=-1))
        self.anchor_texts.copy_(F.normalize(text_features - self.text_mean, dim=-1))

    def encode_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """The image tower's features float[B, D_img] → float[B, A] unit relative representations."""
        feats = F.normalize(features - self.image_mean, dim=-1)
        return relative(feats, self.anchor_images, self.cfg.k, self.cfg.p)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """→ float[B, A] unit relative representations."""
        feats = F.normalize(self.text_features(input_ids, attention_mask) - self.text_mean, dim=-1)
        return relative(feats, self.anchor_texts, self.cfg.k, self.cfg.p)


class ConSE(TrainingFree):
    """Buffer: class_texts float[C, D_txt], the unit text embeddings of the classifier's C class
    names (`set_classes`). The image tower must have `class_logits` (an ImageNet classifier)."""

    def __init__(self, cfg: TrainingFreeConfig, image_tower: nn.Module, text_tower: nn.Module):
        if not hasattr(image_tower, "class_head"):
            raise ValueError(
                f"model.method=conse needs an image classifier (efficientnet-lite0); "
                f"{cfg.image_encoder!r} has no class head"
            )
        super().__init__(cfg, image_tower, text_tower)
        self.register_buffer("class_texts", torch.zeros(image_tower.num_classes, text_tower.out_dim))
        self.embed_dim = text_tower.out_dim

    def set_classes(self, names: Sequence[str]) -> None:
        """Embeds the classifier's class names, in its label order."""
        if len(names) != self.class_texts.shape[0]:
            raise ValueError(
                f"conse: {len(names)} class names for a {self.class_texts.shape[0]}-class classifier"
            )
        with torch.inference_mode():
            self.class_texts.copy_(F.normalize(embed_text_features(self, list(names)), dim=-1))

    def encode_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """The image tower's pooled features float[B, D_img] → float[B, D_txt] unit vectors in
        the text encoder's space."""
        probs = self.image_tower.class_head(features).softmax(-1)  # (B, C)
        return convex_combination(probs, self.class_texts, self.cfg.top)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_features(input_ids, attention_mask), dim=-1)


def embed_text_features(model: TrainingFree, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Raw text-tower features float[N, D_txt] of `texts`."""
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenize(model.text_tower, texts[start : start + batch_size])
        out.append(model.text_features(enc["input_ids"], enc["attention_mask"]))
    return torch.cat(out)


def embed_image_features(
    model: TrainingFree, images: Sequence[np.ndarray], batch_size: int = 32, progress: Callable | None = None
) -> torch.Tensor:
    """Raw image-tower features float[N, D_img] of uint8[H, W, 3] arrays."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = list(images[start : start + batch_size])
        out.append(model.tower_features(model.image_tower.preprocess(batch)))
        if progress:
            progress(start + len(batch))
    return torch.cat(out)


# model.method → its module
METHODS: dict[str, type[TrainingFree]] = {"asif": ASIF, "conse": ConSE}
