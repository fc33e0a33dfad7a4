"""gpt-tiny-words: the from-scratch LM reading through MiniLM's vocabulary and frozen word table;
`vlm.logits_at_answers`: the LM head only where the next token is an answer token."""

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import make_tiny_vlm_cfg
from vlkit.config import VLMConfig
from vlkit.models.build import build_model, load_model, save_model
from vlkit.models.build_vlm import check_vlm_config
from vlkit.models.language_models import gpt_tiny
from vlkit.models.registry import minilm_l6_dir
from vlkit.models.vlm import answer_positions
from vlkit.models.word_vectors import TABLE_KEY, WordVectors

TEXTS = ["a red circle left of a blue square.", "What color is the circle? red"] * 20


def test_the_answer_positions_give_the_loss_and_gradients_of_every_position():
    torch.manual_seed(0)
    lm, _ = gpt_tiny(VLMConfig(lm_width=16, lm_layers=1, lm_heads=2, lm_vocab_size=300), None, TEXTS)
    ids = torch.randint(0, 200, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    labels[1, 9:] = -100  # answers of different lengths; one row's answer ends early
    for items in (None, torch.tensor(9)):  # mean over answer tokens, or a sum divided by a count
        extra = {} if items is None else {"num_items_in_batch": items}
        full = lm(input_ids=ids, labels=labels, **extra)
        full.loss.backward()
        want = [p.grad.clone() for p in lm.parameters()]
        lm.zero_grad()
        kept = lm(input_ids=ids, labels=labels, **extra, **answer_positions(labels))
        kept.loss.backward()
        assert kept.logits.shape == (int((labels[:, 1:] != -100).sum()), lm.config.vocab_size)
        torch.testing.assert_close(kept.loss, full.loss)
        for p, g in zip(lm.parameters(), want):
            torch.testing.assert_close(p.grad, g)
        lm.zero_grad()


def test_words_lm_reads_minilm_words_through_its_frozen_table_and_reloads_exactly(tmp_path):
    cfg = make_tiny_vlm_cfg()
    cfg.vlm.language_model, cfg.vlm.logits_at_answers = "gpt-tiny-words", True
    model = build_model(cfg)
    tokenizer, lm = model.tokenizer, model.base_language_model()
    words = lm.get_input_embeddings()
    assert isinstance(words, WordVectors) and not words.table.requires_grad
    # a word no training text holds has MiniLM's row, projected, not a fresh random one
    (anywhere,) = tokenizer("anywhere", add_special_tokens=False)["input_ids"]
    table = load_file(minilm_l6_dir() / "model.safetensors")[TABLE_KEY]
    torch.testing.assert_close(words(torch.tensor([anywhere])), words.proj(table[anywhere : anywhere + 1]))
    # no [CLS] ... [SEP] wrapping: the same ids with or without the tokenizer's special tokens
    assert (
        tokenizer("is the star red?")["input_ids"]
        == tokenizer("is the star red?", add_special_tokens=False)["input_ids"]
    )
    save_model(model, cfg, tmp_path / "m")
    saved = load_file(tmp_path / "m" / "model.safetensors")
    assert not any(k.endswith("embed_tokens.table") for k in saved), "the packaged table is not copied"
    loaded, _ = load_model(tmp_path / "m")
    ids = torch.tensor(
        [tokenizer("is the square visible anywhere?<|im_end|>", add_special_tokens=False)["input_ids"]]
    )
    with torch.no_grad():
        want = lm(input_ids=ids).logits
        got = loaded.base_language_model()(input_ids=ids).logits
    torch.testing.assert_close(got, want)


def test_answer_positions_refuse_prompt_tuning_whose_virtual_tokens_move_them():
    cfg = make_tiny_vlm_cfg()
    cfg.vlm.logits_at_answers, cfg.vlm.peft = True, "prompt"
    with pytest.raises(ValueError, match="vlm.logits_at_answers: prompt tuning"):
        check_vlm_config(cfg)
