"""`gpt-tiny-reader`: gpt-tiny-words whose user turns are read by the whole packaged MiniLM, frozen.

Why: which kind of answer a question asks for is a property of the whole sentence, not of its
words one by one. In the text-only control on the scenes questions (benchmarks/README.md,
"Reading held-out wordings, text only"), MiniLM's frozen sentence features read the held-out
wordings at 100% on every seed, where its frozen word table alone reads 90.2% with the set of
wordings it misreads changing with the seed, and gpt-tiny-words carried that seed-dependence into
the VLM ("The VLM reading through MiniLM's word table").

So each user turn's words (between `<|im_start|>user` and `<|im_end|>`, `<image>` left out) are
encoded as one sentence by MiniLM ([CLS] words [SEP], bidirectional); the LM's input at each word's
position is a trained projection of MiniLM's state there plus one of the turn's mean-pooled state
(sentence-transformers' pooling: the feature the control read with). Every other token — the
ChatML markers, the role names, the assistant's answers, generated tokens — is read through the
word table as in gpt-tiny-words, so an answer is never encoded with the words after it and
generation (one new token at a time) reads as training did. Turns are encoded apart: a turn never
sees a later one. The encoder's outputs are cached per turn (it is frozen and in eval mode), so a
question the data repeats costs one lookup, in every reader of the same encoder folder in the
process; the turns not cached are encoded in batches of similar length (`length_chunks`).

Measured in the VLM (recipes/llava-clip-scenes-staged.yaml, which uses it; seeds 1 and 2, at
ea95fad when the recipe gave the LM 64 image tokens): VQA 93.8%, hand-reworded questions 85.3%,
against gpt-tiny's 90.6% and 66.8%, at about 1.5x the training time (benchmarks/README.md, "The
VLM reading its questions through MiniLM"; `time_to_accuracy-llava-clip-scenes-staged-reader-seeds.json`).

The encoder is not stored in checkpoints and not among the module's parameters (it is MiniLM's,
rebuilt from the package on load); the projections and the added tokens' rows are. Transformers'
LLaVA reads words through one table, so this model is not exportable to it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from vlkit.config import VLMConfig
from vlkit.models.language_models import LM
from vlkit.models.word_vectors import WordVectors, words_llama

CACHE_TURNS = 100_000  # encoded turns kept (each L x 384 floats: ~2.3 GB at L = 14); cleared when full
PADDING = 0.15  # the most of a batch of turns that may be padding (turns are sorted by length)
# Encoded turns per (encoder folder, dtype, device, read under bf16 autocast or not: a bf16 reading
# differs a little), shared by every reader of that encoder in the
# process: the encoder is frozen and rebuilt from its folder, so its outputs depend on those alone
# (a staged recipe's second stage builds a new reader and finds the first stage's turns here).
_CACHES: dict[tuple, dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]]] = {}


def user_words(input_ids: torch.Tensor, turn_start: int, user: int, words: int, pad: int):
    """input_ids: int64[B, T] → (bool[B, T]: the word tokens of user turns — after the role name,
    below id `words` (so not the ChatML markers or `<image>`), not padding —, int64[B, T]: the
    position of the `<|im_start|>` each token's turn began at, -1 before the first)."""
    length = input_ids.shape[1]
    position = torch.arange(length, device=input_ids.device).expand_as(input_ids)
    turn = torch.where(input_ids == turn_start, position, -1).cummax(1).values  # (B, T)
    role = input_ids.gather(1, (turn + 1).clamp(0, length - 1))  # (B, T): the token after it
    mask = (turn >= 0) & (role == user) & (position > turn + 1) & (input_ids < words) & (input_ids != pad)
    return mask, turn


def length_chunks(turns: list[tuple[int, ...]], padding: float = PADDING) -> list[list[tuple[int, ...]]]:
    """The turns sorted by length and cut into batches in which at most `padding` of the tokens
    run ([CLS] and [SEP] counted) are padding: turns of 8 to 28 tokens padded to the longest of
    them waste ~40%."""
    chunks: list[list[tuple[int, ...]]] = []
    real = 0
    for t in sorted(turns, key=len):
        size = len(t) + 2
        if chunks and (len(chunks[-1]) + 1) * size * (1 - padding) <= real + size:
            chunks[-1].append(t)
            real += size
        else:
            chunks.append([t])
            real = size
    return chunks


class QuestionReader(nn.Module):
    """Input embeddings: user turns' words through the frozen `encoder` (a BERT-style model whose
    vocabulary is the tokenizer's first rows), every other token through `WordVectors`.
    input_ids: int64[B, T] → float[B, T, width]."""

    def __init__(self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, width: int):
        super().__init__()
        table = encoder.get_input_embeddings().weight.detach()  # (V0, E)
        self.words = WordVectors(table, len(tokenizer) - len(table), width)
        self.tokens = nn.Linear(table.shape[1], width, bias=False)  # a word's state
        self.sentence = nn.Linear(table.shape[1], width, bias=False)  # its turn's mean state
        # Outside the module tree: not a parameter, not in the state dict (see `_apply`).
        self._encoder = (encoder.eval().requires_grad_(False),)
        ids = tokenizer.convert_tokens_to_ids
        self.turn_start, self.user = ids("<|im_start|>"), ids("user")
        self.cls, self.sep, self.pad = ids("[CLS]"), ids("[SEP]"), tokenizer.pad_token_id
        self.max_words = encoder.config.max_position_embeddings - 2
        # an encoder built in memory (no folder) shares its cache with no other reader
        self._source = encoder.name_or_path or f"in memory: {id(encoder)}"

    def _apply(self, fn, recurse: bool = True):
        """`.to()`, `.half()` ... move the encoder too (the cache then is that dtype's and device's)."""
        self._encoder = (self._encoder[0]._apply(fn),)  # a bf16 copy is made again when needed
        return super()._apply(fn, recurse)

    def _autocast_bf16(self) -> bool:
        device = self.words.table.device.type
        return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16

    @property
    def _cache(self) -> dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]]:
        table = self.words.table
        return _CACHES.setdefault((self._source, table.dtype, table.device, self._autocast_bf16()), {})

    def _encoder_now(self) -> PreTrainedModel:
        """The frozen encoder; under bf16 autocast a bf16 copy of it, cast once: autocast caches
        the casts of trainable weights only, and would cast these 22M at every call."""
        if not self._autocast_bf16():
            return self._encoder[0]
        if len(self._encoder) == 1:
            self._encoder = (self._encoder[0], copy.deepcopy(self._encoder[0]).to(torch.bfloat16))
        return self._encoder[1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.words(input_ids)  # (B, T, width)
        mask, turns = self.user_turns(input_ids)
        if not turns:
            return embeds
        states = self._read(turns)
        # one projection for all the turns' words, one for their means (two per turn before: ~400
        # small matmuls a mix step, and as many in the backward)
        words = self.tokens(torch.cat([s for s, _ in states]))  # (N, width)
        lengths = torch.tensor([len(s) for s, _ in states], device=words.device)
        means = self.sentence(torch.stack([m for _, m in states])).repeat_interleave(lengths, dim=0)
        return embeds.masked_scatter(mask.unsqueeze(-1), (words + means).to(embeds.dtype))

    def user_turns(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """input_ids: int64[B, T] → (bool[B, T]: the user turns' word tokens (`user_words`), each
        user turn's word ids in row-major order)."""
        mask, turn = user_words(input_ids, self.turn_start, self.user, len(self.words.table), self.pad)
        if not mask.any():
            return mask, []
        # `turn` never decreases along a row, so the masked positions of one (row, turn) are consecutive
        rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1)
        _, lengths = (rows * input_ids.shape[1] + turn)[mask].unique_consecutive(return_counts=True)
        return mask, [tuple(t.tolist()) for t in input_ids[mask].split(lengths.tolist())]

    @torch.no_grad()
    def _read(self, turns: list[tuple[int, ...]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each turn → (float[L, E]: its words' states, float[E]: the turn's mean state)."""
        cache = self._cache
        missing = list(dict.fromkeys(t for t in turns if t not in cache))
        if not missing:
            return [cache[t] for t in turns]
        read: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for chunk in length_chunks(missing):
            read.update(zip(chunk, self._encode(chunk), strict=True))
        # Tensors made under inference_mode (evaluation, serving) cannot enter a training graph
        # later: those are used once, not cached.
        if not torch.is_inference_mode_enabled():
            if len(cache) + len(missing) > CACHE_TURNS:
                cache.clear()
            cache.update(read)
        return [cache.get(t) or read[t] for t in turns]

    def _encode(self, turns: list[tuple[int, ...]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        longest = max(len(t) for t in turns)
        if longest > self.max_words:
            raise ValueError(
                f"gpt-tiny-reader: a user turn of {longest} tokens; the question encoder reads at "
                f"most {self.max_words} (shorten the prompt or lower vlm.max_length)"
            )
        device = self.words.table.device
        ids = torch.full((len(turns), longest + 2), self.pad, dtype=torch.long, device=device)
        attention = torch.zeros_like(ids)
        for i, t in enumerate(turns):
            ids[i, : len(t) + 2] = torch.tensor([self.cls, *t, self.sep], device=device)
            attention[i, : len(t) + 2] = 1
        hidden = self._encoder_now()(input_ids=ids, attention_mask=attention).last_hidden_state
        weights = attention.unsqueeze(-1).to(hidden.dtype)
        means = (hidden * weights).sum(1) / weights.sum(1)  # (N, E), [CLS] and [SEP] included
        # copies: a kept turn holds its own rows, not the whole padded batch
        return [(hidden[i, 1 : len(t) + 1].clone(), means[i].clone()) for i, t in enumerate(turns)]


def gpt_tiny_reader(cfg: VLMConfig, saved: Path | None, source: Path) -> LM:
    """A new model (`saved` None), or a saved one's structure with the encoder restored (its
    other weights come with the checkpoint). `source`: the encoder folder (the registry passes the
    packaged MiniLM's), whose vocabulary, word table and weights are read."""
    lm, tokenizer = words_llama(cfg, saved, source)
    encoder = AutoModel.from_pretrained(source)
    lm.set_input_embeddings(QuestionReader(encoder, tokenizer, lm.config.hidden_size))
    return lm, tokenizer
