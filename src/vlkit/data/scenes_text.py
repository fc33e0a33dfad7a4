"""Text for procedural scenes: captions, a hard negative caption and question-answer pairs.

Every sentence is derived from the objects' attributes and boxes alone, so it is true of the
image by construction. Objects in one scene have distinct (color, shape) pairs, which makes
"the red circle" always name exactly one object. Wording varies (several templates, random
object order) so a text tower cannot key on one sentence pattern; the generator `rng` picks it.

This module knows nothing about rendering: the scene module passes in the objects and the
vocabulary (`colors`, `shapes`) that negatives and absent-object questions are drawn from.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vlkit.data.scenes_wordings import TEMPLATES

Wordings = dict[str, tuple[str, ...]]  # question form -> its wordings (vlkit.data.scenes_wordings)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Relation name -> the phrase used between two noun phrases in a caption.
RELATION_PHRASES = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "beneath"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
# every QA.type a scene's questions can have ("position" only where a source asks for them)
QUESTION_TYPES = ("color", "shape", "count", "existence", "relation", "position")


class Described(Protocol):
    """What the text needs from an object (SceneObject satisfies it)."""

    shape: str
    color: str
    size: str
    box: tuple[float, float, float, float]  # (x1, y1, x2, y2) in [0, 1]


@dataclass
class QA:
    """One question about a scene with a short answer: a word, a number, yes/no or a relation.

    type is one of "color", "shape", "count", "existence", "relation" (and "position" where a
    source asks `position_questions`).
    """

    question: str
    answer: str
    type: str


def relation(a: Described, b: Described) -> str:
    """Where `a` lies relative to `b`: "left", "right", "above" or "below".

    Boxes never intersect, so they are separated along at least one axis; the axis with the
    wider gap wins, which keeps the answer obvious to a human looking at the image.
    """
    gap_x = max(b.box[0] - a.box[2], a.box[0] - b.box[2])
    gap_y = max(b.box[1] - a.box[3], a.box[1] - b.box[3])
    if gap_x >= gap_y:
        return "left" if a.box[2] <= b.box[0] else "right"
    return "above" if a.box[3] <= b.box[1] else "below"


def position(obj: Described) -> str:
    """A coarse place in the picture from the box centre, e.g. "in the top left", "on the right"."""
    cx = (obj.box[0] + obj.box[2]) / 2
    cy = (obj.box[1] + obj.box[3]) / 2
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    if horizontal == "center" and vertical == "middle":
        return "in the center"
    if vertical == "middle":
        return f"on the {horizontal}"
    if horizontal == "center":
        return f"at the {vertical}"
    return f"in the {vertical} {horizontal}"


def with_article(phrase: str) -> str:
    """ "red circle" -> "a red circle", "orange star" -> "an orange star"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def noun(obj: Described, with_size: bool = True) -> str:
    """The noun phrase "a small red circle" ("a red circle" without the size)."""
    words = [obj.size, obj.color, obj.shape] if with_size else [obj.color, obj.shape]
    return with_article(" ".join(words))


def join(phrases: Sequence[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def left_to_right(objects: Sequence[Described]) -> list[Described]:
    """Reading order for listings, so the canonical caption is stable under colour swaps."""
    return sorted(objects, key=lambda o: (o.box[0], o.box[1]))


def captions(objects: Sequence[Described], rng: random.Random) -> list[str]:
    """Five true captions. captions[0] is canonical: colour + shape, objects left to right,
    no sizes ("a red circle and a blue square"); twins in a swap pair differ only by colour there.
    """
    ordered = left_to_right(objects)
    shuffled = rng.sample(list(objects), len(objects))
    count = NUMBER_WORDS[len(objects)]
    out = [join([noun(o, with_size=False) for o in ordered]), join([noun(o) for o in shuffled])]
    if len(objects) == 1:
        (obj,) = objects
        out += [
            f"one shape: {noun(obj)}",
            f"{noun(obj)} {position(obj)}",
            f"there is {noun(obj)} {position(obj)} of the picture",
        ]
        return out
    a, b = shuffled[0], shuffled[1]
    rest = shuffled[2:]
    phrases = RELATION_PHRASES[relation(a, b)]
    out.append(f"{len(objects) if rng.random() < 0.3 else count} shapes: {join([noun(o) for o in ordered])}")
    sentence = f"{noun(a)} {rng.choice(phrases)} {noun(b)}"
    out.append(sentence + (f", with {join([noun(o) for o in rest])}" if rest else ""))
    back = RELATION_PHRASES[relation(b, a)]
    out.append(f"there is {noun(b)} {back[-1]} {noun(a)}")
    return out


Edit = dict[tuple[str, str], tuple[str, str]]  # (colour, shape) of an object -> what a negative says


def binding_edit(
    objects: Sequence[Described], rng: random.Random, colors: Sequence[str], among: Sequence[Described] = ()
) -> Edit:
    """The colour-swap hard negative, as an edit: false of the image, same words otherwise.

    Swaps the colours of two objects that differ in both colour and shape (a swap between two
    same-shape objects would describe the same set). Without such a pair (one object, or all
    objects share a colour or a shape) one object gets a colour no object of its shape has.
    Both ways the negative names a (colour, shape) the scene does not contain. `among`: edit only
    these of the scene's `objects` (those a caption names); the check is against all of them.
    """
    ordered = left_to_right(among or objects)
    present = {(o.color, o.shape) for o in objects}
    # A swap must create an object the scene lacks; with a red circle, a blue square, a blue
    # circle and a red square, swapping the first two would only repeat present objects.
    pairs = [
        (a, b)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if a.color != b.color
        and a.shape != b.shape
        and ((b.color, a.shape) not in present or (a.color, b.shape) not in present)
    ]
    if pairs:
        a, b = rng.choice(pairs)
        return {(a.color, a.shape): (b.color, a.shape), (b.color, b.shape): (a.color, b.shape)}
    obj = ordered[rng.randrange(len(ordered))]
    taken = {o.color for o in objects if o.shape == obj.shape}
    return {(obj.color, obj.shape): (rng.choice([c for c in colors if c not in taken]), obj.shape)}


def shape_edit(
    objects: Sequence[Described], rng: random.Random, shapes: Sequence[str], among: Sequence[Described] = ()
) -> Edit:
    """One object's shape changed to one no object of its colour has (`among`: as binding_edit's).

    The colour swap tests binding; this one makes shape matter on its own (a single red circle
    vs "a red square"), which in-batch negatives rarely do when colours already differ.
    """
    ordered = left_to_right(among or objects)
    obj = ordered[rng.randrange(len(ordered))]
    taken = {o.shape for o in objects if o.color == obj.color}
    return {(obj.color, obj.shape): (obj.color, rng.choice([s for s in shapes if s not in taken]))}


def named_in(caption: str, objects: Sequence[Described]) -> list[Described]:
    """The objects whose "<colour> <shape>" `caption` says (a relation caption names two of three)."""
    return [o for o in objects if re.search(rf"\b{o.color} {o.shape}\b", caption)]


def shows_edit(negative: str, edit: Edit, objects: Sequence[Described]) -> bool:
    """Whether `negative` (a caption with `edit` applied) names an object the scene lacks: what
    makes it false. Not so when the edit changed objects the caption does not name, or only the
    one of a swap's pair that it names and that the scene also has."""
    present = {(o.color, o.shape) for o in objects}
    return any(new not in present and re.search(rf"\b{new[0]} {new[1]}\b", negative) for new in edit.values())


def apply_edit(caption: str, edit: Edit) -> str:
    """Rewrites every "<colour> <shape>" of `caption` that `edit` names, all at once, so a
    negative keeps the wording (sizes, positions, relations) of the caption it comes from."""
    pattern = re.compile("|".join(rf"\b{c} {s}\b" for c, s in edit))
    out = pattern.sub(lambda m: " ".join(edit[tuple(m.group(0).split())]), caption)
    return re.sub(r"\b(a|an) (\w+)", lambda m: with_article(m.group(2)), out)  # "a orange" -> "an orange"


def questions(
    objects: Sequence[Described],
    rng: random.Random,
    colors: Sequence[str],
    shapes: Sequence[str],
    wording: Wordings = TEMPLATES,
) -> list[QA]:
    """Five to ten questions covering count, colour, shape, existence (yes and no) and relation,
    each worded by one of `wording`'s forms (`vlkit.data.scenes_wordings`)."""
    qa = _count_questions(objects, rng, shapes, wording)
    qa += _attribute_questions(objects, rng, wording)
    qa += _existence_questions(objects, rng, colors, shapes, wording)
    if len(objects) >= 2:
        qa += _relation_questions(objects, rng, wording)
    return qa


def _count_questions(
    objects: Sequence[Described], rng: random.Random, shapes: Sequence[str], wording: Wordings
) -> list[QA]:
    """How many objects, and how many of one shape (which may be zero)."""
    total = rng.choice(wording["count_all"])
    probe_shape = rng.choice(shapes)
    count = str(sum(o.shape == probe_shape for o in objects))
    # one template draws nothing: the rng stream (and so the world) is as it was before wordings
    asked = _pick(wording["count_shape"], rng).format(shape=probe_shape)
    return [QA(total, str(len(objects)), "count"), QA(asked, count, "count")]


def _pick(options: Sequence[str], rng: random.Random) -> str:
    """One option; a single option consumes no randomness (the templates' forms with one wording)."""
    return options[0] if len(options) == 1 else rng.choice(options)


def _attribute_questions(objects: Sequence[Described], rng: random.Random, wording: Wordings) -> list[QA]:
    """Colour and shape questions name an object by the one attribute that is unique in the scene;
    at most two of each, so crowded scenes do not drown the other question types."""
    unique_shape = [o for o in objects if sum(p.shape == o.shape for p in objects) == 1]
    unique_color = [o for o in objects if sum(p.color == o.color for p in objects) == 1]
    qa = []
    for obj in rng.sample(unique_shape, min(2, len(unique_shape))):
        qa.append(QA(rng.choice(wording["color"]).format(shape=obj.shape), obj.color, "color"))
    for obj in rng.sample(unique_color, min(2, len(unique_color))):
        qa.append(QA(rng.choice(wording["shape"]).format(color=obj.color), obj.shape, "shape"))
    return qa


def _existence_questions(
    objects: Sequence[Described],
    rng: random.Random,
    colors: Sequence[str],
    shapes: Sequence[str],
    wording: Wordings,
) -> list[QA]:
    """One "yes" (an object that is there) and one "no" question."""
    present = {(o.color, o.shape) for o in objects}
    asked = rng.choice(objects)
    # The "no" question prefers a recombination of attributes that are present (a red square when
    # there is a red circle and a blue square): only binding colour to shape answers it.
    mixed = [
        (c, s)
        for c in {o.color for o in objects}
        for s in {o.shape for o in objects}
        if (c, s) not in present
    ]
    absent = sorted(mixed) or [(c, s) for c in colors for s in shapes if (c, s) not in present]
    color, shape = rng.choice(absent)
    templates = wording["existence"]
    asked_noun = with_article(f"{asked.color} {asked.shape}")
    return [
        QA(rng.choice(templates).format(noun=asked_noun), "yes", "existence"),
        QA(rng.choice(templates).format(noun=with_article(f"{color} {shape}")), "no", "existence"),
    ]


def _relation_questions(objects: Sequence[Described], rng: random.Random, wording: Wordings) -> list[QA]:
    """Where one object lies relative to another, asked both ways."""
    a, b = rng.sample(list(objects), 2)
    rel = relation(a, b)
    axis = "left_right" if rel in ("left", "right") else "above_below"
    a_name, b_name = f"{a.color} {a.shape}", f"{b.color} {b.shape}"
    return [
        QA(_pick(wording[axis], rng).format(a=a_name, b=b_name), rel, "relation"),
        QA(_pick(wording["where"], rng).format(a=b_name, b=a_name), OPPOSITE[rel], "relation"),
    ]


# every value `region` takes: the 3 x 3 cells of the picture, row by row
REGIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")


def region(obj: Described) -> str:
    """`position` as a short answer: "top left", "left", "top", "center" (one of REGIONS)."""
    return position(obj).split(" ", 2)[-1]


def position_questions(objects: Sequence[Described], rng: random.Random, wording: Wordings) -> list[QA]:
    """Where up to two objects lie in the picture ("Where is the red circle?" → "top left"): one
    object found and its place read, the half of a relation question that can be learned alone."""
    return [
        QA(_pick(wording["position"], rng).format(a=f"{o.color} {o.shape}"), region(o), "position")
        for o in rng.sample(list(objects), min(2, len(objects)))
    ]
