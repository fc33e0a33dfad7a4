"""Grounding targets for an auxiliary loss: where the name of one of the scene's objects ends in a
token sequence ("red circle" → the position of "circle"), and the 3 x 3 cell the object lies in.

Scenes samples carry "object_regions" ({"red circle": "top left"}); a head on the model's hidden
state at those positions names the cell (`vlm.grounding_weight`, `model.grounding_weight` of a
fusion encoder). Why: relation questions and colour swaps need the lookup "find the named object,
read what is there"; a control learns that lookup ~5x sooner with this signal than from the
answers alone (benchmarks/README.md, "What shortens the plateau?").
"""

from __future__ import annotations

import weakref

import torch

from vlkit.data.scenes_text import REGIONS

IGNORE = -100


# tokenizer → {phrase: its runs}: a scene names few objects, and tokenizing each name twice per
# sample took ~40% of a grounding batch's collate
_PHRASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def phrase_ids(tokenizer, phrase: str) -> list[list[int]]:
    """The token-id runs `phrase` can take inside a text: alone and after a space (byte-level BPE
    tokenizers such as SmolLM2's spell a word differently there)."""
    known = _PHRASES.setdefault(tokenizer, {})
    if phrase not in known:
        runs = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (phrase, " " + phrase)]
        known[phrase] = [run for k, run in enumerate(runs) if run and run not in runs[:k]]
    return known[phrase]


def grounding_targets(tokenizer, ids: list[int], regions: dict[str, str]) -> list[tuple[int, int]]:
    """(position, cell) for `vlm.grounding_weight`: every place in `ids` where the name of one of
    the scene's objects ends ("red circle" → the position of "circle"), with the index of the
    object's region (`scenes_text.REGIONS`) as the target."""
    targets = []
    for name, where in regions.items():
        if where not in REGIONS:
            raise ValueError(f"object_regions: {name!r} lies in {where!r}, not one of {', '.join(REGIONS)}")
        for run in phrase_ids(tokenizer, name):
            n = len(run)
            targets += [
                (p + n - 1, REGIONS.index(where)) for p in range(len(ids) - n + 1) if ids[p : p + n] == run
            ]
    return sorted(set(targets))


def pad_targets(targets: list[list[tuple[int, int]]]) -> dict[str, torch.Tensor]:
    """Per-sample (position, cell) lists → grounding_positions, grounding_labels: int64[B, K]
    (K: the most any sample has, at least 1), padded with position 0 and label IGNORE."""
    width = max(1, max(len(t) for t in targets))
    positions = torch.zeros((len(targets), width), dtype=torch.long)
    labels = torch.full((len(targets), width), IGNORE, dtype=torch.long)
    for row, pairs in enumerate(targets):
        for col, (position, cell) in enumerate(pairs):
            positions[row, col], labels[row, col] = position, cell
    return {"grounding_positions": positions, "grounding_labels": labels}
