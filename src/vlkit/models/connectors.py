"""Connectors: vision features → language-model input tokens.

Every connector has `forward(features: float[B, N, Dv]) -> float[B, M, D_lm]` and
`num_tokens(n_features) -> M`, the number of LM tokens an image with N features becomes (the
caller reserves that many image placeholders in the prompt).

- `linear` (LLaVA v1) and `mlp2x_gelu` (LLaVA-1.5): one output token per feature (M = N). Their
  weights are named like transformers' `LlavaMultiModalProjector` (`linear_1`, `act`, `linear_2`),
  so an export copies them as is; the linear connector is that projector with
  `projector_hidden_act="linear"` and an identity `linear_2`.
- `merge2x2_mlp` (Qwen2-VL's patch merger; InternVL's pixel shuffle is the same regrouping): each
  2×2 block of neighbouring features is concatenated (LayerNorm first) and mapped by an MLP to one
  token (M = N / 4 on a square grid of even side), so the prompt carries a quarter of the image
  tokens and each token sees a whole small neighbourhood.
- `qformer` (BLIP-2): `connector_tokens` learned queries cross-attend to the features through
  transformers' `Blip2QFormerModel`, then a linear map to the LM width (M = connector_tokens).
- `resampler` (Flamingo's Perceiver resampler): transformers' `IdeficsPerceiverResampler` (learned
  latents attend to [features; latents], feed-forward, final LayerNorm), then a linear map to the
  LM width (M = connector_tokens).
- `vlm.connector_positions` (linear, mlp2x_gelu, merge2x2_mlp): a learned embedding per output
  token is added to the connector's tokens, so each image token carries where in the picture it
  came from as a feature of its own (the tower's position embeddings enter at its input and fade
  through contrastive training: a linear probe reads a patch's column from the tour CLIP's last
  layer at 73%). The language model then compares two objects' places by their features instead
  of through rotary offsets between token positions.
- `vlm.connector_coordinates` (linear, mlp2x_gelu, merge2x2_mlp): each grid feature gets its
  patch's place appended as fixed features (sin and cos of 8 frequencies of its column and row
  centre, 32 channels) before the connector, as CoordConv and Relation Networks tag features with
  coordinates: `benchmarks/patch_probe.py` finds the tour CLIP's last layer keeps a patch's column
  only to ~1.3 patches (0.5 at its input), and nothing learned (`connector_positions`) has to grow
  from a small start before the language model can read it. Measured on the tour's VLM it did not
  lift relation questions off their prior and cost count and reworded questions (benchmarks/
  README.md, "Why relation stays at its prior"), so no recipe turns it on.
- `gated_xattn` (Flamingo): the same resampler; its tokens are the media that
  `vlkit.models.flamingo` cross-attends to (media width = LM width), not tokens in the prompt.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel
from transformers.models.idefics.configuration_idefics import IdeficsConfig
from transformers.models.idefics.perceiver import IdeficsPerceiverResampler

from vlkit.config import VLMConfig

CONNECTORS = ("linear", "mlp2x_gelu", "merge2x2_mlp", "qformer", "resampler", "gated_xattn")


def attention_heads(width: int) -> int:
    """Head count for a width: head size ≥ 64 where possible (BLIP-2: 768 → 12), at least 1 head."""
    return max(h for h in range(1, max(1, width // 64) + 1) if width % h == 0)


class LinearConnector(nn.Module):
    """LLaVA v1: one linear map per feature."""

    def __init__(self, vision_dim: int, lm_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, lm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_1(features)  # (B, N, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return n_features


class MLPConnector(nn.Module):
    """LLaVA-1.5: Linear → GELU → Linear per feature."""

    def __init__(self, vision_dim: int, lm_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, lm_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(lm_dim, lm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))  # (B, N, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return n_features


class MergeConnector(nn.Module):
    """Qwen2-VL's PatchMerger: LayerNorm each feature, concatenate 2×2 neighbours, Linear → GELU →
    Linear. The features must be a square grid (a ViT's patch tokens, CLS removed) of even side."""

    def __init__(self, vision_dim: int, lm_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(vision_dim)
        self.linear_1 = nn.Linear(4 * vision_dim, 4 * vision_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(4 * vision_dim, lm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, d = features.shape
        side = _even_side(n)
        x = self.norm(features).reshape(b, side // 2, 2, side // 2, 2, d)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, n // 4, 4 * d)  # row-major 2×2 blocks
        return self.linear_2(self.act(self.linear_1(x)))  # (B, N / 4, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return _even_side(n_features) ** 2 // 4


class PositionedConnector(nn.Module):
    """A soft-token connector whose every output token gets a learned position embedding added."""

    def __init__(self, inner: nn.Module, n_tokens: int, lm_dim: int):
        super().__init__()
        self.inner = inner
        self.positions = nn.Parameter(torch.randn(1, n_tokens, lm_dim) * 0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.inner(features) + self.positions  # (B, M, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return self.inner.num_tokens(n_features)


COORDINATE_FREQUENCIES = 8  # per axis; sin and cos of each: 4 * 8 = 32 channels


def grid_coordinates(n_features: int, option: str = "vlm.connector_coordinates") -> torch.Tensor:
    """float[N, 32]: sin and cos of k·π·c (k = 1..8) of each feature's column and row centre c in
    (0, 1), for a square grid of N features in row-major order (`option`: what an error names)."""
    side = round(n_features**0.5)
    if side * side != n_features:
        raise ValueError(f"{option} needs a square grid of features; the vision tower gives {n_features}")
    centre = (torch.arange(side) + 0.5) / side
    row, column = torch.meshgrid(centre, centre, indexing="ij")
    k = torch.arange(1, COORDINATE_FREQUENCIES + 1) * torch.pi
    parts = []
    for axis in (column.reshape(-1, 1), row.reshape(-1, 1)):
        parts += [torch.sin(axis * k), torch.cos(axis * k)]
    return torch.cat(parts, 1)


class CoordinateConnector(nn.Module):
    """A soft-token connector whose input features get `grid_coordinates` appended."""

    def __init__(self, inner: nn.Module, n_features: int):
        super().__init__()
        self.inner = inner  # built for vision_dim + 4 * COORDINATE_FREQUENCIES input channels
        self.register_buffer("coordinates", grid_coordinates(n_features), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != len(self.coordinates):
            raise ValueError(
                f"vlm.connector_coordinates: built for {len(self.coordinates)} grid features, given "
                f"{features.shape[1]}"
            )
        where = self.coordinates.to(features.dtype).expand(features.shape[0], -1, -1)
        return self.inner(torch.cat([features, where], -1))  # (B, M, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return self.inner.num_tokens(n_features)


def _even_side(n: int) -> int:
    side = round(n**0.5)
    if side * side != n or side % 2:
        raise ValueError(
            f"vlm.connector=merge2x2_mlp needs a square grid of even side; the vision tower gives {n} "
            "features (use image_size / patch_size even, or another connector)"
        )
    return side


class QFormerConnector(nn.Module):
    """BLIP-2: learned queries read the features through a Q-Former (cross-attention in every layer)."""

    def __init__(self, vision_dim: int, lm_dim: int, n_queries: int, n_layers: int):
        super().__init__()
        config = Blip2QFormerConfig(
            hidden_size=lm_dim,
            num_hidden_layers=n_layers,
            num_attention_heads=attention_heads(lm_dim),
            intermediate_size=4 * lm_dim,
            encoder_hidden_size=vision_dim,
            cross_attention_frequency=1,
            hidden_dropout_prob=0.0,  # like the other connectors: regularise elsewhere if needed
            attention_probs_dropout_prob=0.0,
        )
        self.query_tokens = nn.Parameter(torch.randn(1, n_queries, lm_dim) * config.initializer_range)
        self.qformer = Blip2QFormerModel(config)
        self.proj = nn.Linear(lm_dim, lm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(features.shape[0], -1, -1)  # (B, M, D_lm)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=features)
        return self.proj(out.last_hidden_state)  # (B, M, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return self.query_tokens.shape[1]


class ResamplerConnector(nn.Module):
    """Flamingo: a Perceiver resampler at the vision width, then a linear map to the LM width."""

    def __init__(self, vision_dim: int, lm_dim: int, n_latents: int, n_layers: int):
        super().__init__()
        heads = attention_heads(vision_dim)
        # IdeficsPerceiverResampler reads only these two fields of its config.
        config = IdeficsConfig(
            vision_config={"embed_dim": vision_dim}, perceiver_config={"qk_layer_norms_perceiver": False}
        )
        self.resampler = IdeficsPerceiverResampler(
            config, vision_dim, n_layers, heads, vision_dim // heads, n_latents
        )
        self.proj = nn.Linear(vision_dim, lm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        latents = self.resampler(features)  # (B, M, Dv)
        return self.proj(latents)  # (B, M, D_lm)

    def num_tokens(self, n_features: int) -> int:
        return self.resampler.n_latents


SOFT_TOKEN = {"linear": LinearConnector, "mlp2x_gelu": MLPConnector, "merge2x2_mlp": MergeConnector}


def build_connector(cfg: VLMConfig, vision_dim: int, lm_dim: int, n_features: int) -> nn.Module:
    """The connector named by `cfg.connector` (sizes from `cfg.connector_tokens/_layers`) for a
    tower giving `n_features` features of width `vision_dim`."""
    kind = cfg.connector
    for option in ("connector_positions", "connector_coordinates"):
        if getattr(cfg, option) and kind not in SOFT_TOKEN:
            raise ValueError(f"vlm.{option} applies to the {', '.join(SOFT_TOKEN)} connectors, not {kind!r}")
    if kind in SOFT_TOKEN:
        extra = 4 * COORDINATE_FREQUENCIES if cfg.connector_coordinates else 0
        connector = SOFT_TOKEN[kind](vision_dim + extra, lm_dim)
        if cfg.connector_coordinates:
            connector = CoordinateConnector(connector, n_features)
        if not cfg.connector_positions:
            return connector
        return PositionedConnector(connector, connector.num_tokens(n_features), lm_dim)
    if kind in ("qformer", "resampler", "gated_xattn"):
        if cfg.connector_tokens < 1 or cfg.connector_layers < 1:
            raise ValueError(
                f"vlm.connector={kind} needs connector_tokens >= 1 and connector_layers >= 1, got "
                f"{cfg.connector_tokens} and {cfg.connector_layers}"
            )
        cls = QFormerConnector if kind == "qformer" else ResamplerConnector
        return cls(vision_dim, lm_dim, cfg.connector_tokens, cfg.connector_layers)
    raise ValueError(f"unknown vlm.connector {kind!r}; valid: {', '.join(CONNECTORS)}")
