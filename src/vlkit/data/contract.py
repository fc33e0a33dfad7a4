"""What every data set shares (the contract is in `vlkit.data`'s docstring): the index check."""

from __future__ import annotations

import operator


def check_index(i: int, size: int, what: str) -> int:
    """`i` as an int in [0, size); else IndexError "index {i} out of range for {size} {what}"."""
    i = operator.index(i)
    if not 0 <= i < size:
        raise IndexError(f"index {i} out of range for {size} {what}")
    return i
