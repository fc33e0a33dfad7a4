"""The README's "Using it" commands, run as written after a tiny tour, so the docs cannot drift.

Every fenced block right after a `<!-- tested: tests/test_readme.py ... -->` line is run in a
folder where a tiny tour wrote `runs/tour` and `runs/tour/llava` (what `make tour` leaves),
with `recipes/` beside them and `a.png`, `b.png`, `my-images/` standing for the user's images.
bash lines run as `vlkit` commands (`&&` chains them); python blocks run as scripts. The only
changes, all listed here:
- `vlkit train` gets `tiny_overrides.train` appended (conftest.py's `--set` overrides: tiny towers,
  2 steps);
- `--count N` becomes `--count 4`;
- the commands in `NOT_RUN` are not run, for the reason given (each is tested elsewhere).

A block marked `<!-- tested: tests/test_readme.py, served by: vlkit serve MODEL --port N -->`
(curl or the openai client) runs while that server runs, started first on a free port that
replaces N in the block; a bash block runs in bash with `set -euo pipefail`. The served blocks run
after the commands, as a reader gets to them: a server may use what a command wrote (`--index
my.index`).
"""

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.serve.server import free_port
from vlkit.tour import run_tour

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- tested: tests/test_readme.py"
SERVED = ", served by:"
NOT_RUN = {
    "vlkit serve": "a server runs until stopped (the blocks marked `served by:` run against one)",
    "vlkit demo": "a web server runs until stopped (tests/test_ui_browser.py drives it in Chromium)",
    "vlkit train recipes/llava-smollm2.yaml": "loads the 135M SmolLM2 in both stages (tests/test_recipes.py)",
}


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block that follows a plain `tested` mark."""
    return [(lang, code) for note, lang, code in _marked(text) if not note.startswith(SERVED)]


def served_blocks(text: str) -> list[tuple[str, str, str]]:
    """(server command, language, code) of each block marked `served by: COMMAND`."""
    marked = _marked(text)
    return [
        (note.removeprefix(SERVED).strip(), lang, code)
        for note, lang, code in marked
        if note.startswith(SERVED)
    ]


def _marked(text: str) -> list[tuple[str, str, str]]:
    """(the mark's note, language, code) of each fenced block right after a mark."""
    return re.findall(re.escape(MARK) + r"([^>]*?)-->\n```(\w+)\n(.*?)\n```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """A bash block's commands as argument lists (comments dropped, `&&` split)."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            n = words.index("&&") if "&&" in words else len(words)
            out.append(words[:n])
            words = words[n + 1 :]
    return out


def as_tested(words: list[str], train_overrides: Sequence[str]) -> list[str]:
    """The tiny overrides this module's docstring lists."""
    words = list(words)
    if "--count" in words:
        words[words.index("--count") + 1] = "4"
    if words[:2] == ["vlkit", "train"]:
        words += [a for o in train_overrides for a in ("--set", o)]
    return words


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory, tiny_overrides) -> Path:
    """A folder as a newcomer's after `make tour` (tiny), with their own images."""
    home = tmp_path_factory.mktemp("newcomer")
    (home / "recipes").symlink_to(ROOT / "recipes")
    tour, generative = list(tiny_overrides.tour), list(tiny_overrides.tour_generative)
    run_tour(str(home / "runs" / "tour"), tour, progress=False, generative_overrides=generative)
    scenes = Scenes(ScenesConfig(image_size=32, seed=5))
    (home / "my-images").mkdir()
    for i, path in enumerate(["a.png", "b.png", "my-images/one.png", "my-images/two.png"]):
        Image.fromarray(scenes[i]["image"]).save(home / path)
    return home


def test_the_marked_blocks_are_found_and_every_skip_is_a_readme_command():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert [lang for lang, _ in blocks] == ["bash", "python", "bash", "bash", "python", "bash"]
    lines = [" ".join(c) for lang, code in blocks if lang == "bash" for c in commands(code)]
    assert any("runs/tour" in line for line in lines)
    for skipped in NOT_RUN:
        assert any(line.startswith(skipped) for line in lines), f"{skipped!r} is no longer in the README"
    served = served_blocks((ROOT / "README.md").read_text())
    assert [lang for _, lang, _ in served] == ["bash", "python", "bash"]
    for command, _, code in served:
        words = shlex.split(command)
        assert words[:2] == ["vlkit", "serve"] and f":{words[words.index('--port') + 1]}/" in code


def _started(folder: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return dict(cwd=folder, stdout=subprocess.PIPE, text=True, env=env)


def _wait_until_ready(server: subprocess.Popen, port: str) -> None:
    line = server.stdout.readline()  # printed once the model is loaded
    assert line.startswith("ready: serving"), f"vlkit serve said {line!r} (exit {server.poll()})"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "vlkit serve did not start"
            time.sleep(0.2)


@pytest.mark.slow
def test_readme_commands_run_as_written_after_a_tour(newcomer, tiny_overrides):
    for lang, code in readme_blocks((ROOT / "README.md").read_text()):
        if lang == "python":
            _ok(subprocess.run([sys.executable, "-c", code], **_in(newcomer)), code)
            continue
        for words in commands(code):
            if any(" ".join(words).startswith(s) for s in NOT_RUN):
                continue
            args = as_tested(words, tiny_overrides.train)
            assert args[0] == "vlkit", f"README command {words}: not a vlkit command"
            result = subprocess.run([sys.executable, "-m", "vlkit", *args[1:]], **_in(newcomer))
            _ok(result, shlex.join(args))
            if "--compare" in args:
                assert "| top1 |" in result.stdout
    assert (newcomer / "clip-hf" / "config.json").is_file() and (
        newcomer / "llava-hf" / "config.json"
    ).is_file()


@pytest.mark.slow
def test_served_blocks_run_against_their_server(newcomer):
    for command, lang, code in served_blocks((ROOT / "README.md").read_text()):
        words = shlex.split(command)
        port = str(free_port())
        code = code.replace(f":{words[words.index('--port') + 1]}/", f":{port}/")
        words[words.index("--port") + 1] = port
        server = subprocess.Popen([sys.executable, "-m", "vlkit", *words[1:]], **_started(newcomer))
        try:
            _wait_until_ready(server, port)
            run = (
                [sys.executable, "-c", code]
                if lang == "python"
                else ["bash", "-c", "set -euo pipefail\n" + code]
            )
            result = subprocess.run(run, **_in(newcomer))
            _ok(result, code)
            assert result.stdout.strip(), code
        finally:
            server.terminate()
            server.wait(timeout=30)


def _in(folder: Path) -> dict:
    env = {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return dict(cwd=folder, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def _ok(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, (
        f"{what}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
