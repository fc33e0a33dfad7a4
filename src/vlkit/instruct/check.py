"""Parsing teacher replies, validating records, checking answers against the truth, deduplicating.

Every function returns a reason string (or a list of them) instead of raising: a bad reply
becomes a rejected record with its reason in `rejected.jsonl`, never a crashed run.
"""

from __future__ import annotations

import re

from vlkit.data.contexts import Context
from vlkit.data.scenes import COLOR_NAMES, SHAPES
from vlkit.data.scenes_text import NUMBER_WORDS

IMAGE = "<image>"
_MARK = re.compile(
    r"^\s*(?:[*#>\-\d.)\s]*)\**\s*(question|answer|q|a|user|assistant|human|gpt)\s*\**\s*[:：]\s*\**\s*", re.I
)
_COORDS = re.compile(r"[\[(]\s*0?\.\d+\s*,\s*0?\.\d+|\b0\.\d{2,3}\b")


class Rejected(ValueError):
    """A teacher reply or a record that cannot be used; the message is the logged reason."""


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'Question: ... / Answer: ...' lines (also Q:/A:, User:/Assistant:) -> [(question, answer)].

    Lines without a marker continue the previous question or answer. Raises Rejected with the
    reason when the reply is empty, has no pairs, or a question has no answer.
    """
    if not text or not text.strip():
        raise Rejected("empty reply")
    pairs: list[list[str]] = []
    current = None
    for line in text.strip().splitlines():
        m = _MARK.match(line)
        if m:
            role = "q" if m.group(1).lower() in ("question", "q", "user", "human") else "a"
            body = line[m.end() :].strip()
            if role == "q":
                pairs.append([body, ""])
            elif pairs and not pairs[-1][1]:
                pairs[-1][1] = body
            else:
                raise Rejected("an answer without a question before it")
            current = role
        elif pairs and line.strip():
            i = 0 if current == "q" else 1
            pairs[-1][i] = (pairs[-1][i] + "\n" + line.strip()).strip()
    if not pairs:
        raise Rejected("no 'Question:' / 'Answer:' lines in the reply")
    for q, a in pairs:
        if not q:
            raise Rejected("empty question")
        if not a:
            raise Rejected(f"question without an answer: {q[:60]!r}")
    return [(q, a) for q, a in pairs]


def parse_answer(text: str) -> str:
    """A single answer: the text after 'Answer:' if present, else the whole reply."""
    if not text or not text.strip():
        raise Rejected("empty reply")
    m = re.search(r"answer\s*\**\s*:\s*\**", text, re.I)
    answer = (text[m.end() :] if m else text).strip()
    if not answer:
        raise Rejected("empty answer")
    return answer


def validate(conversations: list[dict]) -> list[str]:
    """The format the generative training reads: alternating human/gpt, non-empty, one <image>
    in the first human turn. -> reasons (empty = valid)."""
    reasons = []
    if not conversations or len(conversations) % 2:
        reasons.append(f"needs human/gpt pairs, got {len(conversations)} turns")
    for i, turn in enumerate(conversations):
        if turn.get("from") != ("human" if i % 2 == 0 else "gpt"):
            reasons.append(
                f"turn {i}: role {turn.get('from')!r}, expected {'human' if i % 2 == 0 else 'gpt'}"
            )
        if not str(turn.get("value", "")).replace(IMAGE, "").strip():
            reasons.append(f"turn {i}: empty {turn.get('from')} text")
    images = [i for i, t in enumerate(conversations) for _ in range(str(t.get("value", "")).count(IMAGE))]
    if images != [0]:
        reasons.append(
            f"'{IMAGE}' must appear exactly once, in the first human turn (found in turns {images})"
        )
    return reasons


# ---------------------------------------------------------------- consistency with scenes truth
_NUM = {w: i for i, w in enumerate(NUMBER_WORDS)} | {str(i): i for i in range(10)}
_NUM_RE = "|".join(_NUM)
_COLOR_RE = "|".join(COLOR_NAMES)
_SHAPE_RE = "|".join(SHAPES) + "|shape|object"
# Sentences that talk about what is absent or what would happen make no claim about the image.
# Patterns are matched against lowercased text (no re.I: ~2x faster on these alternations).
_HEDGE = re.compile(r"\b(no|not|none|never|without|if|would|could|remov\w*|remain\w*|leav\w*|after)\b|n't\b")
# One pattern for both claims, so a sentence is scanned once: "<number> [size] [colour] <shape>s"
# (a count) or "<colour> [size] <shape>" (an object that must exist).
_CLAIM = re.compile(
    rf"\b(?:(?P<num>{_NUM_RE})\s+(?:(?P<size>small|large)\s+)?(?:(?P<ncolor>{_COLOR_RE})\s+)?(?P<nshape>{_SHAPE_RE})s?"
    rf"|(?P<color>{_COLOR_RE})\s+(?:(?:small|large)\s+)?(?P<shape>{'|'.join(SHAPES)})s?)\b"
)
_HOW_MANY = re.compile(rf"how many\s+(?:(small|large)\s+)?(?:({_COLOR_RE})\s+)?({_SHAPE_RE})s?")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+")


def _matching(ctx: Context, size: str | None, color: str | None, shape: str | None) -> int:
    shape = None if shape in (None, "shape", "object") else shape
    return sum(
        (not size or o.size == size) and (not color or o.color == color) and (not shape or o.shape == shape)
        for o in ctx.objects
    )


def _first_number(text: str) -> int | None:
    if re.match(r"\s*(no|none|zero)\b", text) or "there are no " in text or "there is no " in text:
        return 0
    m = re.search(rf"\b({_NUM_RE})\b", text)
    return _NUM[m.group(1)] if m else None


def consistency_errors(ctx: Context, conversations: list[dict]) -> list[str]:
    """Counts and colour-shape pairs stated in the answers that contradict the scene's truth.

    Checks "how many" answers against the true count, and in every affirmative sentence of every
    answer: "<number> [size] [colour] shapes/<shape>s" against the count, "<colour> <shape>"
    against the objects present. Sentences with negation or hypotheticals are skipped.
    """
    if not ctx.exact:
        return []
    errors = []
    for i in range(0, len(conversations) - 1, 2):
        question, answer = conversations[i]["value"].lower(), conversations[i + 1]["value"].lower()
        m = _HOW_MANY.search(question) if "how many" in question else None
        if m and not _HEDGE.search(question):  # "how many would remain if ..." is not about the image
            truth = _matching(ctx, *m.groups())
            said = _first_number(answer)
            if said is not None and said != truth:
                errors.append(f"count: {m.group(0)!r} answered {said}, truth {truth}")
        if not _CLAIM.search(answer):
            continue
        # Split into sentences only when some sentence may need skipping (most answers: none).
        for sentence in _SENTENCES.split(answer) if _HEDGE.search(answer) else [answer]:
            if _HEDGE.search(sentence):
                continue
            for c in _CLAIM.finditer(sentence):
                if c.group("num"):
                    truth = _matching(ctx, c.group("size"), c.group("ncolor"), c.group("nshape"))
                    if _NUM[c.group("num")] != truth:
                        errors.append(f"count: {c.group(0)!r}, truth {truth}")
                elif not _matching(ctx, None, c.group("color"), c.group("shape")):
                    errors.append(f"color: {c.group(0)!r} is not in the image")
    return errors


def coordinate_leak(text: str) -> bool:
    """True when a reply quotes box coordinates (reasoning answers must not)."""
    return bool(_COORDS.search(text))


# ---------------------------------------------------------------- deduplication
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "in",
        "of",
        "is",
        "are",
        "there",
        "this",
        "that",
        "image",
        "picture",
        "photo",
        "can",
        "you",
        "see",
        "do",
        "does",
        "please",
    ]
)


_KEEP = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\n\t"})


def question_key(question: str) -> frozenset[str]:
    words = question.replace(IMAGE, "").lower().translate(_KEEP).split()
    return frozenset(words).difference(_FILLER)


def near_duplicate(key: frozenset[str], seen: list[frozenset[str]], threshold: float = 0.8) -> bool:
    """Jaccard similarity of content words >= threshold with a question already asked."""
    return any(len(key & s) / max(1, len(key | s)) >= threshold for s in seen)


def dedup_turns(conversations: list[dict], seen: list[frozenset[str]]) -> list[dict]:
    """Drops question-answer pairs whose question nearly repeats one in `seen` (updated in place).

    The image token moves to the first kept question.
    """
    kept = []
    for i in range(0, len(conversations) - 1, 2):
        q, a = conversations[i], conversations[i + 1]
        key = question_key(q["value"])
        if near_duplicate(key, seen):
            continue
        seen.append(key)
        kept += [q if i == 0 else dict(q, value=q["value"].replace(IMAGE, "").strip()), a]
    if kept and IMAGE not in kept[0]["value"]:
        kept[0] = dict(kept[0], value=f"{IMAGE}\n{kept[0]['value']}")
    return kept
