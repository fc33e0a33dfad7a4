"""Flamingo's gated cross-attention, added to a frozen transformers causal LM (Llama family).

Before every `every`-th decoder layer (layers 0, k, 2k, ...) the text hidden states read the
visual tokens ("media") through a gated block:

    y = y + tanh(a_xattn) * attn(q=LN(y), kv=x)
    y = y + tanh(a_dense) * ffw(LN(y))

with both gates initialised at 0, so at initialisation the model computes exactly what the
frozen LM computes. Every text position attends to all media tokens of its sample (one image per
sample; Flamingo's "only the preceding image" masking is not needed then).

The blocks run as forward pre-hooks on the LM's own decoder layers: the LM object, its module
tree and its state-dict keys stay unchanged (`save_pretrained`, LoRA targets and export keep
working on `gated.lm`), and `remove()` detaches them. Until then calling `gated.lm` directly
runs the blocks too. The media are set before calling the LM
because `generate` calls its forward many times:

    gated = add_gated_xattn(lm, vision_dim=..., every=2)
    with gated.media(x):                # x: float[B, M, vision_dim]
        loss = gated(inputs_embeds=..., attention_mask=..., labels=...).loss
        tokens = gated.generate(inputs_embeds=..., attention_mask=..., max_new_tokens=8)

(The transformers Idefics layer, `IdeficsGatedCrossAttentionLayer`, raises on a KV cache and
needs a full IdeficsConfig plus a per-token gate tensor, hence this small block.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class GatedCrossAttentionBlock(nn.Module):
    """hidden: float[B, T, D]; media: float[B, M, Dm] → float[B, T, D]. Position-wise over T, so
    with a KV cache each generation step's new tokens can go through it alone."""

    def __init__(self, dim: int, media_dim: int, heads: int, ff_mult: int = 4):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, kdim=media_dim, vdim=media_dim, batch_first=True)
        self.attn_gate = nn.Parameter(torch.zeros(1))  # tanh(0) = 0: the block starts as the identity
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, hidden: torch.Tensor, media: torch.Tensor) -> torch.Tensor:
        read, _ = self.attn(self.attn_norm(hidden), media, media, need_weights=False)  # (B, T, D)
        hidden = hidden + torch.tanh(self.attn_gate) * read
        return hidden + torch.tanh(self.ff_gate) * self.ff(self.ff_norm(hidden))  # (B, T, D)


class GatedXAttnLM(nn.Module):
    """A causal LM plus gated cross-attention blocks; `xattn[j]` runs before `lm.model.layers[
    layer_ids[j]]`. forward/generate take the LM's arguments unchanged; set the media first."""

    def __init__(self, lm: nn.Module, media_dim: int, every: int, heads: int | None = None, ff_mult: int = 4):
        super().__init__()
        layers = getattr(getattr(lm, "model", None), "layers", None)
        if layers is None:
            raise ValueError(f"{type(lm).__name__}: expected a Llama-family causal LM with `model.layers`")
        if not 1 <= every <= len(layers):
            raise ValueError(
                f"xattn_every={every}: expected 1..{len(layers)} (the LM has {len(layers)} layers)"
            )
        dim = lm.config.hidden_size
        heads = heads or lm.config.num_attention_heads
        self.lm = lm
        self.layer_ids = list(range(0, len(layers), every))
        self.xattn = nn.ModuleList(
            GatedCrossAttentionBlock(dim, media_dim, heads, ff_mult) for _ in self.layer_ids
        )
        self._media: torch.Tensor | None = None
        self._hooks = [
            layers[i].register_forward_pre_hook(self._hook(block), with_kwargs=True)
            for i, block in zip(self.layer_ids, self.xattn)
        ]

    def _hook(self, block: GatedCrossAttentionBlock):
        def run_block(_layer, args, kwargs):
            if args:  # transformers passes hidden_states positionally; accept the keyword too
                return (block(args[0], self._media_for(args[0].shape[0])), *args[1:]), kwargs
            hidden = kwargs["hidden_states"]
            return args, {**kwargs, "hidden_states": block(hidden, self._media_for(hidden.shape[0]))}

        return run_block

    def _media_for(self, batch: int) -> torch.Tensor:
        media = self._media
        if media is None:
            raise RuntimeError("gated cross-attention: no media set; wrap the call in `with gated.media(x):`")
        if batch == media.shape[0]:
            return media
        if batch % media.shape[0] == 0:  # beam search / num_return_sequences: rows are repeated per sample
            return media.repeat_interleave(batch // media.shape[0], dim=0)  # (B * k, M, Dm)
        raise ValueError(
            f"gated cross-attention: the LM batch has {batch} rows, the media {media.shape[0]}; "
            "expected equal sizes or an LM batch that is a multiple of the media batch"
        )

    def set_media(self, media: torch.Tensor) -> None:
        """media: float[B, M, media_dim], the visual tokens every following forward reads."""
        if media.dim() != 3:
            raise ValueError(f"media: expected float[B, M, D], got shape {tuple(media.shape)}")
        self._media = media

    def clear_media(self) -> None:
        self._media = None

    @contextlib.contextmanager
    def media(self, media: torch.Tensor) -> Iterator[None]:
        self.set_media(media)
        try:
            yield
        finally:
            self.clear_media()

    def forward(self, *args, **kwargs):
        return self.lm(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.lm.generate(*args, **kwargs)

    def remove(self) -> nn.Module:
        """Detaches the blocks from the LM and returns the LM (as it was, minus nothing)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        return self.lm


def add_gated_xattn(
    lm: nn.Module,
    vision_dim: int,
    every: int,
    heads: int | None = None,
    ff_mult: int = 4,
    freeze_lm: bool = True,
) -> GatedXAttnLM:
    """Adds a gated cross-attention block before LM layers 0, every, 2*every, ...; the media it
    reads are float[B, M, vision_dim] (vision features, or connector tokens at the LM width). With
    `freeze_lm` only the new blocks are trainable. `heads` defaults to the LM's head count."""
    if freeze_lm:
        lm.requires_grad_(False)
    return GatedXAttnLM(lm, vision_dim, every, heads, ff_mult)
