"""No function in src/ is over 60 lines (STYLE.md: split it along a concept boundary)."""

import ast
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 60
# Nothing belongs here: a function over the limit is split, not listed.
ALLOWED: set[tuple[str, str]] = set()


def function_lengths(source: str) -> dict[str, int]:
    """Lines of every function and method (decorators excluded, nested ones counted on their own)."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_no_function_in_src_is_over_60_lines():
    over = []
    for path in sorted(SRC.rglob("*.py")):
        file = path.relative_to(SRC).as_posix()
        for name, lines in function_lengths(path.read_text(encoding="utf-8")).items():
            if lines > MAX_LINES and (file, name) not in ALLOWED:
                over.append(f"{file}:{name} ({lines} lines)")
    assert not over, "split along a concept boundary: " + ", ".join(over)


def test_the_sweep_counts_methods_async_and_nested_functions():
    body = "".join(f"x{i} = {i}\n" for i in range(60))
    source = (
        "class A:\n    async def method(self):\n" + textwrap.indent(body, " " * 8) + "\n"
        "def outer():\n    def inner():\n" + textwrap.indent(body, " " * 8) + "    return inner\n"
        "def short():\n" + textwrap.indent(body[: body.rindex("x59")], " " * 4)
    )
    lengths = function_lengths(source)
    assert lengths == {"method": 61, "inner": 61, "outer": 63, "short": 60}
