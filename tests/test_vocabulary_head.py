"""vlm.data_vocabulary: the LM head scores only the tokens of the training data's texts."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import vlkit
from vlkit.export import export
from vlkit.models.vocabulary_head import VocabularyHead, subset_loss
from vlkit.train.checkpoint import latest_checkpoint
from vlkit.train.loop import prepare, train


class _Tokens:
    def convert_ids_to_tokens(self, i: int) -> str:
        return f"tok{i}"


def test_the_head_scores_its_vocabulary_and_nothing_else():
    torch.manual_seed(0)
    linear = nn.Linear(8, 50, bias=False)
    head = VocabularyHead(linear, torch.tensor([3, 7, 20, 41]))
    hidden = torch.randn(5, 8)
    full = head(hidden)
    assert full.shape == (5, 50)
    assert torch.equal(full[:, [3, 7, 20, 41]], linear(hidden)[:, [3, 7, 20, 41]])
    assert torch.isinf(full[:, [0, 4, 49]]).all()
    with head.subset():
        assert torch.equal(head(hidden), full[:, [3, 7, 20, 41]])
    targets = torch.tensor([20, 3, 41, 7, 20])
    columns = head.positions(targets, _Tokens())
    assert columns.tolist() == [2, 0, 3, 1, 2]
    # the loss over the subset is the cross-entropy of the masked full logits
    with head.subset():
        loss = subset_loss(head(hidden), None, 50, shift_labels=columns)
    assert torch.allclose(loss, nn.functional.cross_entropy(full, targets))
    loss.backward()
    touched = linear.weight.grad.abs().sum(1).nonzero().flatten().tolist()
    assert touched == [3, 7, 20, 41]
    with pytest.raises(ValueError, match=r"'tok5' \(id 5\) is not among the 4 tokens"):
        head.positions(torch.tensor([3, 5]), _Tokens())


def test_a_saved_vocabulary_replaces_the_new_one_whatever_its_size():
    saved = VocabularyHead(nn.Linear(8, 50, bias=True), torch.tensor([1, 2, 9]))
    fresh = VocabularyHead(nn.Linear(8, 50, bias=True), torch.zeros(0, dtype=torch.long))
    fresh.load_state_dict(saved.state_dict())
    assert fresh.vocabulary.tolist() == [1, 2, 9]
    hidden = torch.randn(2, 8)
    assert torch.equal(fresh(hidden), saved(hidden))


def _words_cfg(tiny_vlm_cfg, tmp_path, name: str):
    v = tiny_vlm_cfg.vlm
    v.language_model, v.logits_at_answers, v.data_vocabulary = "gpt-tiny-words", True, True
    tiny_vlm_cfg.train.out_dir = str(tmp_path / name)
    return tiny_vlm_cfg


def test_the_answer_loss_is_the_restricted_softmax_and_faster_columns_change_nothing(tiny_vlm_cfg, tmp_path):
    run = prepare(_words_cfg(tiny_vlm_cfg, tmp_path, "loss"))
    model, tokenizer = run.model, run.model.tokenizer
    vocabulary = model.base_language_model().get_output_embeddings().vocabulary
    assert 20 < len(vocabulary) < len(tokenizer) / 20  # the scenes' words, not MiniLM's 30k
    batch = run.objective.collate(run.batcher.samples(0))
    with torch.no_grad():
        subset = model(**batch).loss  # logits at answer positions, over the vocabulary's columns
        model.cfg.logits_at_answers = False  # every position, full-size logits, -inf outside
        full = model(**batch).loss
    assert torch.isfinite(subset) and torch.allclose(subset, full, rtol=1e-5)


def test_trains_saves_loads_resumes_and_says_only_its_words(tiny_vlm_cfg, tmp_path):
    cfg = _words_cfg(tiny_vlm_cfg, tmp_path, "straight")
    cfg.train.steps, cfg.train.save_every = 4, 2
    straight = train(cfg, progress=False)
    cfg.train.out_dir = str(tmp_path / "crashed")
    crashed = train(cfg, stop_at_step=3, progress=False)
    train(cfg, progress=False)  # resumes: the checkpoint's vocabulary, then the same steps
    a, b = (load_file(str(latest_checkpoint(r) / "model.safetensors")) for r in (straight, crashed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    key = next(k for k in a if k.endswith("lm_head.vocabulary"))

    model = vlkit.load(straight)
    head = model.model.base_language_model().get_output_embeddings()
    assert torch.equal(head.vocabulary, a[key])
    image = vlkit.data.open_named("scenes")[0]["image"]
    prompt = model.encode_prompts([[{"role": "user", "content": "<image>\nWhat color is the circle?"}]])
    pixels = model.model.vision.preprocess([image])
    torch.manual_seed(0)  # sampling: any token with a finite score could come out
    new = model.model.generate(**prompt, pixel_values=pixels, max_new_tokens=8, do_sample=True)
    assert set(new.flatten().tolist()) <= set(a[key].tolist())
    with pytest.raises(ValueError, match="export to LLaVA: vlm.data_vocabulary"):
        export(straight, tmp_path / "hf")


def test_stage_two_keeps_stage_one_vocabulary_and_asks_for_the_setting(tiny_vlm_cfg, tmp_path):
    stage1 = train(_words_cfg(tiny_vlm_cfg, tmp_path, "stage1"), progress=False)
    tiny_vlm_cfg.vlm.init_from, tiny_vlm_cfg.train.steps = str(stage1), 1
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "stage2")
    stage2 = train(tiny_vlm_cfg, progress=False)
    vocab = [
        load_file(str(latest_checkpoint(r) / "model.safetensors"))["language_model.lm_head.vocabulary"]
        for r in (stage1, stage2)
    ]
    assert torch.equal(*vocab)
    tiny_vlm_cfg.vlm.data_vocabulary = False
    tiny_vlm_cfg.train.out_dir = str(tmp_path / "stage2-without")
    with pytest.raises(ValueError, match="was trained with vlm.data_vocabulary; set it here too"):
        train(tiny_vlm_cfg, progress=False)


def test_without_logits_at_answers_it_is_refused(tiny_vlm_cfg, tmp_path):
    cfg = _words_cfg(tiny_vlm_cfg, tmp_path, "refused")
    cfg.vlm.logits_at_answers = False
    with pytest.raises(ValueError, match="vlm.data_vocabulary: set vlm.logits_at_answers too"):
        prepare(cfg)
