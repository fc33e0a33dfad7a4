"""`vlkit serve` for a generative VLM: OpenAI chat with image parts through the official client
(sync, async, streaming), answers equal to the one engine run in-process."""

import asyncio
import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
import torch
from PIL import Image

import vlkit
from vlkit.decoding import Decoding
from vlkit.generation import BatchingEngine
from vlkit.serve.app import create_app
from vlkit.serve.server import BackgroundServer

NAME = "tiny-vlm"


def data_url(image: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def picture(seed: int) -> np.ndarray:
    image = np.full((32, 32, 3), 255, np.uint8)
    x = 4 + 6 * seed
    image[8:20, x : x + 10, seed % 3] = 0
    return image


def ask(image: np.ndarray, question: str, as_url: bool = True) -> dict:
    part = (
        {"type": "image_url", "image_url": {"url": data_url(image)}}
        if as_url
        else {"type": "image", "image": image}
    )
    return {"role": "user", "content": [part, {"type": "text", "text": question}]}


@pytest.fixture(scope="module")
def noisy_vlm(tiny_vlm_run):
    """The tiny VLM with seeded noise on its weights, so greedy replies are several tokens long
    and differ between prompts (the briefly trained model ends every reply at once)."""
    model = vlkit.load(tiny_vlm_run)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(torch.randn(p.shape, generator=generator), alpha=0.3)
    return model


@pytest.fixture(scope="module")
def server(noisy_vlm):
    engine = BatchingEngine(noisy_vlm.engine, max_batch=8, wait_ms=20)
    with BackgroundServer(create_app(engine, NAME)) as url:
        yield url


def post(url: str, body: dict) -> tuple[int, dict]:
    """(status, JSON reply) of a POST, errors included."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def alone(model, messages: list[dict], max_tokens: int, **decoding) -> str:
    return model.engine.complete(messages, Decoding(max_new_tokens=max_tokens, **decoding)).text


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0)


def test_image_question_through_the_openai_client_matches_the_engine(server, noisy_vlm):
    reply = client(server).chat.completions.create(
        model=NAME, messages=[ask(picture(0), "What color is it?")], max_tokens=10, temperature=0
    )
    expected = noisy_vlm.engine.complete(
        [ask(picture(0), "What color is it?", as_url=False)], Decoding(max_new_tokens=10)
    )
    assert reply.choices[0].message.content == expected.text and expected.text
    assert reply.usage.prompt_tokens == expected.prompt_tokens  # image tokens included
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
    assert reply.choices[0].finish_reason == expected.finish_reason


def test_multi_turn_conversation(server, noisy_vlm):
    turns = [
        {"role": "system", "content": "You describe pictures."},
        ask(picture(1), "Describe the image."),
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "And its size?"},
    ]
    local = [turns[0], ask(picture(1), "Describe the image.", as_url=False), *turns[2:]]
    reply = client(server).chat.completions.create(model=NAME, messages=turns, max_tokens=8)
    assert reply.choices[0].message.content == alone(noisy_vlm, local, 8)
    first_turn_only = alone(noisy_vlm, local[:2], 8)
    assert reply.choices[0].message.content != first_turn_only  # the later turns were read


def test_async_client_concurrent_requests_equal_each_alone(server, noisy_vlm):
    questions = [(picture(i), q) for i, q in enumerate(["What color?", "Where is it?", "How big?"])]

    async def main():
        aclient = openai.AsyncOpenAI(base_url=server, api_key="x", max_retries=0)
        replies = await asyncio.gather(
            *[
                aclient.chat.completions.create(model=NAME, messages=[ask(im, q)], max_tokens=8)
                for im, q in questions
            ]
        )
        await aclient.close()
        return [r.choices[0].message.content for r in replies]

    expected = [alone(noisy_vlm, [ask(im, q, as_url=False)], 8) for im, q in questions]
    assert asyncio.run(main()) == expected
    assert len(set(expected)) > 1


def test_stream_sends_pieces_as_generated_that_join_to_the_greedy_reply(server):
    messages = [ask(picture(2), "Describe the image.")]
    full = client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=16)
    stream = client(server).chat.completions.create(
        model=NAME, messages=messages, max_tokens=16, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # streamed token by token, not one chunk at the end
    assert "".join(pieces) == full.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_async_stream(server):
    messages = [ask(picture(3), "What color is it?")]
    full = client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=12)

    async def main():
        aclient = openai.AsyncOpenAI(base_url=server, api_key="x", max_retries=0)
        pieces = []
        async for chunk in await aclient.chat.completions.create(
            model=NAME, messages=messages, max_tokens=12, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        await aclient.close()
        return pieces

    pieces = asyncio.run(main())
    assert len(pieces) > 1 and "".join(pieces) == full.choices[0].message.content


def test_stop_strings_cut_the_reply_streamed_or_not(server):
    messages = [ask(picture(4), "Describe the image.")]
    full = client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=16)
    text = full.choices[0].message.content
    stop = text[len(text) // 2 :][:2]
    assert len(text) > 4 and stop
    cut = client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=16, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    stream = client(server).chat.completions.create(
        model=NAME, messages=messages, max_tokens=16, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == text[: text.index(stop)]


def test_sampling_with_a_seed_is_reproducible(server, noisy_vlm):
    messages = [ask(picture(5), "Describe the image.")]
    settings = {"model": NAME, "messages": messages, "max_tokens": 12, "temperature": 1.5, "top_p": 0.9}
    first = client(server).chat.completions.create(**settings, seed=3).choices[0].message.content
    again = client(server).chat.completions.create(**settings, seed=3).choices[0].message.content
    local = [ask(picture(5), "Describe the image.", as_url=False)]
    expected = noisy_vlm.engine.complete(
        local, Decoding.from_openai(max_tokens=12, temperature=1.5, top_p=0.9, seed=3)
    ).text
    assert first == again == expected
    greedy = client(server).chat.completions.create(model=NAME, messages=messages, max_tokens=12)
    assert first != greedy.choices[0].message.content


def test_n_above_one_is_refused(server):
    with pytest.raises(openai.BadRequestError) as e:
        client(server).chat.completions.create(
            model=NAME, messages=[ask(picture(0), "Hi?")], max_tokens=4, n=2
        )
    assert e.value.body["param"] == "n"


def test_caption_gives_vlkit_captions_own_captions(server, noisy_vlm):
    images = [picture(0), picture(2)]
    status, body = post(f"{server}/caption", {"model": NAME, "images": [data_url(im) for im in images]})
    assert status == 200, body
    expected = noisy_vlm.caption(images, decoding=Decoding(max_new_tokens=48))  # vlkit caption's default
    assert [row["caption"] for row in body["data"]] == expected and all(expected)
    assert [row["index"] for row in body["data"]] == [0, 1] and body["usage"]["completion_tokens"] > 0
    prompted = {"images": [data_url(images[0])], "prompt": "What is it?", "max_tokens": 5}
    expected = noisy_vlm.caption(images[:1], "What is it?", Decoding(max_new_tokens=5))
    assert [row["caption"] for row in post(f"{server}/caption", prompted)[1]["data"]] == expected


def test_answer_gives_vlkit_asks_answer(server, noisy_vlm):
    question = "What color is the circle?"
    status, body = post(f"{server}/answer", {"image": data_url(picture(1)), "question": question})
    assert status == 200, body
    expected = noisy_vlm.answer([picture(1)], [question], Decoding(max_new_tokens=8))  # vlkit ask's
    assert [body["answer"]] == expected and body["object"] == "answer"
    as_typed = post(f"{server}/answer", {"image": data_url(picture(1)), "question": question, "short": False})
    expected = noisy_vlm.answer([picture(1)], [question], Decoding(max_new_tokens=8), short=False)
    assert [as_typed[1]["answer"]] == expected


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/caption", {"images": []}, "images"),
        ("/caption", {"images": ["data:image/png;base64,AAAA"]}, "images[0]"),
        ("/answer", {"image": "x", "question": ""}, "question"),
        ("/answer", {"image": "data:,", "question": "q", "max_tokens": 10**6}, "max_tokens"),
    ],
)
def test_caption_and_answer_name_the_bad_field(server, path, body, param):
    status, reply = post(f"{server}{path}", body)
    assert status == 400 and reply["error"]["param"] == param, reply


@pytest.mark.parametrize("path", ["/search", "/embeddings", "/classify"])
def test_a_contrastive_endpoint_says_what_this_model_is_for(server, path):
    status, reply = post(f"{server}{path}", {"query": "a", "input": ["a"], "images": ["a"], "labels": ["a"]})
    error = reply["error"]
    assert status == 400 and error["code"] == "wrong_model_kind" and error["param"] == "model"
    assert f"v1{path} needs a contrastive model" in error["message"]
    assert "a VLM that writes text" in error["message"] and "/v1/caption" in error["message"]
