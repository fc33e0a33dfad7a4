"""Parameter-efficient tuning of the language model with the `peft` library: LoRA, prompt tuning
(soft prompt tokens) and prefix tuning (per-layer key/value prefixes through an MLP).

The VLM drives the LM with embeddings (image features scattered into the token embeddings):

- training: `lm(inputs_embeds=float[B, T, D], attention_mask=int[B, T], labels=int64[B, T])`
  (-100 = ignored). Pass the text-length mask and labels only: for prompt tuning peft itself
  prepends V ones to the mask and V -100s to the labels; for prefix tuning it prepends V ones to
  the mask and puts the prefixes in the KV cache (no extra positions). Never pad them yourself.
  `logits` are `float[B, virtual_tokens(lm) + T, vocab]`: slice `logits[:, virtual_tokens(lm):]`
  to get the text positions (V for prompt tuning, 0 otherwise). The first text label is then
  predicted from the last soft-prompt token; keep it -100 (it is an image/prompt token anyway).
- generation: call `generate(lm, inputs_embeds, attention_mask, **kwargs)` from this module for
  every kind, not `lm.generate`. It returns only the new tokens, `int64[B, <= max_new_tokens]`.
  Why: with peft 0.21.2 and transformers 5.23, `PeftModelForCausalLM.generate(inputs_embeds=...)`
  raises for prompt/prefix tuning (transformers checks that `prepare_inputs_for_generation`
  names `inputs_embeds`; peft's takes `*args, **kwargs`), and peft's prompt injection there
  embeds `input_ids` (empty when generating from embeddings) instead of the given embeddings.
  So we build the virtual tokens with peft (`get_prompt`) and call the base model's `generate`.
"""

from __future__ import annotations

import copy

import torch
from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
    get_peft_model,
)
from peft.utils import PeftType
from torch import nn
from transformers import PreTrainedModel

from vlkit.config import PEFT_KINDS, VLMConfig


def apply_peft(lm: PreTrainedModel, cfg: VLMConfig) -> nn.Module:
    """Wraps `lm` for `cfg.peft`: a `peft.PeftModel` whose base weights are frozen and whose only
    trainable parameters are the adapter's; `none` returns `lm` itself, untouched."""
    kind = cfg.peft
    if kind == "none":
        return lm
    if kind == "lora":
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
        )
    elif kind == "prompt":
        config = PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=cfg.virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    elif kind == "prefix":
        config = PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=cfg.virtual_tokens,
            prefix_projection=True,  # prefixes reparameterised through an MLP (Li & Liang)
            encoder_hidden_size=lm.config.hidden_size,
        )
    else:
        raise ValueError(f"unknown vlm.peft {kind!r}; valid: {', '.join(PEFT_KINDS)}")
    return get_peft_model(lm, config)


def _prompt_learning_type(lm: nn.Module) -> PeftType | None:
    if isinstance(lm, PeftModel) and lm.active_peft_config.is_prompt_learning:
        return lm.active_peft_config.peft_type
    return None


def virtual_tokens(lm: nn.Module) -> int:
    """Positions prepended to the logits by the LM's forward: V for prompt tuning, else 0."""
    if _prompt_learning_type(lm) == PeftType.PROMPT_TUNING:
        return lm.active_peft_config.num_virtual_tokens
    return 0


@torch.no_grad()
def generate(
    lm: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kwargs
) -> torch.Tensor:
    """Generates from embeddings with any `apply_peft` result (or a plain transformers LM).

    inputs_embeds: float[B, T, D]; attention_mask: int[B, T] (left padding); kwargs go to
    transformers' `generate` (max_new_tokens, do_sample, ...). Returns the new tokens only,
    int64[B * num_return_sequences, <= max_new_tokens]. Prefix tuning supports neither beam search
    nor num_return_sequences > 1 (its prefix cache is built for B rows): repeat the inputs instead.
    """
    kind = _prompt_learning_type(lm)
    if kind is None:
        return lm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    base = lm.get_base_model()
    batch, n_virtual = inputs_embeds.shape[0], lm.active_peft_config.num_virtual_tokens
    ones = attention_mask.new_ones(batch, n_virtual)
    attention_mask = torch.cat([ones, attention_mask], dim=1)  # (B, V + T)
    if kind == PeftType.PROMPT_TUNING:
        prompts = lm.get_prompt(batch_size=batch).to(inputs_embeds.dtype)  # (B, V, D)
        inputs_embeds = torch.cat([prompts, inputs_embeds], dim=1)  # (B, V + T, D)
        return base.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    if kind == PeftType.PREFIX_TUNING:
        if kwargs.get("num_beams", 1) > 1 or kwargs.get("num_return_sequences", 1) > 1:
            raise ValueError(
                "prefix tuning: generate supports num_beams=1 and num_return_sequences=1 only, got "
                f"{kwargs.get('num_beams', 1)} and {kwargs.get('num_return_sequences', 1)}; "
                "repeat the inputs along the batch instead"
            )
        cache = lm.get_prompt(batch_size=batch)  # a DynamicCache holding V prefix positions
        # transformers treats the first cache-length inputs as already in the cache and feeds only
        # the rest: V placeholder rows keep all T embeddings in the first forward.
        skipped = inputs_embeds.new_zeros(batch, n_virtual, inputs_embeds.shape[-1])
        inputs_embeds = torch.cat([skipped, inputs_embeds], dim=1)  # (B, V + T, D)
        return base.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache, **kwargs
        )
    raise ValueError(f"generate: peft type {kind} is not one vlkit builds ({', '.join(PEFT_KINDS)})")


def merged_lm(lm: nn.Module) -> PreTrainedModel:
    """A plain transformers LM for export: LoRA merged into a copy of the base weights (`lm` is
    left as is); a non-peft LM is returned unchanged. Soft prompts and prefixes cannot be merged
    into weights: a ValueError."""
    if not isinstance(lm, PeftModel):
        return lm
    peft_type = lm.active_peft_config.peft_type
    if peft_type != PeftType.LORA:
        raise ValueError(f"merged_lm: only LoRA merges into the LM weights, this LM uses {peft_type}")
    return copy.deepcopy(lm).merge_and_unload()
