"""The one generation engine: chat prompts (with or without images) → left-padded batch → text.

`Engine(model)` takes a `GenerativeVLM` (images enter as soft tokens or cross-attention) or a
plain transformers causal LM with its tokenizer (text only: the engine with no image). It
renders chat messages with the tokenizer's template, expands each `<image>` to the model's
image-token count, left-pads a batch, runs one transformers `generate` with a `Decoding`, and
cuts each row at its end token and stop strings. `GenerativeModel` (caption / answer / chat),
the server (`vlkit serve`, through `BatchingEngine`) and the `local:` teacher all call it.

Text LMs keep a `PrefixCache`: a long shared prompt prefix (system prompt + few-shot turns) is
computed once and reused. Layout per row: [shared prefix | left padding | the row's own
suffix], attention mask 0 on the padding, so positions (from the mask) and attention are those
of the unpadded prompt and a greedy request gives the same tokens batched as alone
(tests/test_serve.py, tests/test_engine.py check it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from vlkit.data.conversations import IMAGE_PLACEHOLDER
from vlkit.data.images import ImageInput, as_array
from vlkit.decoding import Decoding
from vlkit.generation.streaming import RowStreamer
from vlkit.models.vlm import GenerativeVLM


class RequestError(ValueError):
    """Bad input to the model (an OpenAI 400): `param` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end token or stop string) | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Request:
    """One prompt: its tokens (image placeholders expanded), at most one image, how to decode."""

    ids: list[int]
    decoding: Decoding
    image: ImageInput | None = None
    future: Future = field(default_factory=Future)  # for `BatchingEngine`
    on_text: Callable[[str], None] | None = None  # streaming: called with each new piece of text


def split_messages(messages: Sequence[dict]) -> tuple[list[dict], list[ImageInput]]:
    """HF chat messages, whose content may be a list of {"type": "image" | "text"} parts, → text
    messages with `<image>` on its own line where each image stood, and the images in order.
    Text parts are joined as they are (OpenAI's list of text parts)."""
    out, images = [], []
    for i, m in enumerate(messages):
        content, where = m["content"], f"messages[{i}].content"
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(f"{where}: must be a string or a list of parts", where)
        text = ""
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                image = next((part[k] for k in ("image", "path", "url") if part.get(k) is not None), None)
                if image is None:
                    raise RequestError(
                        f"{where}: an image part needs 'image' (or 'path'), got {part!r}", where
                    )
                images.append(image)
                text += ("\n" if text and not text.endswith("\n") else "") + IMAGE_PLACEHOLDER + "\n"
            elif kind == "text" and isinstance(part.get("text"), str):
                text += part["text"]
            else:
                raise RequestError(
                    f"{where}: a part must be {{'type': 'image' | 'text', ...}}, got {str(part)[:60]}", where
                )
        out.append({"role": m["role"], "content": text.removesuffix("\n")})
    return out, images


class PrefixCache:
    """Keys/values of recent long prompt prefixes (system prompt + few-shot turns).

    Instruction generation sends thousands of prompts that differ only in their last message;
    re-reading the same ~700-token prefix for each is most of the CPU time. A prefix is computed
    once (batch 1) and every later prompt that starts with at least `min_tokens` of it reuses
    that part (cropped). A few entries, so interleaved kinds (three system prompts) all hit.
    """

    def __init__(self, min_tokens: int = 32, entries: int = 4):
        self.min_tokens, self.size = min_tokens, entries
        self.entries: list[tuple[list[int], object]] = []  # (ids, DynamicCache), most recent last
        self.hits = 0

    def get(self, model, ids: list[int]):
        """-> (a fresh DynamicCache of batch 1 for ids[:n], n), or (None, 0) for a short prompt."""
        if len(ids) < self.min_tokens:
            return None, 0
        best, n = None, 0
        for entry in self.entries:
            common = _common_prefix([entry[0], ids])
            if common > n:
                best, n = entry, common
        if best is not None and n >= self.min_tokens:
            self.hits += 1
            self.entries.remove(best)
            self.entries.append(best)
            kv = copy.deepcopy(best[1])
            if n < len(best[0]):
                kv.crop(n - len(best[0]))  # a negative count: tokens to drop from the end
            return kv, n
        kv = model(input_ids=torch.tensor([ids]), use_cache=True).cache
        self.entries = [*self.entries[-(self.size - 1) :], (list(ids), kv)]
        return copy.deepcopy(kv), len(ids)


def _common_prefix(rows: list[list[int]]) -> int:
    n = min(len(r) for r in rows)
    for i in range(n):
        token = rows[0][i]
        if any(r[i] != token for r in rows):
            return i
    return n


class Engine:
    """Batched generation for a `GenerativeVLM` or a text-only causal LM (see the module doc)."""

    def __init__(self, model, tokenizer=None, prefix_cache: bool = True):
        self.model = model.eval()
        self.vlm = isinstance(model, GenerativeVLM)
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        lm = model.base_language_model() if self.vlm else model
        self.max_positions = getattr(lm.config, "max_position_embeddings", None)
        # A VLM's prompts are embeddings (image features inside): they are not prefix-cached.
        self.prefix_cache = PrefixCache() if prefix_cache and not self.vlm else None
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        self.pad, self.eos = (pad if pad is not None else eos), eos

    def prompt(self, messages: Sequence[dict]) -> tuple[list[int], list[ImageInput]]:
        """Chat messages (ending with a user turn) → prompt token ids with each `<image>`
        expanded to the model's image tokens, and the images in order."""
        text_messages, images = split_messages(messages)
        if images and not self.vlm:
            raise RequestError("this model reads text only: remove the image parts", "messages")
        text = self.tokenizer.apply_chat_template(text_messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.vlm:
            n, image_id = self.model.image_tokens, self.model.image_token_id
            ids = [t for i in ids for t in ([i] * n if i == image_id else [i])]
        return ids, images

    def request(
        self, messages: Sequence[dict], decoding: Decoding, on_text: Callable[[str], None] | None = None
    ) -> Request:
        """One conversation with at most one image → a `Request`; `on_text` streams its reply
        (greedy or sampling, not beam search)."""
        ids, images = self.prompt(messages)
        if len(images) > 1:
            raise RequestError(
                f"this model takes at most one image per conversation, got {len(images)}", "messages"
            )
        if on_text is not None and decoding.num_beams > 1:
            raise RequestError("beam search cannot stream: use num_beams=1 or stream=false", "stream")
        return Request(ids, decoding, images[0] if images else None, on_text=on_text)

    def complete(self, messages: Sequence[dict], decoding: Decoding) -> Completion:
        """One conversation, alone: → its completion."""
        return self.generate([self.request(messages, decoding)])[0]

    def batch(self, requests: Sequence[Request]) -> tuple[dict[str, torch.Tensor], object, int]:
        """→ (input_ids and attention_mask, int64[B, T], the prefix cache or None, T).

        Rows are [shared prefix | left padding | own suffix]; without a cached prefix, plain left padding.
        """
        rows = [r.ids for r in requests]
        kv, shared = None, 0
        if self.prefix_cache is not None:
            shared = min(_common_prefix(rows), min(len(r) for r in rows) - 1)  # every row keeps a token
            kv, shared = self.prefix_cache.get(self.model, rows[0][:shared])
            if kv is not None and len(rows) > 1:
                kv.batch_repeat_interleave(len(rows))
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        for row, ids in enumerate(rows):
            start = width - (len(ids) - shared)  # where the row's own suffix begins
            input_ids[row, :shared] = torch.tensor(ids[:shared])
            input_ids[row, start:] = torch.tensor(ids[shared:])
            mask[row, :shared], mask[row, start:] = 1, 1
        return {"input_ids": input_ids, "attention_mask": mask}, kv, width

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request], streamer=None) -> list[Completion]:
        """One `generate` call for requests with the same `Decoding.batch_key()`, each with an
        image or none; the batch runs to the longest `max_new_tokens`, each row is cut to its own."""
        decoding = requests[0].decoding
        images = [r.image for r in requests if r.image is not None]
        if images and len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} prompts: give one each, or none")
        stops = {r.decoding.stop for r in requests}
        kwargs = decoding.generate_kwargs(max(r.decoding.max_new_tokens for r in requests))
        # transformers ends a row at a stop string, matched on the prompt's tokens too: only a
        # VLM (its prompt enters as embeddings) can use it. Otherwise each row is cut afterwards.
        if self.vlm and len(stops) == 1 and decoding.stop:
            kwargs["tokenizer"] = self.tokenizer
        else:
            kwargs.pop("stop_strings", None)
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
        inputs, kv, width = self.batch(requests)
        rows = None
        if streamer is None and any(r.on_text is not None for r in requests):
            streamer = rows = RowStreamer(self.tokenizer, requests, self.eos)
        kwargs |= {"streamer": streamer, "pad_token_id": self.pad, "eos_token_id": self.eos}
        if self.vlm:
            pixel_values = self.model.vision.preprocess([as_array(im) for im in images]) if images else None
            new = self.model.generate(**inputs, pixel_values=pixel_values, **kwargs)  # (B, new)
        else:
            new = self.model.generate(**inputs, cache=kv, **kwargs)[:, width:]  # (B, new)
        completions = [self._completion(r, row.tolist()) for r, row in zip(requests, new)]
        if rows is not None:
            rows.finish(completions)
        return completions

    def _completion(self, request: Request, new: list[int]) -> Completion:
        new, finish = new[: request.decoding.max_new_tokens], "length"
        if self.eos in new:
            new, finish = new[: new.index(self.eos)], "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        cuts = [text.index(s) for s in request.decoding.stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        return Completion(text, finish, len(request.ids), len(new))
