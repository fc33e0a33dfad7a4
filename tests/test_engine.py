"""The one generation engine: `GenerativeModel` and the server's micro-batching engine give the
same greedy tokens for a VLM, batched or alone; one `Decoding` type maps OpenAI's fields."""

import pytest
import torch

import vlkit
from vlkit.data.conversations import vqa_prompt
from vlkit.decoding import Decoding
from vlkit.generation import BatchingEngine, Engine, RequestError, split_messages
from vlkit.instruct import Settings

QUESTIONS = ["What color?", "How many shapes are there?", "Where is the star?", "Is it big?"]


@pytest.fixture(scope="module")
def noisy_vlm(tiny_vlm_run):
    """The tiny VLM with seeded noise on its weights: greedy replies differ between prompts (the
    briefly trained model answers every prompt with the same end token, a weak check)."""
    model = vlkit.load(tiny_vlm_run)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(torch.randn(p.shape, generator=generator), alpha=0.3)
    return model


def test_vlm_greedy_answers_are_the_same_through_the_serving_engine(noisy_vlm):
    scenes = vlkit.data.open_named("scenes")
    images = [scenes[i]["image"] for i in range(len(QUESTIONS))]
    decoding = Decoding(max_new_tokens=6)
    batched = noisy_vlm.answer(images, QUESTIONS, decoding)
    alone = [noisy_vlm.answer([im], [q], decoding)[0] for im, q in zip(images, QUESTIONS)]
    served = BatchingEngine(noisy_vlm.engine, max_batch=8, wait_ms=200)
    futures = [
        served.submit(
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": im}, {"type": "text", "text": vqa_prompt(q)}],
                }
            ],
            decoding,
        )
        for im, q in zip(images, QUESTIONS)
    ]
    replies = [f.result(timeout=120).text.strip() for f in futures]
    assert batched == alone == replies
    assert len(set(alone)) > 1  # the replies depend on the prompt and image
    assert max(served.batches) > 1  # the served requests really were batched


def test_a_text_model_refuses_images_and_bad_parts():
    from vlkit.config import VLMConfig
    from vlkit.models.language_models import gpt_tiny

    lm, tokenizer = gpt_tiny(
        VLMConfig(lm_width=16, lm_layers=1, lm_heads=2, lm_vocab_size=300), None, QUESTIONS * 20
    )
    engine = Engine(lm, tokenizer)
    image = {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "hi"}]}
    with pytest.raises(RequestError, match="text only") as e:
        engine.request([image], Decoding())
    assert e.value.param == "messages"
    with pytest.raises(RequestError, match="'type': 'image' | 'text'") as e:
        engine.request([{"role": "user", "content": [{"type": "image_url"}]}], Decoding())
    assert e.value.param == "messages[0].content"


def test_split_messages_puts_each_image_on_its_own_line():
    parts = [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
        {"type": "image", "image": "x.png"},
    ]
    messages, images = split_messages([{"role": "user", "content": [parts[2], *parts[:2], parts[2]]}])
    assert messages == [{"role": "user", "content": "<image>\nab\n<image>"}] and images == ["x.png"] * 2


def test_one_decoding_type_maps_openai_fields_and_keeps_teacher_cache_keys():
    assert Decoding.from_openai(max_tokens=256, temperature=0) == Decoding(max_new_tokens=256)
    sampled = Decoding.from_openai(100, temperature=0.7, top_p=0.9, stop=["\n"])
    assert sampled.do_sample and sampled.stop == ("\n",)
    assert sampled.openai_fields() == {"max_tokens": 100, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"]}
    assert Decoding.from_openai(**sampled.openai_fields()) == sampled
    # the SQLite reply cache keys of earlier runs (max_tokens, temperature, top_p) still match
    assert Settings().cache_fields() == {"max_tokens": 512, "temperature": 0.0, "top_p": 1.0}
    assert Decoding(stop=["x"]) == Decoding(stop=("x",))  # frozen and hashable: a batch key
    assert Decoding(max_new_tokens=5).batch_key() == Decoding(max_new_tokens=9, stop=["."]).batch_key()
    with pytest.raises(ValueError, match="max_new_tokens"):
        Decoding(max_new_tokens=0)
