"""A fusion encoder (ViLT, Kim et al. 2021): one transformer over word tokens and image patches.

The transformer is transformers' `ViltModel` (text embeddings + patch embeddings, a modality
embedding on each, one encoder, a tanh pooler on the first token); on it sit the two pretraining
heads: image-text matching (`rank_output`: one logit from the pooled state, the head of
transformers' `ViltForImageAndTextRetrieval`, so the export is that class with no other change)
and masked language modelling (`mlm_score`, transformers' `ViltMLMHead`). FLAVA-style models
(`model.contrastive_weight` > 0) also project unimodal encodings (the same encoder over the image
alone, over the text alone) into a shared space for a contrastive loss.

Fine-tuned for classification (`model.objective: classify`, from a pre-trained run named by
`model.init_from`), it also holds `classifier`: ViLT's Hateful Memes / SNLI-VE head (Linear 2D,
LayerNorm, GELU, Linear) over the pooled [CLS], here one logit (binary: > 0 is label 1).

A folder holds `config.yaml`, the weights and `vilt/` (the ViltConfig and the tokenizer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerFast, ViltConfig, ViltModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.vilt.modeling_vilt import ViltMLMHead

from vlkit.config import Config, FusionConfig, save_config
from vlkit.models import tokenizer as tok
from vlkit.models.preprocess import ImagePreprocess
from vlkit.models.towers import CLIP_MEAN, CLIP_STD

FOLDER = "vilt"  # the ViltConfig and the tokenizer, inside a model folder
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
        self.classifier = None
        if cfg.objective == "classify":  # ViltForQuestionAnswering's head, one logit
            self.classifier = nn.Sequential(
                nn.Linear(d, 2 * d), nn.LayerNorm(2 * d), nn.GELU(), nn.Linear(2 * d, 1)
            )
        self.tokenizer = tokenizer  # what `towers.tokenize(model, texts)` reads, as a text tower's
        self.max_length = cfg.max_text_length
        self.preprocess = ImagePreprocess(cfg.image_size, CLIP_MEAN, CLIP_STD)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        classify: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """pixel_values: float[B, 3, H, W]; input_ids, attention_mask: int64[B, T] (pair b is
        image b with text b) → (ITM logits float[B], MLM logits over the text tokens float[B, T, V]);
        with `classify`, the classifier's logits float[B] (`classify`; through forward, so DDP
        synchronises its gradients)."""
        if classify:
            return self.classify(pixel_values, input_ids, attention_mask)
        out = self.vilt(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        text_states = out.last_hidden_state[:, : input_ids.shape[1]]  # (B, T, D): the text comes first
        return self.rank_output(out.pooler_output)[:, 0], self.mlm_score(text_states)

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
        e = self.vilt.embeddings
        b, _, h, w = pixel_values.shape
        ones = torch.ones(b, h, w, dtype=torch.long, device=pixel_values.device)
        patches, mask, _ = e.visual_embed(
            pixel_values, ones, max_image_length=self.vilt.config.max_image_length
        )
        patches = patches + e.token_type_embeddings(torch.ones_like(mask))  # (B, 1 + P, D)
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
    `cfg.train.seed`); with `saved`, a saved folder's structure; with `fusion` (a pre-trained
    FusionEncoder, `model.init_from`), that model's tokenizer, encoder and heads, and a new
    classifier when `model.objective` is classify."""
    m = check_fusion_config(cfg.model)
    if set(parts) - {"fusion"}:
        raise ValueError(f"a fusion encoder starts from a fusion model only; got {', '.join(parts)}")
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
    return FusionEncoder(m, ViltModel(config), tokenizer)


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
    return m


def from_pretrained(cfg: Config, base: FusionEncoder) -> FusionEncoder:
    """`base`'s encoder, tokenizer and heads under `cfg.model` (a classifier, new, initialised with
    `cfg.train.seed`, when it classifies)."""
    torch.manual_seed(cfg.train.seed)
    model = FusionEncoder(cfg.model, base.vilt, base.tokenizer)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in missing + unexpected if not k.startswith("classifier.")]
    if stray:  # only the classifier may be new (or left behind)
        raise ValueError(f"model.init_from: its weights do not fit this fusion encoder: {stray[:5]}")
    return model


def fusion_parts(cfg: Config, load: Callable[[str], tuple[nn.Module, Config]]) -> dict:
    """{"fusion": the fusion model `model.init_from` names}, checked to have the structure the
    config describes; {} when it starts from scratch."""
    init = cfg.model.init_from
    if not init:
        return {}
    base, base_cfg = load(init)
    if base_cfg.kind != "fusion":
        raise ValueError(f"model.init_from: {init} is a {base_cfg.kind} model, not a fusion one")
    for name in STRUCTURE:
        mine, theirs = getattr(cfg.model, name), getattr(base_cfg.model, name)
        if mine != theirs:
            raise ValueError(
                f"model.{name}: {mine!r}, but model.init_from ({init}) has {theirs!r}; the model "
                "section must describe the encoder it starts from"
            )
    return {"fusion": base}


def save_fusion_files(model: FusionEncoder, cfg: Config, folder: Path) -> None:
    """Everything but the weights: config.yaml, and the ViltConfig and tokenizer in `vilt/`."""
    save_config(cfg, folder / "config.yaml")
    model.vilt.config.save_pretrained(folder / FOLDER)
    model.tokenizer.save_pretrained(folder / FOLDER)
