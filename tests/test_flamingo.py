"""Gated cross-attention on a frozen tiny Llama: exact identity at init, training, media batches."""

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from vlkit.models.flamingo import add_gated_xattn

DV, VOCAB = 12, 64


def tiny_lm(layers: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def gated_pair(every: int = 2):
    lm = tiny_lm()
    frozen = copy.deepcopy(lm)
    torch.manual_seed(1)
    return add_gated_xattn(lm, vision_dim=DV, every=every), frozen


def inputs(batch: int = 2, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, 7), generator=g)
    media = torch.randn(batch, 5, DV, generator=g)
    return ids, media


def test_blocks_sit_before_every_kth_layer_and_only_they_train():
    gated, _ = gated_pair(every=2)
    assert gated.layer_ids == [0, 2] and len(gated.xattn) == 2
    trainable = [n for n, p in gated.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("xattn.") for n in trainable)
    assert all(not p.requires_grad for p in gated.lm.parameters())
    # the LM's own keys are unchanged: it can still be saved / exported on its own
    assert set(gated.lm.state_dict()) == set(tiny_lm().state_dict())


def test_at_init_logits_and_greedy_generation_equal_the_frozen_lm_exactly():
    gated, frozen = gated_pair(every=1)
    ids, media = inputs()
    with torch.no_grad(), gated.media(media):
        assert torch.equal(gated(input_ids=ids).logits, frozen(input_ids=ids).logits)
        embeds = frozen.get_input_embeddings()(ids)
        assert torch.equal(gated(inputs_embeds=embeds).logits, frozen(inputs_embeds=embeds).logits)
        kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=None)
        assert torch.equal(gated.generate(input_ids=ids, **kwargs), frozen.generate(input_ids=ids, **kwargs))


def train_one_step(gated, ids, media) -> None:
    opt = torch.optim.AdamW([p for p in gated.parameters() if p.requires_grad], lr=0.05)
    with gated.media(media):
        gated(input_ids=ids, labels=ids).loss.backward()
    opt.step()


def test_one_step_opens_the_gates_and_the_image_changes_the_logits():
    gated, frozen = gated_pair()
    ids, media = inputs()
    train_one_step(gated, ids, media)
    assert all(b.attn_gate.abs().item() > 0 and b.ff_gate.abs().item() > 0 for b in gated.xattn)
    with torch.no_grad():
        with gated.media(media):
            logits = gated(input_ids=ids).logits
        with gated.media(torch.randn_like(media)):
            other_image = gated(input_ids=ids).logits
        assert not torch.allclose(logits, frozen(input_ids=ids).logits)
        assert not torch.allclose(logits, other_image)
    assert all(
        torch.equal(a, b) for a, b in zip(gated.lm.state_dict().values(), frozen.state_dict().values())
    )


def test_beam_search_and_several_sequences_repeat_the_media_per_sample():
    gated, _ = gated_pair()
    ids, media = inputs()
    train_one_step(gated, ids, media)
    with torch.no_grad(), gated.media(media):
        out = gated.generate(
            input_ids=ids, max_new_tokens=3, num_beams=2, num_return_sequences=2, eos_token_id=None
        )
        assert out.shape == (4, 7 + 3)
        # each sample's beams see its own image: same as generating that sample alone
        with gated.media(media[1:]):
            alone = gated.generate(
                input_ids=ids[1:], max_new_tokens=3, num_beams=2, num_return_sequences=2, eos_token_id=None
            )
        assert torch.equal(out[2:], alone)


def test_media_errors_are_clear():
    gated, _ = gated_pair()
    ids, media = inputs(batch=3)
    with pytest.raises(ValueError, match="3 rows, the media 2"), gated.media(media[:2]):
        gated(input_ids=ids)
    with pytest.raises(RuntimeError, match="no media set"):
        gated(input_ids=ids)
    with pytest.raises(ValueError, match=r"float\[B, M, D\]"):
        gated.set_media(media[0])
    with pytest.raises(ValueError, match="xattn_every=9"):
        add_gated_xattn(tiny_lm(), vision_dim=DV, every=9)


def test_state_dict_round_trips_through_safetensors_into_a_rebuilt_structure(tmp_path):
    gated, _ = gated_pair()
    ids, media = inputs()
    train_one_step(gated, ids, media)
    save_file(gated.state_dict(), tmp_path / "model.safetensors")
    state = load_file(tmp_path / "model.safetensors")
    torch.manual_seed(7)
    rebuilt = add_gated_xattn(tiny_lm(), vision_dim=DV, every=2)
    with torch.no_grad(), gated.media(media), rebuilt.media(media):
        before = rebuilt(input_ids=ids).logits
        rebuilt.load_state_dict(state, strict=True)
        assert not torch.equal(before, rebuilt(input_ids=ids).logits)
        assert torch.equal(rebuilt(input_ids=ids).logits, gated(input_ids=ids).logits)


def test_remove_gives_back_the_plain_lm():
    gated, frozen = gated_pair()
    ids, media = inputs()
    train_one_step(gated, ids, media)
    lm = gated.remove()
    with torch.no_grad():
        assert torch.equal(lm(input_ids=ids).logits, frozen(input_ids=ids).logits)


def test_cached_generation_from_embeddings_matches_uncached():
    """With a KV cache each step feeds only the new token through the blocks: same tokens."""
    gated, _ = gated_pair()
    ids, media = inputs()
    train_one_step(gated, ids, media)
    embeds = gated.lm.get_input_embeddings()(ids).detach()
    mask = torch.ones_like(ids)
    kwargs = dict(
        inputs_embeds=embeds, attention_mask=mask, max_new_tokens=5, do_sample=False, eos_token_id=None
    )
    with torch.no_grad(), gated.media(media):
        cached = gated.generate(use_cache=True, **kwargs)
        uncached = gated.generate(use_cache=False, **kwargs)
    assert cached.shape == (2, 5)  # from embeddings: new tokens only
    assert torch.equal(cached, uncached)
