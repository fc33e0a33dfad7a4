"""Question wordings of the scenes world: the fixed templates, and a varied set for training.

`TEMPLATES` are the few wordings every scenes question has used since the world was written;
held-out evaluation asks in them, and `vlkit.eval.paraphrase` rewrites each into a hand-written
wording no training source uses. A model trained on the templates alone keys on their exact
words (a from-scratch language model has never seen "colour" or "count"), so it fails on any
other wording. `VARIED` holds, for each question form, the templates plus many more wordings a
person might use: other verbs ("Name", "Identify"), other nouns (object, shape, thing, figure,
item), both spellings of colour, and the reference object named first in relations. Training
on them (`question_wordings: varied` on a scenes source) teaches which words carry the question;
`tests/test_paraphrase.py` checks that no wording here is a held-out paraphrase.

Slots: {shape}, {color}, {noun} (with its article: "a red circle"), {a} and {b} (colour +
shape, e.g. "red circle"; the question asks where {a} lies relative to {b}, or, in "position"
questions, where {a} lies in the picture).
"""

from __future__ import annotations

TEMPLATES: dict[str, tuple[str, ...]] = {
    "count_all": (
        "How many shapes are there?",
        "How many objects are in the image?",
        "How many shapes can you see?",
    ),
    "count_shape": ("How many {shape}s are there?",),
    "color": (
        "What color is the {shape}?",
        "What is the color of the {shape}?",
        "Which color does the {shape} have?",
    ),
    "shape": ("What shape is the {color} object?", "Which shape is {color}?", "What is the {color} shape?"),
    "existence": (
        "Is there {noun}?",
        "Is there {noun} in the image?",
        "Can you see {noun}?",
        "Does the picture show {noun}?",
    ),
    "left_right": ("Is the {a} left or right of the {b}?",),
    "above_below": ("Is the {a} above or below the {b}?",),
    "where": ("Where is the {a} relative to the {b}?",),
    "position": ("Where is the {a}?",),
}

VARIED: dict[str, tuple[str, ...]] = {
    "count_all": TEMPLATES["count_all"]
    + (
        "What is the number of shapes in the picture?",
        "How many things are in this image?",
        "How many figures does the picture contain?",
        "In total, how many shapes are drawn?",
        "How many items appear in the image?",
        "What's the total number of objects?",
        "Please count every object you see.",
        "How many objects does this image have?",
    ),
    "count_shape": TEMPLATES["count_shape"]
    + (
        "How many {shape}s can you see?",
        "What is the number of {shape}s in the image?",
        "How many {shape}s does the picture contain?",
        "How many {shape} shapes are drawn?",
        "Give the number of {shape}s.",
        "What's the count of {shape}s in the picture?",
        "How many {shape}s appear here?",
    ),
    "color": TEMPLATES["color"]
    + (
        "Which colour is the {shape}?",
        "What's the colour of the {shape}?",
        "The {shape} is what color?",
        "Name the color of the {shape}.",
        "In what color is the {shape} drawn?",
        "Say which colour the {shape} is.",
        "Identify the {shape}'s colour.",
        "What colour does the {shape} have?",
    ),
    "shape": TEMPLATES["shape"]
    + (
        "What kind of shape is the {color} one?",
        "Name the shape that is {color}.",
        "What is the shape of the {color} object?",
        "Identify the shape of the {color} item.",
        "Which shape has the colour {color}?",
        "What sort of figure is {color}?",
        "The {color} object is which shape?",
        "What shape is drawn in {color}?",
    ),
    "existence": TEMPLATES["existence"]
    + (
        "Does the image contain {noun}?",
        "Do you see {noun}?",
        "Would you say the image has {noun}?",
        "Can {noun} be seen in this picture?",
        "Does {noun} appear in the image?",
        "Can I spot {noun} here?",
        "Is there {noun} somewhere in the picture?",
        "Does this picture include {noun}?",
    ),
    "left_right": TEMPLATES["left_right"]
    + (
        "Is the {a} on the left or the right of the {b}?",
        "Relative to the {b}, is the {a} on the left or on the right?",
        "Which side of the {b} is the {a} on, left or right?",
        "Does the {a} lie left or right of the {b}?",
        "From the {b}, is the {a} found to the left or to the right?",
    ),
    "above_below": TEMPLATES["above_below"]
    + (
        "Is the {a} higher or lower than the {b}, above or below?",
        "Relative to the {b}, is the {a} above or below it?",
        "Does the {a} sit above or below the {b}?",
        "From the {b}, is the {a} found above or below?",
    ),
    "where": TEMPLATES["where"]
    + (
        "Where is the {a} compared to the {b}?",
        "Where does the {a} sit with respect to the {b}?",
        "Seen from the {b}, where is the {a}?",
        "What is the position of the {a} relative to the {b}?",
        "In relation to the {b}, where is the {a}?",
        "Is the {a} left of, right of, above or below the {b}?",
    ),
    "position": TEMPLATES["position"]
    + (
        "Where in the picture is the {a}?",
        "In which part of the image is the {a}?",
        "Which part of the picture is the {a} in?",
        "Where can the {a} be found?",
        "Where does the {a} sit in the image?",
        "What part of the image holds the {a}?",
    ),
}

# `VARIED` names the object asked about ({a}) first in most "where" and "above or below"
# wordings (5 of 7, 3 of 5), and a VLM trained on them learns "the first object named is the one
# asked about": it answers reworded questions that name the reference first inverted ("In which
# direction from the {b} does the {a} lie?": 11%, below its prior; benchmarks/README.md, "Reworded
# relation questions"). `BALANCED` adds wordings that name the reference first until each relation
# form has as many of each order, so only the words ("from", "relative to") tell the two apart.
# Measured once as a grounding stage, it did not help (same section); no recipe uses it yet.
BALANCED: dict[str, tuple[str, ...]] = VARIED | {
    "above_below": VARIED["above_below"]
    + (
        "Taking the {b} as the reference, is the {a} above or below?",
        "With respect to the {b}, is the {a} higher up or lower down?",
        "Is the {a} placed above the {b} or below it?",
    ),
    "where": VARIED["where"]
    + (
        "From the {b}, which way is the {a}?",
        "With the {b} as the reference point, where is the {a}?",
        "Starting at the {b}, which way do you go to reach the {a}?",
    ),
}

WORDINGS = {"templates": TEMPLATES, "varied": VARIED, "balanced": BALANCED}


def wordings(name: str) -> dict[str, tuple[str, ...]]:
    """The wording table called `name` ("templates", "varied" or "balanced")."""
    if name not in WORDINGS:
        raise ValueError(f"question_wordings={name!r}: valid are {', '.join(WORDINGS)}")
    return WORDINGS[name]
