"""The LLaVA generator against the real local server (`vlkit serve`'s app) with the openai client.

The served model is a real transformers Llama whose weights are set by hand so that greedy
decoding writes one fixed, parseable reply whatever the prompt: the attention and MLP outputs
are zero, so the last token alone picks the next (a bigram chain "\\n" -> question -> answer ->
end). Everything else is the production path: chat template, micro-batched generate, HTTP,
the official client, parsing, validation and the consistency check.
"""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from vlkit.config import VLMConfig
from vlkit.data.contexts import scene_contexts
from vlkit.generation import BatchingEngine, Engine
from vlkit.instruct import generate_llava
from vlkit.instruct.prompts import KINDS, llava_messages
from vlkit.models.language_models import train_chat_tokenizer
from vlkit.models.registry import build_language_model
from vlkit.serve.app import create_app
from vlkit.serve.server import BackgroundServer

QUESTION = "Question: How many shapes are there?\n"
ANSWER = "Answer: There are two shapes in the picture, each with a flat and solid color."


def scripted_lm(folder) -> str:
    # Trained on the prompts, so they are short in tokens and the test is quick.
    prompts = [m["content"] for k in KINDS for m in llava_messages(k, next(scene_contexts(1)).symbolic())]
    tokenizer = train_chat_tokenizer(prompts * 3, 1500, 4096)
    tokenizer.add_tokens([QUESTION, ANSWER])
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    q, a = tokenizer.convert_tokens_to_ids([QUESTION, ANSWER])
    chain = {newline: q, q: a, a: tokenizer.eos_token_id}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.nn.functional.normalize(torch.randn(len(tokenizer), 64), dim=-1) * 8  # (V, D)
        model.model.embed_tokens.weight.copy_(embed)
        model.lm_head.weight.zero_()
        for current, following in chain.items():
            model.lm_head.weight[following] += 10 * embed[current]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = scripted_lm(tmp_path_factory.mktemp("scripted"))
    model, tokenizer = build_language_model(path, VLMConfig())
    engine = BatchingEngine(Engine(model, tokenizer), max_batch=8, wait_ms=20)
    with BackgroundServer(create_app(engine, "scripted")) as url:
        yield path, url, engine


def test_llava_generator_against_the_local_server(served, tmp_path):
    path, url, engine = served
    contexts = list(scene_contexts(8))
    teacher = f"openai:scripted@{url}"
    stats = generate_llava(
        contexts, tmp_path, teacher, ["conversation", "detail"], concurrency=4, progress=False
    )
    data = json.loads((tmp_path / "llava.json").read_text())
    two = [c for c in contexts if len(c.objects) == 2]
    assert 0 < len(two) < 8  # both outcomes occur
    # a record is kept exactly when "two shapes" is true of its scene; the rest are flagged
    assert {r["id"] for r in data} == {f"{c.id}-{k}" for c in two for k in ("conversation", "detail")}
    conv = next(r for r in data if r["id"].endswith("conversation"))
    assert conv["conversations"][0]["value"] in (
        "<image>\nHow many shapes are there?",
        "How many shapes are there?\n<image>",
    )
    assert conv["conversations"][1]["value"] == ANSWER.removeprefix("Answer: ")
    assert stats["consistency"][teacher] == {
        "checked": 16,
        "errors": 16 - 2 * len(two),
        "error_rate": round(1 - len(two) / 8, 4),
    }
    assert stats["rejection_reasons"] == {"inconsistent with the scene": 16 - 2 * len(two)}
    assert stats["teacher_calls"] == 16 and max(engine.batches) > 1  # concurrent calls were batched

    local = generate_llava(
        contexts, tmp_path / "local", f"local:{path}", ["conversation", "detail"], progress=False
    )
    assert local["records"] == stats["records"]
    assert (
        json.loads((tmp_path / "local" / "llava.json").read_text()) == data
    )  # same greedy replies in-process
