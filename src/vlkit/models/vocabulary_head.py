"""`vlm.data_vocabulary`: an LM head that scores only the tokens the training data's texts use.

Why: a language model that reads through a pretrained tokenizer carries its whole vocabulary
(gpt-tiny-reader: MiniLM's 30,522 words; SmolLM2: 49,152), while the scenes' answers and captions
use a few hundred of them. With `vlm.logits_at_answers` the head runs at answer positions only,
yet there it still costs a matmul, its two gradients and a log-softmax over every word (measured
in benchmarks/README.md, "A head over the data's words"). Here training's softmax runs over the
data's tokens only, and generation picks among them too (every other token scores -inf), so what
the model can say is what it was trained to say.

The vocabulary (`vocabulary`, ascending token ids) is a buffer of the head: it is saved with the
model's weights and a saved model's own is restored on load, whatever size the new structure
started with. The weight is the head's own `nn.Parameter` (tied embeddings stay tied), so state
dicts keep `lm_head.weight`. No transformers or PEFT class restricts a head to a token subset
(sampled softmaxes sample, a logits processor masks after the full matmul), hence this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase
from transformers.loss.loss_utils import ForCausalLMLoss


def data_vocabulary(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> torch.Tensor:
    """int64[K], ascending: every token of `texts` (as written and after a space, as byte-level
    tokenizers mark a word that follows one), of a rendered two-turn chat, and the special tokens."""
    texts = list(texts)
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False) if tokenizer.chat_template else ""
    pieces = [*texts, *(f" {t}" for t in texts), rendered]
    ids = {i for row in tokenizer(pieces, add_special_tokens=False)["input_ids"] for i in row}
    ids.update(tokenizer.all_special_ids)
    return torch.tensor(sorted(ids), dtype=torch.long)


class VocabularyHead(nn.Module):
    """head: the LM's output layer (`nn.Linear`, vocabulary-sized); vocabulary: int64[K] token ids.
    float[..., D] → float[..., V] logits, -inf outside the vocabulary; inside `subset()`,
    float[..., K] (column k is token `vocabulary[k]`; `positions` maps targets to columns)."""

    def __init__(self, head: nn.Linear, vocabulary: torch.Tensor):
        super().__init__()
        self.weight = head.weight
        self.bias = head.bias
        self.register_buffer("vocabulary", vocabulary.to(head.weight.device))
        self._subset = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A saved vocabulary replaces this one, whatever its size (a loaded model's structure is
        built before its weights are read)."""
        saved = state_dict.get(prefix + "vocabulary")
        if saved is not None:
            self.vocabulary = saved.to(self.vocabulary.device).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @contextlib.contextmanager
    def subset(self) -> Iterator[None]:
        """Logits over the vocabulary's K tokens only (training's loss)."""
        self._subset = True
        try:
            yield
        finally:
            self._subset = False

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias[self.vocabulary]
        scores = nn.functional.linear(hidden, self.weight[self.vocabulary], bias)
        if self._subset:
            return scores
        logits = scores.new_full((*scores.shape[:-1], self.weight.shape[0]), float("-inf"))
        logits[..., self.vocabulary] = scores
        return logits

    def positions(self, targets: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
        """int64[N] token ids → their columns in `subset()`'s logits; a token outside the
        vocabulary is an error naming it (the model could never say it)."""
        columns = torch.searchsorted(self.vocabulary, targets).clamp(max=len(self.vocabulary) - 1)
        outside = self.vocabulary[columns] != targets
        if outside.any():
            token = int(targets[outside][0])
            raise ValueError(
                f"vlm.data_vocabulary: the answer token {tokenizer.convert_ids_to_tokens(token)!r} "
                f"(id {token}) is not among the {len(self.vocabulary)} tokens the model was built "
                "with (the texts of its training data); train without vlm.data_vocabulary, or from "
                "data whose texts hold it"
            )
        return columns


def subset_loss(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int, **kwargs) -> torch.Tensor:
    """transformers' causal-LM loss over however many columns the head gave (its `vocab_size`
    is the whole vocabulary's)."""
    return ForCausalLMLoss(logits, labels, logits.shape[-1], **kwargs)


def add_vocabulary_head(lm: nn.Module, vocabulary: torch.Tensor) -> VocabularyHead:
    """Puts a `VocabularyHead` over `lm`'s output layer (a transformers causal LM, not PEFT-wrapped)."""
    head = VocabularyHead(lm.get_output_embeddings(), vocabulary)
    lm.set_output_embeddings(head)
    lm.loss_function = subset_loss
    return head
