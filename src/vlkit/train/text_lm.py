"""A text-only caption language model: gpt-tiny trained on captions alone, never an image (MaGiC's LM).

    lm, tokenizer = train_caption_lm(captions, CaptionLM(steps=400), out="runs/gpt-captions")

Each caption is one chat: user `CAPTION_PROMPT` → assistant the caption, in the tokenizer's ChatML
template, loss on the assistant's tokens and its end token (as generative training does), so the
LM answers the prompt `vlkit.generation.magic.MagicCaptioner` sends. The folder is a plain
transformers causal-LM folder (config, safetensors, tokenizer with its chat template), which
`vlkit caption --lm`, `vlkit serve` and `build_language_model` load by path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlkit.config import VLMConfig
from vlkit.data.conversations import CAPTION_PROMPT
from vlkit.models.registry import build_language_model


@dataclass(frozen=True)
class CaptionLM:
    """How to train it: gpt-tiny's sizes (`VLMConfig`'s lm_* fields) and a short AdamW run."""

    lm: VLMConfig = field(default_factory=lambda: VLMConfig(lm_vocab_size=512, max_length=64))
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 20
    seed: int = 0


def caption_chats(
    tokenizer, captions: Sequence[str], prompt: str = CAPTION_PROMPT
) -> list[tuple[list[int], int]]:
    """Each caption → (token ids of the chat, up to and including the assistant's end token; where
    the assistant's reply starts)."""
    user = [{"role": "user", "content": prompt}]
    start = len(_ids(tokenizer, user, generation_prompt=True))
    out = []
    for text in captions:
        ids = _ids(tokenizer, [*user, {"role": "assistant", "content": text}])
        end = len(ids) - ids[::-1].index(tokenizer.eos_token_id)  # the reply's end token kept
        out.append((ids[:end], start))
    return out


def _ids(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _batch(chats: list[tuple[list[int], int]], rows: list[int], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask, labels int64[B, T] (-100: prompt and padding)."""
    width = max(len(chats[r][0]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        tokens, start = chats[r]
        ids[i, : len(tokens)] = torch.tensor(tokens)
        labels[i, start : len(tokens)] = torch.tensor(tokens[start:])
        mask[i, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_caption_lm(
    captions: Sequence[str],
    settings: CaptionLM | None = None,
    out: str | Path | None = None,
    log: Callable[[int, float], None] | None = None,
):
    """Captions → (gpt-tiny trained on them, its tokenizer, trained on them too); saved to `out`
    as a transformers folder when given. `log(step, loss)` is called every 50 steps and at the end."""
    settings = settings or CaptionLM()
    if not captions:
        raise ValueError("train_caption_lm: no captions to train on")
    torch.manual_seed(settings.seed)
    lm, tokenizer = build_language_model("gpt-tiny", settings.lm, texts=list(captions))
    chats = caption_chats(tokenizer, captions)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=settings.lr, weight_decay=0.01)
    warmup, total = max(settings.warmup_steps, 1), settings.steps

    def rate(step: int) -> float:  # linear warmup, cosine decay to 0
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    order = torch.Generator().manual_seed(settings.seed)
    lm.train()
    for step in range(total):
        rows = torch.randint(len(chats), (settings.batch_size,), generator=order).tolist()
        loss = lm(**_batch(chats, rows, tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step(), scheduler.step(), optimizer.zero_grad()
        if log is not None and (step % 50 == 0 or step == total - 1):
            log(step, loss.item())
    lm.eval()
    if out is not None:
        lm.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return lm, tokenizer
