"""Text generation for the server and the local teacher, with micro-batching.

Concurrent requests are collected while they keep arriving (gaps under `wait_ms`, up to `max_batch`), left-padded into
one batch and generated with one `model.generate` call, then split. On a CPU a batch of 8 short
prompts costs little more than one (the matmuls are too small to fill the cores), which is
where the server's throughput under concurrency comes from. Requests are grouped by sampling
settings; a greedy request gives the same tokens batched as alone (left padding, attention
mask and position ids from the mask: tests/test_serve.py checks it).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch


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
class _Request:
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    future: Future = field(default_factory=Future)


def flatten_content(content, where: str) -> str:
    """A message's content: a string, or a list of text parts (images are not served yet)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise RequestError(f"{where}: only text parts are supported, got {str(part)[:60]}", where)
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"{where}: must be a string or a list of text parts", where)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    flat = [
        {"role": m["role"], "content": flatten_content(m["content"], f"messages[{i}].content")}
        for i, m in enumerate(messages)
    ]
    text = tokenizer.apply_chat_template(flat, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


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


@torch.inference_mode()
def generate_batch(
    model, tokenizer, requests: list[_Request], prefix_cache: PrefixCache | None = None
) -> list[Completion]:
    """One generate call for requests with the same sampling settings.

    Layout per row: [shared prefix | left padding | the row's own suffix], attention mask 0 on
    the padding, so positions (from the mask) and attention are those of the unpadded prompt.
    With a `prefix_cache`, the shared prefix is not recomputed.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    shared = _common_prefix([r.ids for r in requests])
    shared = min(shared, min(len(r.ids) for r in requests) - 1)  # every row keeps >= 1 token
    kv = None
    if prefix_cache is not None:
        kv, shared = prefix_cache.get(model, requests[0].ids[:shared])
        if kv is not None and len(requests) > 1:
            kv.batch_repeat_interleave(len(requests))
    suffix = max(len(r.ids) for r in requests) - shared
    width = shared + suffix
    input_ids = torch.full((len(requests), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(requests), width), dtype=torch.long)
    for row, r in enumerate(requests):
        input_ids[row, :shared] = torch.tensor(r.ids[:shared])
        input_ids[row, width - (len(r.ids) - shared) :] = torch.tensor(r.ids[shared:])
        mask[row, :shared] = 1
        mask[row, width - (len(r.ids) - shared) :] = 1
    first = requests[0]
    sample = first.temperature > 0
    out = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        cache=kv,
        max_new_tokens=max(r.max_tokens for r in requests),
        do_sample=sample,
        temperature=first.temperature if sample else None,
        top_p=first.top_p if sample else None,
        top_k=None,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
    )  # (B, T + new)
    results = []
    for row, r in enumerate(requests):
        new = out[row, width:].tolist()[: r.max_tokens]
        finish = "length"
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
            finish = "stop"
        text = tokenizer.decode(new, skip_special_tokens=True)
        cuts = [text.index(s) for s in r.stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        results.append(Completion(text, finish, len(r.ids), len(new)))
    return results


def generate_one(
    model,
    tokenizer,
    messages,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    prefix_cache=None,
) -> str:
    request = _Request(prompt_ids(tokenizer, messages), max_tokens, temperature, top_p, [])
    return generate_batch(model, tokenizer, [request], prefix_cache)[0].text


class BatchingEngine:
    """A background thread that serves `submit` calls in micro-batches (see module doc)."""

    def __init__(
        self, model, tokenizer, max_batch: int = 8, wait_ms: float = 10.0, prefix_cache: bool = True
    ):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.prefix_cache = PrefixCache() if prefix_cache else None
        self.max_batch, self.wait = max_batch, wait_ms / 1000
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches run (for benchmarks)
        threading.Thread(target=self._loop, daemon=True, name="vlkit-generate").start()

    def submit(
        self,
        messages: list[dict],
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
    ) -> Future:
        ids = prompt_ids(self.tokenizer, messages)
        if self.max_positions and len(ids) + max_tokens > self.max_positions:
            raise RequestError(
                f"prompt of {len(ids)} tokens + max_tokens {max_tokens} exceeds the model's {self.max_positions} positions",
                "max_tokens",
            )
        request = _Request(ids, max_tokens, temperature, top_p, list(stop or []))
        self.queue.put(request)
        return request.future

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            # Keep collecting while requests keep coming (each arrival extends the wait), but
            # never hold the first request longer than 10 waits.
            cap = time.monotonic() + 10 * self.wait
            while len(batch) < self.max_batch:
                timeout = min(self.wait, cap - time.monotonic())
                try:
                    batch.append(self.queue.get(timeout=max(0.0, timeout)))
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Request]] = {}
            for r in batch:
                groups.setdefault((r.temperature > 0, r.temperature, r.top_p), []).append(r)
            for group in groups.values():
                self.batches.append(len(group))
                try:
                    for r, result in zip(
                        group, generate_batch(self.model, self.tokenizer, group, self.prefix_cache)
                    ):
                        r.future.set_result(result)
                except Exception as e:  # one failed generate fails its requests, not the server
                    for r in group:
                        r.future.set_exception(e)
