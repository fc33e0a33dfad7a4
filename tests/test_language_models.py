"""Language models of the registry: gpt-tiny, the packaged SmolLM2 (real weights), errors."""

import pytest
import torch

from vlkit.config import VLMConfig
from vlkit.models.language_models import cache_root
from vlkit.models.registry import ModelNotFoundError, build_language_model


def test_gpt_tiny_tokenizer_round_trips_and_knows_the_chat_format():
    model, tok = build_language_model(
        "gpt-tiny", VLMConfig(lm_width=16, lm_layers=1, lm_heads=2), texts=["a red circle."] * 30
    )
    text = tok.apply_chat_template([{"role": "user", "content": "<image>\nHi there, 42!"}], tokenize=False)
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: any text, spaces kept
    assert (
        tok.convert_tokens_to_ids("<image>") != tok.unk_token_id
        and tok.pad_token
        and tok.eos_token == "<|im_end|>"
    )
    assert model.config.vocab_size == len(tok)


def test_gpt_tiny_weights_start_at_the_configured_standard_deviation():
    """`vlm.lm_init_std` reaches every linear layer and the (tied) embeddings."""
    texts = ["a red circle."] * 30
    for std in (0.02, 0.06):
        model, _ = build_language_model(
            "gpt-tiny", VLMConfig(lm_width=64, lm_layers=1, lm_heads=2, lm_init_std=std), texts=texts
        )
        assert model.config.initializer_range == std
        for weight in (
            model.model.layers[0].self_attn.q_proj.weight,
            model.model.layers[0].mlp.down_proj.weight,
            model.get_input_embeddings().weight,
        ):
            assert weight.std().item() == pytest.approx(std, rel=0.1)


def test_names_of_other_kinds_and_unknown_ids_are_clear_errors():
    with pytest.raises(
        ValueError,
        match="is an image encoder; language models: gpt-tiny, gpt-tiny-words, gpt-tiny-reader, smollm2-135m",
    ):
        build_language_model("vit-tiny", VLMConfig())
    with pytest.raises(
        ModelNotFoundError, match="Offline choices: gpt-tiny, gpt-tiny-words, gpt-tiny-reader, smollm2-135m"
    ):
        build_language_model("no-such-org/no-such-model", VLMConfig())


@pytest.mark.slow
def test_smollm2_is_the_real_instruct_model_and_its_conversion_is_cached():
    model, tok = build_language_model("smollm2-135m", VLMConfig())
    assert (cache_root() / "smollm2-135m" / "model.safetensors").is_file()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1] :])
