"""Python API for trained generative VLMs: captions, short-answer VQA, chat, streaming.

    model = vlkit.load("runs/llava-scenes")          # a GenerativeModel for generative runs
    model.caption(["a.png"])                          # ["a small red circle above a blue star."]
    model.answer(["a.png"], ["What color is the circle?"])   # ["red"]
    model.chat([{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                             {"type": "text", "text": "What is left of the star?"}]}])
    for piece in model.stream(messages): print(piece, end="")

The task helpers build chat prompts; `vlkit.generation.Engine` (the one engine, shared with the
server and the `local:` teacher) left-pads them into a batch and runs transformers' `generate` on
the language model with the image tokens already in its input embeddings: greedy, beam search or
sampling, with a KV cache, stop strings and `max_new_tokens` (see `vlkit.decoding.Decoding`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

from vlkit.config import Config
from vlkit.data.conversations import CAPTION_PROMPT, IMAGE_PLACEHOLDER, vqa_prompt
from vlkit.data.images import ImageError, ImageInput, as_array, read_images, require_readable
from vlkit.decoding import Decoding
from vlkit.generation.engine import Engine, Request, RequestError, split_messages
from vlkit.models.vlm import GenerativeVLM


class GenerativeModel:
    """A loaded generative VLM with task helpers (see the module docstring)."""

    def __init__(self, model: GenerativeVLM, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path
        self.tokenizer = model.tokenizer
        self.engine = Engine(model)

    # ------------------------------------------------------------------ batched core
    def encode_prompts(self, conversations: Sequence[list[dict]]) -> dict[str, torch.Tensor]:
        """Text conversations (each ending with a user turn) → left-padded input_ids, attention_mask."""
        return self.engine.batch([self.engine.request(c, Decoding()) for c in conversations])[0]

    def generate(
        self,
        conversations: Sequence[list[dict]],
        images: Sequence[ImageInput] | None,
        decoding: Decoding | None = None,
        streamer=None,
    ) -> list[str]:
        """One image per conversation (or none for all): → the assistant's replies."""
        decoding = decoding or Decoding()
        if images and len(images) != len(conversations):
            raise ValueError(f"{len(images)} images for {len(conversations)} conversations: give one each")
        requests = [
            Request(self.engine.prompt(c)[0], decoding, images[i] if images else None)
            for i, c in enumerate(conversations)
        ]
        return [c.text.strip() for c in self.engine.generate(requests, streamer)]

    # ------------------------------------------------------------------ tasks
    def caption(
        self,
        images: Sequence[ImageInput],
        prompt: str | None = None,
        decoding: Decoding | None = None,
        strict: bool = True,
    ) -> list[str] | list[str | ImageError]:
        """A caption per image; `prompt` conditions it (prompted captioning). strict=False: an
        unreadable image gets its `ImageError` in its place instead of stopping the batch."""
        text = f"{IMAGE_PLACEHOLDER}\n{prompt or CAPTION_PROMPT}"
        return self._batched(images, [text] * len(images), decoding, strict)

    def answer(
        self,
        images: Sequence[ImageInput],
        questions: Sequence[str],
        decoding: Decoding | None = None,
        strict: bool = True,
        short: bool = True,
    ) -> list[str] | list[str | ImageError]:
        """One answer per (image, question) pair; strict as in `caption`. short: each question gets
        the training data's short-answer instruction appended (`SHORT_ANSWER`: "Answer with a
        single word or number."), as VQA benchmarks ask; short=False sends it as written, as
        `chat` and an exported model do."""
        if len(images) != len(questions):
            raise ValueError(
                f"{len(images)} images for {len(questions)} questions: give one image per question"
            )
        texts = [f"{IMAGE_PLACEHOLDER}\n{vqa_prompt(q) if short else q}" for q in questions]
        return self._batched(images, texts, decoding or Decoding(max_new_tokens=8), strict)

    def chat(
        self, messages: Sequence[dict], decoding: Decoding | None = None, max_new_tokens: int | None = None
    ) -> str:
        """One reply to a conversation whose content may hold images (at most one).
        `max_new_tokens` overrides the decoding's (the describer protocol of `vlkit.instruct`)."""
        if max_new_tokens is not None:
            decoding = dataclasses.replace(decoding or Decoding(), max_new_tokens=max_new_tokens)
        text_messages, images = self._chat_inputs(messages)
        return self.generate([text_messages], images or None, decoding)[0]

    def stream(self, messages: Sequence[dict], decoding: Decoding | None = None) -> Iterator[str]:
        """Like `chat`, as an iterator of text pieces while they are generated. The images are
        read before generation starts (an unreadable one is its `ImageError`, raised here), and an
        error inside generation is raised here too, after the pieces streamed so far."""
        text_messages, images = self._chat_inputs(messages)
        arrays = [as_array(im) for im in images]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                self.generate([text_messages], arrays or None, decoding, streamer)
            except BaseException as e:  # handed to the caller's thread below
                errors.append(e)
                streamer.end()  # the reader would otherwise wait for pieces forever

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        yield from streamer
        worker.join()
        if errors:
            raise errors[0]

    def _chat_inputs(self, messages: Sequence[dict]) -> tuple[list[dict], list]:
        text_messages, images = split_messages(messages)
        if len(images) > 1:
            raise RequestError(f"this model takes at most one image per conversation, got {len(images)}")
        if not text_messages or text_messages[-1]["role"] != "user":
            raise RequestError("chat: the conversation must end with a user message", "messages")
        return text_messages, images

    def _batched(
        self,
        images: Sequence[ImageInput],
        texts: list[str],
        decoding: Decoding | None,
        strict: bool = True,
        batch_size: int = 64,
    ) -> list[str | ImageError]:
        out: list[str | ImageError] = []
        for start in range(0, len(texts), batch_size):
            arrays, kept, failures = read_images(images[start : start + batch_size], strict)
            conversations = [[{"role": "user", "content": texts[start + i]}] for i in kept]
            replies = iter(self.generate(conversations, arrays, decoding) if arrays else [])
            errors, readable = iter(failures), set(kept)
            size = min(batch_size, len(texts) - start)
            out += [next(replies) if i in readable else next(errors) for i in range(size)]
        require_readable(len(images), [x for x in out if isinstance(x, ImageError)])
        return out
