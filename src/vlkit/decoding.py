"""How to decode: one settings type for generation, the server and the instruction teachers.

    Decoding(max_new_tokens=32)                             # greedy
    Decoding(num_beams=3)                                   # beam search
    Decoding(do_sample=True, temperature=0.7, seed=0)       # sampling, reproducible
    Decoding.from_openai(max_tokens=256, temperature=0)     # a chat-completions request's fields

A leaf with no imports, so the light parts of vlkit (the teachers, request parsing) use it
without loading a model library. `vlkit.generation.Engine` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decoding:
    """num_beams > 1: beam search; do_sample: sampling with temperature / top_p; else greedy."""

    max_new_tokens: int = 64
    min_new_tokens: int = 0  # the end of turn is suppressed until then (fixed-length benchmarks)
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # stop strings (the answer ends before them); a list is taken too
    seed: int | None = None  # sampling seed, for reproducible samples

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError(
                f"Decoding: max_new_tokens and num_beams must be >= 1, got {self.max_new_tokens} "
                f"and {self.num_beams}"
            )

    @classmethod
    def from_openai(
        cls, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0, stop=(), seed: int | None = None
    ) -> Decoding:
        """OpenAI's chat-completions fields: temperature 0 means greedy."""
        sample = temperature > 0
        return cls(
            max_new_tokens=max_tokens,
            do_sample=sample,
            temperature=temperature if sample else 1.0,
            top_p=top_p,
            stop=tuple(stop),
            seed=seed,
        )

    def openai_fields(self) -> dict:
        """The chat-completions fields for this decoding (stop and seed only when set)."""
        fields = {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature if self.do_sample else 0.0,
            "top_p": self.top_p,
        }
        return (
            fields
            | ({"stop": list(self.stop)} if self.stop else {})
            | ({"seed": self.seed} if self.seed is not None else {})
        )

    def batch_key(self) -> tuple:
        """Requests with equal keys decode together in one batch (lengths and stops may differ)."""
        sampling = (self.temperature, self.top_p, self.seed) if self.do_sample else ()
        return (self.min_new_tokens, self.num_beams, self.do_sample, *sampling)

    def generate_kwargs(self, max_new_tokens: int | None = None) -> dict:
        """Keyword arguments for transformers' `generate` (stop strings need `tokenizer=` too).
        Unused sampling settings are None, so a model's generation config cannot switch them on."""
        sample = self.do_sample
        kwargs = {
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": sample,
            "temperature": self.temperature if sample else None,
            "top_p": self.top_p if sample else None,
            "top_k": None,
        }
        return kwargs | ({"stop_strings": list(self.stop)} if self.stop else {})
