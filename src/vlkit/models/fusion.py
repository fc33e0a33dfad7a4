"""A fusion encoder (ViLT, Kim et al. 2021): one transformer over word tokens and image patches.

The transformer is transformers' `ViltModel` (text embeddings + patch embeddings, a modality
embedding on each, one encoder, a tanh pooler on the first token); on it sit the two pretraining
heads: image-text matching (`rank_output`: one logit from the pooled state, the head of
transformers' `ViltForImageAndTextRetrieval`, so the export is that class with no other change)
and masked language modelling (`mlm_score`, transformers' `ViltMLMHead`). FLAVA-style models
(`model.contrastive_weight` > 0) also project unimodal encodings (the same encoder over the image
alone, over the text alone) into a shared space for a contrastive loss.

The image reaches the transformer as patch tokens made by `model.image_embedder`: ViLT's own
linear map of each 8-px patch (`patch`), a 3×3 convolutional stem (`conv`, `conv_stem.py`, as the
CLIP's), or a trained vlkit CLIP's image tower (`clip`, `model.vision_init`; `CLIPPatchTokens`).
Either replaces `ViltModel`'s patch projection and nothing else: ViLT's position and modality
embeddings, its encoder and heads are unchanged. Why: a linear map of raw 8-px patches learned
colour and not shape, as the CLIP's patch stem did (benchmarks/README.md, "fusion.py").

Fine-tuned for classification (`model.objective: classify`, from a pre-trained run named by
`model.init_from`), it also holds `classifier`: ViLT's Hateful Memes / SNLI-VE head (Linear 2D,
LayerNorm, GELU, Linear) over the pooled [CLS], here one logit (binary: > 0 is label 1).

A folder holds `config.yaml`, the weights, `vilt/` (the ViltConfig and the tokenizer) and, for
`image_embedder: clip`, `image_tower/` (the CLIP tower's config; its weights are stored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerFast, ViltConfig, ViltModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.vilt.modeling_vilt import ViltMLMHead

from vlkit.config import Config, FusionConfig, VisionConfig, check_continues, save_config
from vlkit.models import tokenizer as tok
from vlkit.models.connectors import grid_coordinates
from vlkit.models.conv_stem import ConvStem
from vlkit.models.grounding import GroundingHead
from vlkit.models.preprocess import ImagePreprocess
from vlkit.models.registry import build_image_tower, save_tower_files
from vlkit.models.towers import CLIP_MEAN, CLIP_STD, CLIPVisionTower

FOLDER = "vilt"  # the ViltConfig and the tokenizer, inside a model folder
TOWER_FOLDER = "image_tower"  # image_embedder clip: the CLIP tower's config
EMBEDDERS = ("patch", "conv", "clip")
OBJECTIVES = ("pretrain", "classify")  # `model.objective`
# what a pre-trained run must share with the config that starts from it (`model.init_from`)
STRUCTURE = (
    "image_size",
    "patch_size",
    "width",
    "layers",
    "heads",
    "vocab_size",
    "max_text_length",
    "embed_dim",
)


def vilt_config(m: FusionConfig, vocab_size: int) -> ViltConfig:
    """The transformers config of a from-scratch fusion encoder (no dropout: the data is endless)."""
    return ViltConfig(
        vocab_size=vocab_size,
        hidden_size=m.width,
        num_hidden_layers=m.layers,
        num_attention_heads=m.heads,
        intermediate_size=4 * m.width,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        image_size=m.image_size,
        patch_size=m.patch_size,
        max_position_embeddings=m.max_text_length,
        max_image_length=(m.image_size // m.patch_size) ** 2,  # every patch, none sampled away
        pad_token_id=tok.PAD_ID,
    )


class CLIPPatchTokens(nn.Module):
    """A trained CLIP's image tower as ViLT's patch projection: float[B, 3, H, W] → the tower's
    per-patch output tokens, layer-normed and projected into the fusion width, as the grid
    float[B, D, H/P, W/P] a patch convolution gives (what `ViltEmbeddings.visual_embed` reads)."""

    def __init__(self, tower: CLIPVisionTower, width: int, frozen: bool, coordinates: bool = False):
        super().__init__()
        self.tower = tower
        self.patch_size = tower.model.config.patch_size
        self.norm = nn.LayerNorm(tower.out_dim)  # CLIP's own post-layernorm only ever saw the CLS
        side = tower.model.config.image_size // self.patch_size
        # `model.patch_coordinates`: each patch's place as fixed features beside its token (the
        # VLM connector's `grid_coordinates`), since the tower's last layer has mostly lost it
        where = grid_coordinates(side * side, "model.patch_coordinates") if coordinates else torch.zeros(0, 0)
        self.register_buffer("coordinates", where, persistent=False)
        self.proj = nn.Linear(tower.out_dim + where.shape[1], width)
        self.frozen = frozen
        if frozen:
            tower.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:
        """`visual_embed` unpacks `projection.weight.shape` as a conv kernel's and casts by its dtype."""
        return self.proj.weight[:, :, None, None]

    def train(self, mode: bool = True) -> CLIPPatchTokens:
        super().train(mode)
        if self.frozen:  # a frozen tower keeps its conv stem's batch-norm statistics
            self.tower.eval()
        return self

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """float[B, 3, H, W] → float[B, P, D]: one fusion-width token per patch, row by row."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            grid = self.tower.grid(pixel_values)  # (B, P, D_clip), the CLS token left out
        x = self.norm(grid)
        if len(self.coordinates):
            x = torch.cat([x, self.coordinates.to(x.dtype).expand(x.shape[0], -1, -1)], -1)
        return self.proj(x)  # (B, P, D)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixel_values.shape
        x = self.tokens(pixel_values)  # (B, P, D)
        return x.transpose(1, 2).reshape(b, -1, h // self.patch_size, w // self.patch_size)


def check_embedder(m: FusionConfig) -> None:
    """`model.image_embedder` is one of EMBEDDERS, and `vision_init` / `freeze_vision` go with clip."""
    if m.image_embedder not in EMBEDDERS:
        raise ValueError(f"model.image_embedder: {m.image_embedder!r}; valid: {', '.join(EMBEDDERS)}")
    if m.image_embedder == "clip" and not m.vision_init:
        raise ValueError(
            "model.image_embedder: clip starts from a trained CLIP's image tower; set model.vision_init "
            "to a contrastive run or model folder (e.g. runs/tour)"
        )
    if m.image_embedder != "clip" and (m.vision_init or m.freeze_vision or m.patch_coordinates):
        raise ValueError(
            f"model.vision_init / freeze_vision / patch_coordinates are for model.image_embedder: clip; "
            f"this one is {m.image_embedder!r} (vision_init={m.vision_init!r}, freeze_vision="
            f"{m.freeze_vision}, patch_coordinates={m.patch_coordinates})"
        )


def clip_tower(m: FusionConfig, tower: nn.Module, where: str) -> CLIPVisionTower:
    """`tower` (the image tower of the CLIP at `where`), checked to give `m`'s patch grid."""
    if not isinstance(tower, CLIPVisionTower):
        raise ValueError(
            f"model.vision_init: {where} has a {type(tower).__name__} image tower; image_embedder clip "
            "reads a CLIP vision transformer's patch tokens (vit-tiny or a transformers CLIP)"
        )
    c = tower.model.config
    if (c.image_size, c.patch_size) != (m.image_size, m.patch_size):
        raise ValueError(
            f"model.image_size / patch_size: {m.image_size} / {m.patch_size}, but the image tower of "
            f"{where} takes {c.image_size}-px images in {c.patch_size}-px patches; set them to match"
        )
    return tower


def image_embedder(m: FusionConfig, clip: nn.Module | None, saved: Path | None) -> nn.Module | None:
    """The module that replaces ViLT's patch projection; None: keep ViLT's own (`patch`)."""
    if m.image_embedder == "conv":
        return ConvStem(m.width, m.patch_size)
    if m.image_embedder != "clip":
        return None
    if saved is not None:  # the saved tower's structure (its stem included); weights load later
        tower = clip_tower(m, build_image_tower("vit-tiny", VisionConfig(), saved / TOWER_FOLDER), str(saved))
    elif clip is not None:
        tower = clip_tower(m, clip.image_tower, m.vision_init)
    else:
        raise ValueError("model.image_embedder: clip: pass the CLIP (`clip_parts` loads model.vision_init)")
    return CLIPPatchTokens(tower, m.width, m.freeze_vision, m.patch_coordinates)


class FusionOutput(NamedTuple):
    """What `FusionEncoder.forward` gives for pre-training (shapes there)."""

    itm: torch.Tensor
    mlm: torch.Tensor
    words: torch.Tensor | None
    grounding: tuple[torch.Tensor, torch.Tensor] | None  # the grounding head's (loss, accuracy)


class FusionEncoder(nn.Module):
    """vilt: the single-stream transformer; rank_output: the ITM head; mlm_score: the MLM head;
    image_projection / text_projection / logit_scale: the unimodal contrastive heads (FLAVA);
    classifier: the fine-tuned classification head (`objective: classify`; else None)."""

    def __init__(self, cfg: FusionConfig, vilt: ViltModel, tokenizer: PreTrainedTokenizerFast):
        super().__init__()
        self.cfg = cfg
        self.vilt = vilt
        self.rank_output = nn.Linear(vilt.config.hidden_size, 1)
        self.mlm_score = ViltMLMHead(vilt.config)
        d = vilt.config.hidden_size
        self.image_projection = nn.Linear(d, cfg.embed_dim, bias=False)
        self.text_projection = nn.Linear(d, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        # word-level matching (`token_itm_weight` > 0): one logit per text token
        self.token_match = nn.Linear(d, 1) if cfg.token_itm_weight > 0 else None
        # `grounding_weight` > 0: which cell each named object lies in, from its words (training only)
        self.grounding_head = GroundingHead(d) if cfg.grounding_weight > 0 else None
        self.classifier = None
        if cfg.objective == "classify":  # ViltForQuestionAnswering's head, one logit
            self.classifier = nn.Sequential(
                nn.Linear(d, 2 * d), nn.LayerNorm(2 * d), nn.GELU(), nn.Linear(2 * d, 1)
            )
        self.tokenizer = tokenizer  # what `towers.tokenize(model, texts)` reads, as a text tower's
        self.max_length = cfg.max_text_length
        self.preprocess = ImagePreprocess(cfg.image_size, CLIP_MEAN, CLIP_STD)

    def image_embeddings(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values: float[B, 3, H, W] → ViLT's image embeddings float[B, 1 + P, D] (an image
        CLS, then the embedder's patch tokens, position embeddings added) and their mask int64[B, 1 + P]."""
        b, _, h, w = pixel_values.shape
        ones = torch.ones(b, h, w, dtype=torch.long, device=pixel_values.device)
        embeds, mask, _ = self.vilt.embeddings.visual_embed(
            pixel_values, ones, max_image_length=self.vilt.config.max_image_length
        )
        return embeds, mask

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        classify: bool = False,
        grounding_positions: torch.Tensor | None = None,
        grounding_labels: torch.Tensor | None = None,
    ) -> FusionOutput | torch.Tensor:
        """pixel_values: float[B, 3, H, W]; input_ids, attention_mask: int64[kB, T] (text row r goes
        with image r % B: each image is embedded once for its k texts) → FusionOutput (ITM logits
        float[kB], MLM logits over the text tokens float[kB, T, V], word-level matching logits
        float[kB, T] or None without that head, and with grounding_positions / _labels int64[B, K]
        of the first B rows, the grounding head's (loss, accuracy)); with `classify` (pair b:
        image b, text b), the classifier's logits float[B] (through forward, so DDP synchronises
        its gradients)."""
        if classify:
            return self.classify(pixel_values, input_ids, attention_mask)
        k = input_ids.shape[0] // pixel_values.shape[0]
        embeds, mask = self.image_embeddings(pixel_values)  # (B, 1 + P, D), (B, 1 + P)
        out = self.vilt(
            input_ids=input_ids, attention_mask=attention_mask, image_embeds=embeds.repeat(k, 1, 1),
            pixel_mask=mask.repeat(k, 1),
        )  # fmt: skip
        text_states = out.last_hidden_state[:, : input_ids.shape[1]]  # (B, T, D): the text comes first
        words = None if self.token_match is None else self.token_match(text_states)[..., 0]  # (kB, T)
        grounding = None
        if self.grounding_head is not None and grounding_labels is not None:
            b = pixel_values.shape[0]
            grounding = self.grounding_head(text_states[:b], grounding_positions, grounding_labels)
        return FusionOutput(
            self.rank_output(out.pooler_output)[:, 0], self.mlm_score(text_states), words, grounding
        )

    def match(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """ITM logits float[B] of the pairs (image b, text b); > 0: the model says they match."""
        out = self.vilt(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return self.rank_output(out.pooler_output)[:, 0]

    def classify(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The classifier's logits float[B] of the pairs (image b, text b); > 0: label 1."""
        if self.classifier is None:
            raise ValueError(
                "this fusion model has no classification head (model.objective: pretrain); fine-tune "
                "one with model.objective: classify and model.init_from: this run (recipes/vilt-memes.yaml)"
            )
        out = self.vilt(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return self.classifier(out.pooler_output)[:, 0]  # (B,): the pooled [CLS] → one logit

    # ------------------------------------------------------------ unimodal (FLAVA's contrastive loss)
    def _encode_alone(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The shared encoder over one modality's embeddings float[B, N, D] → first token float[B, D]."""
        attention = create_bidirectional_mask(
            config=self.vilt.config, inputs_embeds=embeddings, attention_mask=mask
        )
        states = self.vilt.encoder(embeddings, attention_mask=attention).last_hidden_state
        return self.vilt.layernorm(states)[:, 0]

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → unit vectors float[B, E] (the image alone)."""
        patches, mask = self.image_embeddings(pixel_values)
        patches = patches + self.vilt.embeddings.token_type_embeddings(torch.ones_like(mask))  # (B, 1 + P, D)
        return F.normalize(self.image_projection(self._encode_alone(patches, mask)), dim=-1)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: int64[B, T] → unit vectors float[B, E] (the text alone)."""
        e = self.vilt.embeddings
        words = e.text_embeddings(input_ids=input_ids) + e.token_type_embeddings(torch.zeros_like(input_ids))
        return F.normalize(self.text_projection(self._encode_alone(words, attention_mask)), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)


def build_fusion(
    cfg: Config, texts: Iterable[str] | None = None, saved: Path | None = None, **parts: nn.Module
) -> FusionEncoder:
    """A new fusion encoder (its tokenizer trained on `texts`, weights initialised with
    `cfg.train.seed`; with `image_embedder: clip`, the `clip` part's image tower, loaded by
    `fusion_parts`); with `saved`, a saved folder's structure; with the `fusion` part (a pre-trained
    FusionEncoder, `model.init_from`), that model's tokenizer, encoder and heads, and a new
    classifier when `model.objective` is classify."""
    m = check_fusion_config(cfg.model)
    check_embedder(m)
    if set(parts) - {"fusion", "clip"}:
        raise ValueError(
            f"a fusion encoder starts from a fusion model or a CLIP only; got {', '.join(parts)}"
        )
    if "fusion" in parts:
        return from_pretrained(cfg, parts["fusion"])
    if saved is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(saved / FOLDER)
        config = ViltConfig.from_pretrained(saved / FOLDER)
    else:
        if texts is None:
            raise ValueError("a fusion encoder trains its tokenizer on the data: pass the training captions")
        tokenizer = tok.train_tokenizer(texts, m.vocab_size, m.max_text_length)
        config = vilt_config(m, len(tokenizer))
    torch.manual_seed(cfg.train.seed)
    vilt = ViltModel(config)
    embedder = image_embedder(m, parts.get("clip"), saved)
    if embedder is not None:
        vilt.embeddings.patch_embeddings.projection = embedder
    return FusionEncoder(m, vilt, tokenizer)


def check_fusion_config(m: FusionConfig) -> FusionConfig:
    """Raises ValueError naming the field, its value and what is valid."""
    shares = m.negative_shares
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(
            f"model.negative_shares: {shares!r}; give 3 shares >= 0, not all 0 (colours swapped, a shape "
            "changed, another image's caption)"
        )
    if m.objective not in OBJECTIVES:
        raise ValueError(f"model.objective: {m.objective!r}; valid: {', '.join(OBJECTIVES)}")
    if m.mlm_group_probability > 0 and not any(m.mlm_word_groups):
        raise ValueError(
            f"model.mlm_group_probability: {m.mlm_group_probability} masks whole word groups, but "
            "model.mlm_word_groups is empty; list them (e.g. [[red, green], [circle, square]])"
        )
    return m


def from_pretrained(cfg: Config, base: FusionEncoder) -> FusionEncoder:
    """`base`'s encoder, tokenizer and heads under `cfg.model` (a classifier, new, initialised with
    `cfg.train.seed`, when it classifies)."""
    torch.manual_seed(cfg.train.seed)
    model = FusionEncoder(cfg.model, base.vilt, base.tokenizer)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in missing + unexpected if not k.startswith(("classifier.", "token_match."))]
    if stray:  # only the classifier and the word-level matching head may be new (or left behind)
        raise ValueError(f"model.init_from: its weights do not fit this fusion encoder: {stray[:5]}")
    return model


def fusion_parts(cfg: Config, load: Callable[[str], tuple[nn.Module, Config]]) -> dict:
    """The trained parts a fusion recipe starts from: {"fusion": the fusion model `model.init_from`
    names, checked to have the structure the config describes} or else `clip_parts`'s CLIP."""
    init = cfg.model.init_from
    if not init:
        return clip_parts(cfg, load)
    base, base_cfg = load(init)
    check_continues(cfg, base_cfg, STRUCTURE)
    return {"fusion": base}


def save_fusion_files(model: FusionEncoder, cfg: Config, folder: Path) -> None:
    """Everything but the weights: config.yaml, and the ViltConfig and tokenizer in `vilt/`."""
    save_config(cfg, folder / "config.yaml")
    model.vilt.config.save_pretrained(folder / FOLDER)
    model.tokenizer.save_pretrained(folder / FOLDER)
    embedder = model.vilt.embeddings.patch_embeddings.projection
    if isinstance(embedder, CLIPPatchTokens):
        save_tower_files(embedder.tower, folder / TOWER_FOLDER)


def clip_parts(cfg: Config, load: Callable[[str], tuple[nn.Module, Config]]) -> dict:
    """{"clip": the contrastive model `model.vision_init` names} for `image_embedder: clip`; else {}."""
    check_embedder(cfg.model)
    if cfg.model.image_embedder != "clip":
        return {}
    clip, clip_cfg = load(cfg.model.vision_init)
    if clip_cfg.kind != "contrastive":
        raise ValueError(
            f"model.vision_init: {cfg.model.vision_init} is a {clip_cfg.kind} model, not a contrastive one"
        )
    return {"clip": clip}
