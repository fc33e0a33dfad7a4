"""The `vlkit` commands as library functions: a function's signature is its command line and its
docstring is its help (`vlkit.cli` generates the parser from them and calls `fn(**args)`).

One module per concern, importing nothing heavy at the top, so `vlkit --help` stays instant:
`training` (tour, train), `evaluation` (eval), `contrastive` (classify, index, search),
`generative` (caption, ask, chat), `deploy` (export, serve), `data` (data shards),
`instruct` (instruct llava | minigpt4 | multiinstruct | incontext).

Conventions the generator reads (see `vlkit.cli`): a positional-or-keyword parameter is a
positional argument, a keyword-only one an option; `Arg` (via `Annotated`) names a flag the
parameter's name would not give; a frozen dataclass parameter spreads its fields as options;
`progress` comes from the global `-q`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arg:
    """What the command line calls a parameter, where its name would not say it: `flags`
    (`("-k",)`, `("--set",)`), `metavar` (`"KEY=VALUE"`), `nargs` (`"+"`: one option, several words)."""

    flags: tuple[str, ...] = ()
    metavar: str | None = None
    nargs: str | None = None
