"""`gpt-tiny-words`: the small from-scratch Llama of `gpt-tiny`, reading words through the packaged
MiniLM's WordPiece vocabulary and its pretrained word table (frozen), projected to the LM's width.

Why: a BPE learnt from the training texts gives a word the model never saw in training an
untrained embedding, so a question reworded with unseen words ("Is the square visible anywhere?")
is read by its known words alone. In a text-only control on the same questions, pretrained word
vectors read held-out wordings at 90.2% where the learnt BPE reads 51.7% (benchmarks/README.md,
"Reading held-out wordings, text only"). The table is frozen so that words training never uses
keep their place beside the words it does. The output head is a separate matrix over the whole
vocabulary; with `vlm.logits_at_answers` only the answer positions pay for it.

Measured in the VLM (the staged recipe, seeds 1 and 2), it is not better than gpt-tiny: VQA 83.9%
vs 90.6%, reworded 63.7% vs 66.8%, and each seed reads a different set of held-out wordings
(benchmarks/README.md, "The VLM reading through MiniLM's word table"). No recipe uses it.

The table is not stored in checkpoints (it is MiniLM's, rebuilt from the package on load); the
rows of the added tokens (ChatML markers, `<image>`) and the projection are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from vlkit.config import VLMConfig
from vlkit.models.language_models import LM, chat_tokenizer, saved_llama, tiny_llama_config

TABLE_KEY = "embeddings.word_embeddings.weight"  # MiniLM's word table in its safetensors file


class WordVectors(nn.Module):
    """Input embeddings: a frozen pretrained table for the first `table` rows, trained rows for
    the tokens added after it, both projected to the LM's width.
    input_ids: int64[B, T] → float[B, T, width]."""

    def __init__(self, table: torch.Tensor, added: int, width: int):
        super().__init__()
        self.register_buffer("table", table, persistent=False)  # (V0, E), MiniLM's
        self.added = nn.Parameter(torch.randn(added, table.shape[1]) * table.std())  # (V - V0, E)
        self.proj = nn.Linear(table.shape[1], width, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        known = len(self.table)
        words = nn.functional.embedding(input_ids.clamp(max=known - 1), self.table)  # (B, T, E)
        added = nn.functional.embedding((input_ids - known).clamp(min=0), self.added)  # (B, T, E)
        rows = torch.where((input_ids >= known).unsqueeze(-1), added, words)
        return self.proj(rows)  # (B, T, width)

    @property
    def weight(self) -> torch.Tensor:
        """Every token's embedding: float[V, width] (what a plain embedding table would hold)."""
        return self.proj(torch.cat([self.table, self.added]))


def words_tokenizer(source: Path, max_length: int) -> PreTrainedTokenizerFast:
    """`source`'s WordPiece (MiniLM's is lower-cased) with the ChatML markers and `<image>` added
    after its words. A plain fast tokenizer without BERT's [CLS] ... [SEP] wrapping, so encoding
    with or without `add_special_tokens` (LLaVA's processor, after export) gives the same ids."""
    words = AutoTokenizer.from_pretrained(source).backend_tokenizer
    words.post_processor = None
    return chat_tokenizer(words, max_length, pad_token="[PAD]", unk_token="[UNK]")


def word_table(source: Path) -> torch.Tensor:
    """A BERT-style encoder folder's pretrained word table (MiniLM's: float[30522, 384]), read
    alone from its weights file."""
    with safe_open(source / "model.safetensors", framework="pt") as weights:
        return weights.get_tensor(TABLE_KEY)


def words_llama(cfg: VLMConfig, saved: Path | None, source: Path) -> LM:
    """gpt-tiny's Llama over `source`'s WordPiece vocabulary (untied head), new (`saved` None) or a
    saved one's structure; its input embeddings are the caller's to set."""
    if saved is not None:
        return saved_llama(saved)
    tokenizer = words_tokenizer(source, cfg.max_length)
    return LlamaForCausalLM(tiny_llama_config(cfg, tokenizer, tie=False)), tokenizer


def gpt_tiny_words(cfg: VLMConfig, saved: Path | None, source: Path) -> LM:
    """A new model (`saved` None), or a saved one's structure with the word table restored (its
    other weights come with the checkpoint). `source`: the encoder folder whose vocabulary and
    word table are read (the registry passes the packaged MiniLM's)."""
    lm, tokenizer = words_llama(cfg, saved, source)
    table = word_table(source)
    lm.set_input_embeddings(WordVectors(table, len(tokenizer) - len(table), lm.config.hidden_size))
    return lm, tokenizer


def plain_embeddings(lm: nn.Module) -> nn.Module:
    """`lm` with a WordVectors input table replaced by the plain embedding table it computes (for
    export to transformers' classes, which hold one matrix); any other LM as it is."""
    vectors = lm.get_input_embeddings()
    if isinstance(vectors, WordVectors):
        with torch.no_grad():
            lm.set_input_embeddings(
                nn.Embedding.from_pretrained(vectors.weight.detach().clone(), freeze=False)
            )
    return lm
