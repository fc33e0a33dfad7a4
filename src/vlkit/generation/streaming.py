"""Streaming a batch: each row's new text handed to its request's `on_text` as it is generated.

transformers' own streamers take one row only. `RowStreamer` follows their protocol (`put` the
prompt, then `put` each step's tokens `int64[B]`, then `end`) for any batch, so streamed requests
are micro-batched like the others. A row's text is sent only once it is final: cut at the end
token, at `max_new_tokens` and at stop strings, with the tail that could still become a stop
string (or half a UTF-8 character) held back. `finish` sends what is left of each finished
`Completion`, so the pieces of a request always join to exactly its non-streamed text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class RowStreamer:
    """A transformers streamer over the rows of one `Engine.generate` batch (see the module doc)."""

    def __init__(self, tokenizer, requests: Sequence, eos: int | None):
        self.tokenizer, self.requests, self.eos = tokenizer, list(requests), eos
        self.ids: list[list[int]] = [[] for _ in self.requests]
        self.sent = [""] * len(self.requests)
        self.done = [r.on_text is None for r in self.requests]
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate puts the prompt first
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token == self.eos or len(self.ids[row]) >= self.requests[row].decoding.max_new_tokens:
                self.done[row] = True
                continue
            self.ids[row].append(token)
            self._send(row, self._settled(row))

    def end(self) -> None:
        pass

    def finish(self, completions: Sequence) -> None:
        """Sends each streamed row the rest of its final text."""
        for row, completion in enumerate(completions):
            if self.requests[row].on_text is not None:
                self._send(row, completion.text)

    def _settled(self, row: int) -> str:
        """The row's text so far that no later token can change."""
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        stops = [s for s in self.requests[row].decoding.stop if s]
        cuts = [text.index(s) for s in stops if s in text]
        if cuts:
            self.done[row] = True
            return text[: min(cuts)]
        held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[: len(text) - held].rstrip("\ufffd")

    def _send(self, row: int, text: str) -> None:
        sent = self.sent[row]
        if len(text) > len(sent) and text.startswith(sent):
            self.requests[row].on_text(text[len(sent) :])
            self.sent[row] = text
