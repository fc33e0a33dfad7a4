"""The `vlkit` command, generated from the library functions in `vlkit.commands` (no logic here).

`COMMANDS` is the one table of command → function. A function's signature is its command line and
its docstring is its help (the first line in `vlkit --help`, the text and the `Args:` lines in
`vlkit COMMAND --help`, an `Examples:` section as the epilog):
- a positional-or-keyword parameter is a positional argument (optional when it has a default; a
  `Sequence` takes one or more words: `vlkit classify MODEL a.png b.png`);
- a keyword-only parameter is an option `--its-name` (required when it has no default; a
  `Sequence` repeats: `--stop a --stop b`; `bool = False` is `--name` and `bool = True` is
  `--no-name`; `Literal[...]` gives the choices); `Annotated[T, Arg(...)]` names a flag, metavar
  or nargs the name would not give (`-k`, `--set KEY=VALUE`, `--compare A B`);
- a frozen-dataclass parameter spreads its fields as options (decoding, teacher calls), with the
  parameter's default's values, else the dataclass's (a field without a default is required);
- `progress` is the global `-q`'s opposite.
`main` calls `fn(**arguments)` with every parsed value and fails if one is left over, so an option
cannot be parsed and then ignored (as `vlkit instruct --cache` once was).

Why a small generator over `inspect.signature` rather than jsonargparse (litgpt's choice): every
flag users type today keeps its exact spelling and shape (space-separated positional lists, `-k`
beside `--k`, repeated `--set`, `--no-short`), whereas jsonargparse has its own conventions for
lists, booleans and option names that would each need per-argument configuration to match; and
it would be a new dependency imported by `vlkit --help`, which stays instant (the command modules
import torch and transformers only inside the functions).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType, NoneType, UnionType
from typing import Any

from vlkit.commands import (
    Arg,
    contrastive,
    data,
    deploy,
    detection,
    evaluation,
    generative,
    instruct,
    segmentation,
    training,
    training_free,
)

DESCRIPTION = "Build, train, evaluate and serve vision-language models, offline-first."
EPILOG = """examples:
  vlkit tour                                        train, evaluate and report on the embedded scenes:
                                                    runs/tour (a CLIP) and runs/tour/llava (a LLaVA-style VLM)
  vlkit train recipes/clip-scenes.yaml --set train.lr=3e-4
  vlkit eval runs/tour --data scenes                writes runs/tour/eval-scenes
  vlkit eval llava-hf-folder --task vqa --data vqav2/ --limit 100
  vlkit eval --compare runs/tour/eval-scenes runs/clip-scenes/eval-scenes
  vlkit classify runs/tour photo.png --labels "red circle,blue star"
  vlkit index runs/tour images/ --out images.index
  vlkit search images.index "a small red circle"
  vlkit asif --data fashion-mnist --out runs/asif-fmnist   a training-free CLIP from pretrained encoders
  vlkit export runs/clip-scenes --format transformers --out clip-hf
  vlkit train recipes/llava-scenes.yaml                 a generative VLM (vision → connector → LM)
  vlkit caption runs/tour/llava photo.png
  vlkit ask runs/tour/llava photo.png "What color is the circle?"
  vlkit chat runs/tour/llava --image photo.png      interactive; /image PATH switches images
  vlkit train recipes/owlvit-scenes.yaml            an open-vocabulary detector (OWL-ViT) on a CLIP
  vlkit detect runs/owlvit-scenes scene.png --queries "red circle,small blue star"
  vlkit train recipes/clipseg-scenes.yaml           a text-prompted segmenter (CLIPSeg) on a CLIP
  vlkit segment runs/clipseg-scenes scene.png --prompt "the large green triangle"
  vlkit data shards scenes --count 1000 --out shards/
  vlkit data memes memes/ --train 2000              a scenes task in the Hateful Memes format (recipes/vilt-memes.yaml)
  vlkit serve runs/tour/llava --ui                  OpenAI-compatible API, and a web UI at /ui
  vlkit demo runs/tour                              the web UI alone (Gradio), at http://127.0.0.1:7860/
"""

# A group of commands: the module's docstring is the group's help.
Group = tuple[ModuleType, dict[str, Callable]]
COMMANDS: dict[str, Callable | Group] = {
    "tour": training.tour,
    "train": training.train,
    "train-lm": training.train_lm,
    "eval": evaluation.evaluate,
    "classify": contrastive.classify,
    "index": contrastive.index,
    "search": contrastive.search,
    "asif": training_free.asif,
    "conse": training_free.conse,
    "caption": generative.caption,
    "ask": generative.ask,
    "chat": generative.chat,
    "detect": detection.detect,
    "segment": segmentation.segment,
    "export": deploy.export,
    "data": (data, {"shards": data.shards, "memes": data.memes}),
    "instruct": (
        instruct,
        {
            "llava": instruct.llava,
            "minigpt4": instruct.minigpt4,
            "multiinstruct": instruct.multiinstruct,
            "incontext": instruct.incontext,
        },
    ),
    "serve": deploy.serve,
    "demo": deploy.demo,
}
# Parameters filled from the global options rather than from the command's own.
GLOBAL_PARAMETERS = {"progress": lambda options: not options["quiet"]}
RAW = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> None:
    options = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Quiet transformers (weight-loading bars, info logs) without importing it: config-only
    # commands stay instant.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    fn = options["_fn"]
    try:
        fn(**call_arguments(fn, options))
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlkit", description=DESCRIPTION, epilog=EPILOG, formatter_class=RAW
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_commands(parser, COMMANDS, "_command")
    return parser


def call_arguments(fn: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """`fn`'s arguments from the parsed options; every option of `fn`'s command is used once."""
    left = {k: v for k, v in options.items() if not k.startswith("_") and k != "quiet"}
    arguments = {}
    for param, hint, _ in parameters(fn):
        if param.name in GLOBAL_PARAMETERS:
            arguments[param.name] = GLOBAL_PARAMETERS[param.name](options)
        elif dataclasses.is_dataclass(hint):
            arguments[param.name] = hint(**{f.name: left.pop(f.name) for f in dataclasses.fields(hint)})
        else:
            arguments[param.name] = left.pop(param.name)
    if left:
        raise AssertionError(f"{fn.__qualname__}: parsed but not passed: {', '.join(sorted(left))}")
    return arguments


def parameters(fn: Callable) -> Iterator[tuple[inspect.Parameter, Any, Arg]]:
    """(parameter, its type without `Annotated` / `None`, its `Arg`) for each parameter of `fn`."""
    hints = typing.get_type_hints(fn, include_extras=True)
    for param in inspect.signature(fn).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"{fn.__qualname__}: *args, **kwargs and positional-only have no command line")
        hint, arg = hints[param.name], Arg()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            arg = next((x for x in extras if isinstance(x, Arg)), arg)
        if typing.get_origin(hint) in (UnionType, typing.Union):
            (hint,) = [t for t in typing.get_args(hint) if t is not NoneType]
        yield param, hint, arg


@dataclasses.dataclass
class Doc:
    """A docstring read as help: its first line, its text, its `Args:` lines and `Examples:`."""

    summary: str
    description: str
    args: dict[str, str]
    epilog: str | None

    @classmethod
    def of(cls, obj: object) -> Doc:
        text = inspect.cleandoc(obj.__doc__ or "")
        body, *sections = re.split(r"^(Args|Examples):\n", text, flags=re.M)
        named = dict(zip(sections[::2], sections[1::2]))
        args = {
            m[1]: " ".join(m[2].split())
            for m in re.finditer(r"^ {4}(\w+): (.*(?:\n {8}.*)*)", named.get("Args", ""), flags=re.M)
        }
        examples = named.get("Examples")
        epilog = "examples:\n" + textwrap.indent(inspect.cleandoc(examples), "  ") if examples else None
        return cls(body.strip().split("\n")[0], body.strip(), args, epilog)


def _add_commands(parser: argparse.ArgumentParser, table: dict, dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    for name, target in table.items():
        doc = Doc.of(target[0] if isinstance(target, tuple) else target)
        command = sub.add_parser(
            name, help=doc.summary, description=doc.description, epilog=doc.epilog, formatter_class=RAW
        )
        if isinstance(target, tuple):
            _add_commands(command, target[1], f"_{name}_command")
        else:
            _add_function(command, target, doc)


def _add_function(parser: argparse.ArgumentParser, fn: Callable, doc: Doc) -> None:
    parser.set_defaults(_fn=fn)
    for param, hint, arg in parameters(fn):
        if param.name in GLOBAL_PARAMETERS:
            continue
        if not dataclasses.is_dataclass(hint):
            _add_argument(parser, param, hint, arg, doc.args.get(param.name), fn)
            continue
        fields = Doc.of(hint).args
        for field_param, field_hint, field_arg in parameters(hint):
            if param.default is not param.empty:  # the command's own defaults
                default = getattr(param.default, field_param.name)
            else:  # the dataclass's: a field without one is a required option
                default = field_param.default
            field_param = field_param.replace(kind=field_param.KEYWORD_ONLY, default=default)
            _add_argument(parser, field_param, field_hint, field_arg, fields.get(field_param.name), hint)


def _add_argument(
    parser: argparse.ArgumentParser, param: inspect.Parameter, hint: Any, arg: Arg, text: str | None, owner
) -> None:
    """One parameter as one argparse argument, by the rules in this module's docstring."""
    if text is None:
        raise TypeError(f"{owner.__qualname__}: document {param.name!r} in the docstring's Args")
    required, keyword = param.default is param.empty, param.kind is param.KEYWORD_ONLY
    default = None if required else param.default
    text = text.replace("%", "%%")
    if hint is bool and default:  # `--no-name`; the docstring says what `name` does
        text = f"do not {text}"
    elif default is not None and not isinstance(default, list | tuple) and "default" not in text:
        text += " (default: %(default)s)"
    kwargs: dict[str, Any] = {"help": text}
    origin = typing.get_origin(hint)
    if hint is bool:
        kwargs["action"] = "store_false" if default else "store_true"
    elif origin in (list, tuple, Sequence):
        kwargs.update(type=typing.get_args(hint)[0], metavar=arg.metavar)
        if not keyword:
            kwargs["nargs"] = "+" if required else "*"
        elif arg.nargs:
            kwargs["nargs"] = arg.nargs
        else:
            kwargs["action"], default = "append", list(default or [])
    elif origin is typing.Literal:
        choices = typing.get_args(hint)
        kwargs.update(choices=choices, type=type(choices[0]), metavar=arg.metavar)
    else:
        kwargs.update(type=hint, metavar=arg.metavar)
        if arg.nargs == "?":  # `--name` alone gives `const`
            kwargs.update(nargs="?", const=arg.const)
    if not keyword:
        if not required:
            kwargs.setdefault("nargs", "?")
        parser.add_argument(param.name, **kwargs, **({} if required else {"default": default}))
        return
    flag = "--" + ("no-" if hint is bool and default else "") + param.name.replace("_", "-")
    parser.add_argument(
        *(arg.flags or (flag,)), dest=param.name, required=required, default=default, **kwargs
    )
