"""Generation: the one engine (`Engine`) and what wraps it.

    engine.py    chat prompts (with or without images) → left-padded batch → `generate` → text;
                 the shared-prefix KV cache of text LMs
    batching.py  micro-batching for concurrent callers (`vlkit serve`), bounded
    streaming.py each row's text handed on as it is generated (streamed requests, batched)
    model.py     `GenerativeModel`: caption / answer / chat / stream for trained VLMs
    magic.py     MaGiC search: a text-only LM's zero-shot captions, steered by a contrastive model

One settings type, `Decoding` (from `vlkit.decoding`), says how to decode everywhere.
"""

from vlkit.decoding import Decoding
from vlkit.generation.batching import BatchingEngine, Busy
from vlkit.generation.engine import Completion, Engine, PrefixCache, Request, RequestError, split_messages
from vlkit.generation.magic import MagicCaptioner, MagicSearch
from vlkit.generation.model import GenerativeModel

__all__ = [
    "BatchingEngine",
    "Busy",
    "Completion",
    "Decoding",
    "Engine",
    "GenerativeModel",
    "MagicCaptioner",
    "MagicSearch",
    "PrefixCache",
    "Request",
    "RequestError",
    "split_messages",
]
