"""An open-vocabulary detector (OWL-ViT, Minderer et al. 2022) on a vlkit dual encoder.

The image tower's pooling is dropped: every output patch token gets a box (an MLP → cx, cy, w,
h, plus the box bias of its patch position, through a sigmoid) and a class embedding, whose dot
product with a text query's embedding, shifted and scaled per token (OWL-ViT's logit shift and
scale), is that token's logit for the query. Queries come from the dual encoder's text tower,
so any phrase is a class. The folder is the dual encoder's plus the heads' weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vlkit.config import Config
from vlkit.models.boxes import box_bias, grid_side
from vlkit.models.build_dual import build_dual_encoder, save_dual_files
from vlkit.models.dual_encoder import DualEncoder

# what must agree between the detector's `model` section and the dual encoder it starts from
TOWER_FIELDS = (
    "image_encoder", "image_size", "patch_size", "vision_stem", "vision_width", "vision_layers",
    "vision_heads", "text_encoder", "embed_dim", "text_width", "text_layers", "text_heads",
    "vocab_size", "max_text_length",
)  # fmt: skip


class OpenVocabDetector(nn.Module):
    """clip: the dual encoder (towers and text projection); heads on its patch tokens."""

    def __init__(self, clip: DualEncoder):
        super().__init__()
        self.clip = clip
        d, e = clip.image_tower.out_dim, clip.cfg.embed_dim
        self.token_norm = nn.LayerNorm(d)
        self.box_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 4))
        self.class_head = nn.Linear(d, e)
        self.logit_shift = nn.Linear(d, 1)
        self.logit_scale = nn.Linear(d, 1)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → normalised patch tokens float[B, P, D]."""
        return self.token_norm(self.clip.image_tower.grid(pixel_values))

    def boxes(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: float[B, P, D] → boxes float[B, P, 4] (cx, cy, w, h) in [0, 1]."""
        bias = box_bias(grid_side(tokens.shape[1])).to(tokens)  # (P, 4)
        return torch.sigmoid(self.box_head(tokens) + bias)

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: int64[N, T] → unit query embeddings float[N, E]."""
        return self.clip.encode_texts(input_ids, attention_mask)

    def class_logits(self, tokens: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """tokens: float[B, P, D]; queries: unit float[B, Q, E] (or [Q, E], shared) → float[B, P, Q]."""
        embedded = F.normalize(self.class_head(tokens), dim=-1)  # (B, P, E)
        if queries.ndim == 2:
            queries = queries.expand(tokens.shape[0], -1, -1)
        sims = torch.einsum("bpe,bqe->bpq", embedded, queries)
        scale = F.elu(self.logit_scale(tokens)) + 1  # (B, P, 1), positive
        return (sims + self.logit_shift(tokens)) * scale

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids: int64[B * Q, T], Q queries per image in turn → (logits float[B, P, Q],
        boxes float[B, P, 4])."""
        tokens = self.image_tokens(pixel_values)
        queries = self.encode_queries(input_ids, attention_mask)
        queries = queries.view(tokens.shape[0], -1, queries.shape[-1])  # (B, Q, E)
        return self.class_logits(tokens, queries), self.boxes(tokens)


def build_detector(
    cfg: Config,
    texts: Iterable[str] | None = None,
    saved: Path | None = None,
    clip: DualEncoder | None = None,
) -> OpenVocabDetector:
    """A new detector on a new dual encoder, or on `clip` (the one `detector.clip_init` names,
    loaded by `clip_parts`); with `saved`, a saved folder's structure."""
    if clip is None:
        clip = build_dual_encoder(cfg, texts, saved)
    torch.manual_seed(cfg.train.seed + 1)  # the heads: the same whether or not the towers were loaded
    return OpenVocabDetector(clip)


def save_detector_files(model: OpenVocabDetector, cfg: Config, folder: Path) -> None:
    """The dual encoder's files (config, towers, tokenizer); every weight is stored."""
    save_dual_files(model.clip, cfg, folder)


def clip_parts(cfg: Config, load: Callable[[str], tuple[nn.Module, Config]]) -> dict:
    """{"clip": the dual encoder `detector.clip_init` names}, checked to have the towers the
    detector's `model` section describes; {} when it starts from scratch."""
    return tower_parts(cfg, cfg.detector.clip_init, "detector", load)


def tower_parts(
    cfg: Config, clip_init: str, section: str, load: Callable[[str], tuple[nn.Module, Config]]
) -> dict:
    """{"clip": the contrastive model at `clip_init` (`<section>.clip_init`)}, checked to have the
    towers `cfg.model` describes; {} when `clip_init` is empty (start from scratch)."""
    if not clip_init:
        return {}
    clip, clip_cfg = load(clip_init)
    if clip_cfg.kind != "contrastive":
        raise ValueError(
            f"{section}.clip_init: {clip_init} is a {clip_cfg.kind} model, not a contrastive one"
        )
    for name in TOWER_FIELDS:
        mine, theirs = getattr(cfg.model, name), getattr(clip_cfg.model, name)
        if mine != theirs:
            raise ValueError(
                f"model.{name}: {mine!r}, but {section}.clip_init ({clip_init}) has {theirs!r}; "
                f"the {section}'s model section must describe the towers it starts from"
            )
    return {"clip": clip}
