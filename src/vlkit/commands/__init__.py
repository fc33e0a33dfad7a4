"""The `vlkit` commands as library functions: a function's signature is its command line and its
docstring is its help (`vlkit.cli` generates the parser from them and calls `fn(**args)`).

One module per concern, importing nothing heavy at the top, so `vlkit --help` stays instant:
`training` (tour, train), `evaluation` (eval), `contrastive` (classify, index, search),
`generative` (caption, ask, chat), `detection` (detect), `segmentation` (segment), `training_free` (asif, conse), `deploy` (export,
serve), `data` (data shards),
`instruct` (instruct llava | minigpt4 | multiinstruct | incontext).

Conventions the generator reads (see `vlkit.cli`): a positional-or-keyword parameter is a
positional argument, a keyword-only one an option; `Arg` (via `Annotated`) names a flag the
parameter's name would not give; a frozen dataclass parameter spreads its fields as options;
`progress` comes from the global `-q`. The batch commands (classify, index, caption) skip an
unreadable image and list it on stderr (`report_failures`) unless `strict` is set.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from vlkit.data.images import ImageError


@dataclass(frozen=True)
class Arg:
    """What the command line calls a parameter, where its name would not say it: `flags`
    (`("-k",)`, `("--set",)`), `metavar` (`"KEY=VALUE"`), `nargs` (`"+"`: one option, several words;
    `"?"`: an option whose value may be left out, then `const`)."""

    flags: tuple[str, ...] = ()
    metavar: str | None = None
    nargs: str | None = None
    const: str | None = None


# `--ray [ADDRESS]`: run on Ray (vlkit.scale); alone, a local Ray started in-process ("local").
RayAddress = Annotated[str | None, Arg(nargs="?", const="local", metavar="ADDRESS")]


def report_failures(failures: Sequence[ImageError], total: int, listed_in: Path | None = None) -> None:
    """The images a batch command skipped, as one warning on stderr (nothing when none were).

    The run still succeeds (exit 0) when some images were read; when none were, the library
    raised a ValueError already (exit 2)."""
    from vlkit.data.images import describe_failures

    if failures:
        print(f"warning: {describe_failures(failures, total, listed_in)}", file=sys.stderr)
