"""JSON Lines, read one way everywhere: `(line number, object)` pairs; errors name `file:line`.

Blank lines are skipped. A log that a crashed writer may have cut mid-line is read with
`torn_tail=True`: an invalid *last* line is dropped, while an invalid line anywhere before it is
still an error (only the last line can be half-written).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def iter_jsonl(path: str | Path, *, torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line of `path`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    for position, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if torn_tail and position == len(numbered) - 1:
                return
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def read_jsonl(path: str | Path, *, torn_tail: bool = False) -> list[dict[str, Any]]:
    """Every object of `path`, in order (see `iter_jsonl`)."""
    return [record for _, record in iter_jsonl(path, torn_tail=torn_tail)]


def cut_torn_tail(path: str | Path) -> bool:
    """Before appending to a log a killed writer may have cut mid-line: removes a last line that
    is not valid JSON (or ends a whole one that lacks its newline), so the next append starts a
    line of its own. True if a torn line was cut off."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else b""
    if not data or data.endswith(b"\n"):
        return False
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
    except ValueError:  # not JSON, or cut inside a UTF-8 character
        with path.open("r+b") as f:
            f.truncate(start)
        return True
    with path.open("ab") as f:
        f.write(b"\n")
    return False
