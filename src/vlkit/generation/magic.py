"""MaGiC search: zero-shot captions from a text-only language model steered by a contrastive model.

Su et al. 2022, "Language Models Can See: Plugging Visual Controls in Text Generation"
(arXiv:2205.02655). At each step the LM proposes its top-k next tokens, and each candidate v is
scored

    (1 - alpha) * p_LM(v | x_<t)                          how likely the LM finds it
    - alpha * max_j cos(h_v, h_j)                         degeneration penalty (SimCTG): h_v the
                                                          candidate's last hidden state, h_j the context's
    + beta * softmax_k(scale * cos(image, text(x_<t v)))  how well the caption so far matches the image

and the best is kept. beta = 0 is SimCTG's contrastive search: the same LM and decoding without
the image, the unguided baseline. The guide is anything with `embed_images` and `embed_texts`
returning unit vectors and a `model.scale()` (a `vlkit.api.ContrastiveModel`: a CLIP, SigLIP, LiT
or training-free run), so any vlkit contrastive model steers any causal LM with a chat template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from vlkit.data.conversations import CAPTION_PROMPT
from vlkit.data.images import ImageInput


@dataclass(frozen=True)
class MagicSearch:
    """MaGiC's settings (the paper's COCO values for alpha and beta; k smaller, for CPUs).

    k: candidates per step (the LM's top-k); alpha: degeneration penalty weight; beta: image
    term weight (0: unguided contrastive search)."""

    k: int = 8
    alpha: float = 0.1
    beta: float = 2.0
    max_new_tokens: int = 32

    def __post_init__(self):
        if self.k < 1 or self.max_new_tokens < 1 or not 0 <= self.alpha <= 1 or self.beta < 0:
            raise ValueError(
                f"MagicSearch: need k >= 1, max_new_tokens >= 1, 0 <= alpha <= 1, beta >= 0; got {self}"
            )


class Guide(Protocol):
    """What steers the search: a loaded contrastive model (`vlkit.api.ContrastiveModel`)."""

    model: torch.nn.Module  # has `scale()`, the logit scale the guide was trained with

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@torch.inference_mode()
def magic_decode(
    lm,
    tokenizer,
    prompt_ids: list[int],
    search: MagicSearch,
    image: torch.Tensor | None = None,
    embed_texts: Callable[[list[str]], np.ndarray] | None = None,
    scale: float = 100.0,
) -> list[int]:
    """One prompt → the new token ids (end token excluded). image: float[E], a unit vector, with
    `embed_texts` (texts → unit vectors float32[N, E]); None, or beta = 0: no image term."""
    guided = image is not None and embed_texts is not None and search.beta > 0
    out = lm(input_ids=torch.tensor([prompt_ids]), use_cache=True, output_hidden_states=True)
    cache, logits = out.cache, out.logits[0, -1]  # logits: (V,)
    context = F.normalize(out.hidden_states[-1][0].float(), dim=-1)  # (T, D)
    k = min(search.k, logits.shape[-1])
    new: list[int] = []
    for _ in range(search.max_new_tokens):
        probs, candidates = logits.float().softmax(-1).topk(k)  # (k,), (k,)
        cache.batch_repeat_interleave(k)
        step = lm(input_ids=candidates[:, None], cache=cache, use_cache=True, output_hidden_states=True)
        hidden = F.normalize(step.hidden_states[-1][:, -1].float(), dim=-1)  # (k, D)
        score = (1 - search.alpha) * probs - search.alpha * (hidden @ context.T).max(-1).values  # (k,)
        if guided:
            texts = [tokenizer.decode([*new, t], skip_special_tokens=True) for t in candidates.tolist()]
            similarity = torch.from_numpy(embed_texts(texts)).float() @ image  # (k,)
            score = score + search.beta * (scale * similarity).softmax(-1)
        best = int(score.argmax())
        token = int(candidates[best])
        if token == tokenizer.eos_token_id:
            break
        new.append(token)
        cache = step.cache
        cache.batch_select_indices(torch.tensor([best]))
        context = torch.cat([context, hidden[best : best + 1]])  # (T + 1, D)
        logits = step.logits[best, -1]
    return new


class MagicCaptioner:
    """Zero-shot captions: `lm` (a causal LM with its chat-template tokenizer) decodes with MaGiC
    search steered by `guide`; `guide=None` (or beta = 0) decodes unguided. Has the generative
    models' `caption(images, prompt)`, so `vlkit.eval`'s caption tasks score it."""

    def __init__(self, lm, tokenizer, guide: Guide | None, search: MagicSearch | None = None):
        self.lm, self.tokenizer, self.guide = lm.eval(), tokenizer, guide
        self.search = search or MagicSearch()

    def prompt_ids(self, prompt: str | None = None) -> list[int]:
        """The chat prompt the LM continues: a user turn asking for a caption (no image: the LM
        reads text only)."""
        messages = [{"role": "user", "content": prompt or CAPTION_PROMPT}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def caption(self, images: Sequence[ImageInput], prompt: str | None = None) -> list[str]:
        """A caption per image (an unreadable image raises its `ImageError`)."""
        ids, guided = self.prompt_ids(prompt), self.guide is not None and self.search.beta > 0
        embeddings = torch.from_numpy(self.guide.embed_images(list(images))).float() if guided else None
        scale = float(self.guide.model.scale().detach()) if guided else 0.0
        embed = self.guide.embed_texts if guided else None
        out = []
        for row in range(len(images)):
            image = embeddings[row] if embeddings is not None else None
            new = magic_decode(self.lm, self.tokenizer, ids, self.search, image, embed, scale)
            out.append(self.tokenizer.decode(new, skip_special_tokens=True).strip())
        return out
