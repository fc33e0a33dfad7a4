"""Held-out wordings of the scenes questions: does a VLM understand the question, or the template?

Every training question of the scenes world (`vlkit.data.scenes_text.questions`) comes from a
few fixed templates. People ask otherwise ("Tell me the colour of the square."), so the
evaluation rewrites each held-out question into a wording written by hand here, which no
training source uses (`test_paraphrases_are_never_training_questions` checks that against the
scenes world and the instruction teacher), with the same answer. A question whose form is not
known raises: a new training template must get its paraphrase here.
"""

from __future__ import annotations

import re

_N = r"(an? \w+ \w+)"  # a noun phrase with its article: "a red circle", "an orange star"
_OBJ = r"(\w+ \w+)"  # "red circle"

# (training question pattern, held-out wordings; one is picked per question by a stable hash)
PARAPHRASES: list[tuple[str, tuple[str, ...]]] = [
    (
        r"How many (?:shapes are there|objects are in the image|shapes can you see)\?",
        ("Count the shapes in this picture.", "Tell me the number of shapes in the image."),
    ),
    (r"How many (\w+)s are there\?", ("Count the {0}s.", "Tell me how many {0}s you see.")),
    (
        r"(?:What color is the|What is the color of the|Which color does the) (\w+)(?: have)?\?",
        ("Tell me the colour of the {0}.", "The {0} has which colour?"),
    ),
    (
        r"(?:What shape is the (\w+) object|Which shape is (\w+)|What is the (\w+) shape)\?",
        ("Tell me the shape of the {0} thing.", "Which kind of shape is coloured {0}?"),
    ),
    (
        rf"(?:Is there|Can you see|Does the picture show) {_N}(?: in the image)?\?",
        ("Is {0} visible anywhere?", "Would I find {0} in this picture?"),
    ),
    (
        rf"Is the {_OBJ} left or right of the {_OBJ}\?",
        ("Looking at the {1}, is the {0} to its left or to its right?",),
    ),
    (rf"Is the {_OBJ} above or below the {_OBJ}\?", ("Compared with the {1}, is the {0} above or below?",)),
    (
        rf"Where is the {_OBJ} relative to the {_OBJ}\?",
        ("In which direction from the {1} does the {0} lie?",),
    ),
]


def paraphrase(question: str) -> str:
    """The held-out wording of one training-template question (same answer)."""
    wording, groups = _wording(question)
    return wording.format(*groups)


def paraphrase_wording(question: str) -> str:
    """Which hand-written wording `paraphrase` uses for `question`, slots unfilled
    ("Tell me the colour of the {0}."): the key of the reworded accuracy per wording."""
    return _wording(question)[0]


def _wording(question: str) -> tuple[str, list[str]]:
    for pattern, wordings in PARAPHRASES:
        match = re.fullmatch(pattern, question)
        if match:
            groups = [g for g in match.groups() if g is not None]
            choice = sum(map(ord, question)) % len(wordings)  # stable across runs and processes
            return wordings[choice], groups
    raise ValueError(f"no paraphrase for the question {question!r}: add its form to PARAPHRASES")
