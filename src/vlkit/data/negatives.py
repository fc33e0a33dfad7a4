"""Hard negative captions for a scene: what image-text matching trains against and what the
scenes-derived Hateful Memes task (`vlkit.data.memes`) asks about.

The edits themselves are the scenes' (`scenes_text.binding_edit` / `shape_edit`, a sample's
`negative_captions`: per caption, [colours swapped, a shape changed]); here one of them, or
another image's caption, is drawn in given shares.
"""

from __future__ import annotations

import numpy as np

NEGATIVE_KINDS = ("colour", "shape", "other image")


def pick_negative(sample: dict, pick: int, other: str | None, shares: list[float], rng) -> str:
    """One hard negative for caption `pick` of `sample`: its colour or shape edit (the scenes'
    `negative_captions`) or `other`, another image's caption (None: it says what this one does),
    whichever of those the sample has when the drawn one is missing."""
    kind = int(rng.choice(len(NEGATIVE_KINDS), p=np.array(shares) / sum(shares)))
    edits = sample.get("negative_captions") or []
    edits = list(edits[pick] if edits and isinstance(edits[0], list) else edits)[:2]
    options = edits + [None] * (2 - len(edits)) + [other]  # colour, shape, other image
    found = options[kind] or next((o for o in options if o), None)
    if found is None:
        raise ValueError(
            f"sample {sample.get('key', '?')}: no negative caption for ITM (no negative_captions, "
            "and every other caption of the batch is also one of its own)"
        )
    return found
