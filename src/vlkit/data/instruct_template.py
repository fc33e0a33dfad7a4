"""The template teacher: LLaVA's three kinds written from the symbolic truth, without an LLM.

For scenes every attribute, count and relation is known exactly, so the questions and answers
are correct by construction: counts, colours, positions, relative positions and short reasoning
chains over them. Wording varies with a generator seeded by (record id), so a run is
reproducible and records differ. No coordinates are ever quoted. ~30k records/s on one core
(benchmarks/instruct_template_speed.py).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

from vlkit.data.contexts import Context, ContextObject
from vlkit.data.conversations import DETAIL_QUESTIONS
from vlkit.data.scenes_text import NUMBER_WORDS, OPPOSITE, join, left_to_right, position, relation

_REL_PHRASE = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _the(o: ContextObject, size: bool = False) -> str:
    return f"the {o.size + ' ' if size else ''}{o.color} {o.shape}"


def _count(n: int, noun: str) -> str:
    """(2, "circle") -> "two circles"."""
    return f"{NUMBER_WORDS[n]} {noun}{'' if n == 1 else 's'}"


def _there(n: int, noun: str) -> str:
    if n == 0:
        return f"There are no {noun}s in the image."
    return f"There {'is' if n == 1 else 'are'} {_count(n, noun)}."


def _listing(objects: list[ContextObject]) -> str:
    return join([_a(f"{o.size} {o.color} {o.shape}") for o in left_to_right(objects)])


def conversation(ctx: Context, rng: random.Random) -> list[tuple[str, str]]:
    objs = ctx.objects
    n = len(objs)
    pool: list[tuple[str, str]] = []
    q = rng.choice(
        ("How many shapes are in the image?", "How many objects can you see?", "How many shapes are there?")
    )
    pool.append((q, f"{_there(n, 'shape')[:-1]}: {_listing(objs)}."))
    probe = rng.choice(("circle", "square", "triangle", "star"))
    pool.append((f"How many {probe}s are there?", _there(sum(o.shape == probe for o in objs), probe)))
    for o in objs:
        if sum(p.shape == o.shape for p in objs) == 1:
            pool.append((f"What color is the {o.shape}?", f"The {o.shape} is {o.color}."))
        if sum(p.color == o.color for p in objs) == 1:
            pool.append((f"What shape is the {o.color} object?", f"The {o.color} object is {_a(o.shape)}."))
    o = rng.choice(objs)
    pool.append((f"Where is {_the(o)}?", f"{_the(o).capitalize()} is {position(o)} of the image."))
    o = rng.choice(objs)
    pool.append((f"Is {_the(o)} large or small?", f"{_the(o).capitalize()} is {o.size}."))
    present = {(p.color, p.shape) for p in objs}
    absent = [
        (c, s) for c in sorted({p.color for p in objs}) for s in ("circle", "square", "triangle", "star")
    ]
    absent = [x for x in absent if x not in present]
    if absent:
        c, s = rng.choice(absent)
        pool.append((f"Is there {_a(c + ' ' + s)} in the image?", f"No, there is no {c} {s} in the image."))
    pool.append(
        (
            f"Is there {_a(o.color + ' ' + o.shape)} in the image?",
            f"Yes, there is {_a(o.size + ' ' + o.color + ' ' + o.shape)} {position(o)}.",
        )
    )
    if n >= 2:
        a, b = rng.sample(objs, 2)
        rel = relation(a, b)
        axis = "to the left or to the right of" if rel in ("left", "right") else "above or below"
        pool.append(
            (f"Is {_the(a)} {axis} {_the(b)}?", f"{_the(a).capitalize()} is {_REL_PHRASE[rel]} {_the(b)}.")
        )
        pool.append(
            (
                f"Where is {_the(b)} relative to {_the(a)}?",
                f"{_the(b).capitalize()} is {_REL_PHRASE[OPPOSITE[rel]]} {_the(a)}.",
            )
        )
    picked = rng.sample(pool, min(len(pool), rng.randint(3, 5)))
    return picked + [_complex_question(ctx, rng)]


def _complex_question(ctx: Context, rng: random.Random) -> tuple[str, str]:
    """One harder question answered with its reasoning, as LLaVA's conversations include."""
    objs = ctx.objects
    colors = [o.color for o in objs]
    shared = sorted({c for c in colors if colors.count(c) > 1})
    if len(objs) == 1:
        o = objs[0]
        return (
            "Is the picture busy or simple?",
            f"It is simple: there is only {_a(o.size + ' ' + o.color + ' ' + o.shape)} {position(o)}, on a plain dark background.",
        )
    if shared:
        c = shared[0]
        same = [_the(o) for o in objs if o.color == c]
        both = "both" if len(same) == 2 else "all"
        return (
            "Do any of the shapes share a color?",
            f"Yes. Looking at the colors one by one, {join(same)} are {both} {c}.",
        )
    return (
        "Do any of the shapes share a color?",
        f"No. Each shape has its own color: {join([_the(o) for o in left_to_right(objs)])}.",
    )


def detail(ctx: Context, rng: random.Random) -> tuple[str, str]:
    objs = left_to_right(ctx.objects)
    n = len(objs)
    head = "The image shows a single shape" if n == 1 else f"The image shows {_count(n, 'shape')}"
    parts = [f"{head} on a dark, slightly grainy background."]
    for o in objs:
        where = position(o)
        parts.append(
            rng.choice(
                (
                    f"{where.capitalize()} there is {_a(o.size + ' ' + o.color + ' ' + o.shape)}.",
                    f"{_a(o.size + ' ' + o.color + ' ' + o.shape).capitalize()} sits {where}.",
                )
            )
        )
    for a, b in zip(objs, objs[1:]):
        parts.append(f"{_the(a).capitalize()} is {_REL_PHRASE[relation(a, b)]} {_the(b)}.")
    sizes = {o.size for o in objs}
    if n > 1:
        parts.append(
            f"All of the shapes are {objs[0].size}."
            if len(sizes) == 1
            else "The shapes differ in size: " + join([f"{_the(o)} is {o.size}" for o in objs]) + "."
        )
    parts.append("The shapes do not overlap, and each has a flat, solid color.")
    return rng.choice(DETAIL_QUESTIONS), " ".join(parts)


def _more_or_fewer(ctx: Context, rng: random.Random) -> tuple[str, str]:
    large = [o for o in ctx.objects if o.size == "large"]
    small = [o for o in ctx.objects if o.size == "small"]
    steps = []
    for group, size in ((large, "large"), (small, "small")):
        named = f" ({join([_the(o) for o in group])})" if group else ""
        steps.append(
            f"I count {_count(len(group), size + ' shape')}{named}." if group else f"I see no {size} shapes."
        )
    verdict = (
        "more large shapes than small ones"
        if len(large) > len(small)
        else "more small shapes than large ones"
        if len(small) > len(large)
        else "as many large shapes as small ones"
    )
    return (
        "Are there more large shapes or more small shapes in the picture?",
        " ".join(steps) + f" So there are {verdict}.",
    )


def _after_removal(ctx: Context, rng: random.Random) -> tuple[str, str]:
    shape = rng.choice(sorted({o.shape for o in ctx.objects}))
    gone = [o for o in ctx.objects if o.shape == shape]
    rest = [o for o in ctx.objects if o.shape != shape]
    answer = f"First I find the {shape}s: {join([_the(o) for o in gone])}. "
    if not rest:
        return (
            f"If every {shape} were removed from the picture, how many shapes would remain?",
            answer
            + f"Taking {'it' if len(gone) == 1 else 'them'} away would leave no shapes at all, so the picture would be empty.",
        )
    answer += f"Taking {'it' if len(gone) == 1 else 'them'} away would leave {_count(len(rest), 'shape')} of the {NUMBER_WORDS[len(ctx.objects)]}"
    answer += f": {join([_the(o) for o in left_to_right(rest)])}."
    return (f"If every {shape} were removed from the picture, how many shapes would remain?", answer)


def _reading_order(ctx: Context, rng: random.Random) -> tuple[str, str]:
    objs = left_to_right(ctx.objects)
    which = rng.choice(("leftmost", "rightmost"))
    target = objs[0] if which == "leftmost" else objs[-1]
    return (
        f"What color is the {which} shape, and what is it?",
        f"Going from left to right, I see {join([_the(o) for o in objs])}. The {which} one is therefore {_the(target, size=True)}, so its color is {target.color}.",
    )


def _highest(ctx: Context, rng: random.Random) -> tuple[str, str]:
    objs = sorted(ctx.objects, key=lambda o: o.box[1] + o.box[3])
    top = objs[0]
    others = objs[1:]
    return (
        "Which shape is closest to the top of the image, and how do you know?",
        f"{_the(top).capitalize()} is the highest: it is {position(top)} of the image, and "
        + join([f"{_the(o)} sits lower" for o in others])
        + ".",
    )


def reasoning(ctx: Context, rng: random.Random) -> tuple[str, str]:
    makers: list[Callable] = [_after_removal]
    if len(ctx.objects) >= 2:
        makers += [_more_or_fewer, _reading_order, _highest]
    return rng.choice(makers)(ctx, rng)


def write(ctx: Context, kind: str) -> list[dict]:
    """One record's LLaVA conversation for `kind`, `<image>` in the first human turn."""
    if not ctx.exact:
        raise ValueError(
            f"{ctx.id}: the template teacher needs exact attributes (scenes); use an LLM teacher"
        )
    rng = random.Random(zlib.crc32(f"{ctx.id}/{kind}".encode()))
    if kind == "conversation":
        pairs = conversation(ctx, rng)
    elif kind == "detail":
        pairs = [detail(ctx, rng)]
    elif kind == "reasoning":
        pairs = [reasoning(ctx, rng)]
    else:
        raise ValueError(f"unknown kind {kind!r}; valid: conversation, detail, reasoning")
    return to_conversations(pairs, rng)


def to_conversations(pairs: list[tuple[str, str]], rng: random.Random | None = None) -> list[dict]:
    """Question-answer pairs -> LLaVA turns; the image token goes before or after the first question."""
    turns = []
    for i, (q, a) in enumerate(pairs):
        if i == 0:
            q = f"<image>\n{q}" if rng is None or rng.random() < 0.5 else f"{q}\n<image>"
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return turns
