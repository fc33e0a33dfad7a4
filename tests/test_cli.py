"""The `vlkit` command, run as a user runs it: subprocesses on a tiny trained run.

Every command but --help imports transformers (~3-5 s per process), so those tests are slow.
"""

import argparse
import dataclasses
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import vlkit
from tests.conftest import make_tiny_fusion_cfg
from vlkit import cli
from vlkit.commands import deploy, evaluation
from vlkit.data import build_dataset
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.data.shards import WebDatasetShards
from vlkit.generation import Decoding
from vlkit.index import SearchIndex
from vlkit.models.build import build_model, save_model
from vlkit.models.kinds import texts_for
from vlkit.train.checkpoint import latest_checkpoint

SUBCOMMANDS = list(cli.COMMANDS)  # from the CLI's one table: a new command is tested here unedited


def _table_paths(table: dict = cli.COMMANDS, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command the table reaches, a group's as (group, command)."""
    paths = []
    for name, target in table.items():
        if isinstance(target, tuple):  # a group: (module, its own table)
            paths += _table_paths(target[1], (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


LEAF_COMMANDS = _table_paths()


def vlkit_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "vlkit", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture
def scene_pngs(tmp_path) -> list[Path]:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    scenes = Scenes(ScenesConfig(image_size=32, seed=11))
    paths = [folder / "a.png", folder / "b.png", folder / "sub" / "c.png", folder / "d.png"]
    for i, path in enumerate(paths):
        Image.fromarray(scenes[i]["image"]).save(path)
    (folder / "notes.txt").write_text("not an image")
    return paths


# ---------------------------------------------------------------- help (fast)


def test_help_lists_every_subcommand():
    out = ok(vlkit_cli("--help"))
    for name in SUBCOMMANDS:
        assert name in out
    assert "examples:" in out


@pytest.mark.parametrize(
    "command", [[c] for c in SUBCOMMANDS] + [list(p) for p in LEAF_COMMANDS if len(p) > 1], ids=" ".join
)
def test_every_subcommand_has_help(command):
    out = ok(vlkit_cli(*command, "--help"))
    assert out.startswith(f"usage: vlkit {' '.join(command)}")


def test_no_command_is_a_usage_error():
    result = vlkit_cli()
    assert result.returncode == 2 and "usage: vlkit" in result.stderr


# ---------------------------------------------------------------- commands (slow)


@pytest.mark.slow
def test_train_print_config_applies_overrides():
    out = ok(vlkit_cli("train", "--print-config", "--set", "train.steps=7", "--set", "model.loss=siglip"))
    printed = yaml.safe_load(out)
    assert printed["train"]["steps"] == 7 and printed["model"]["loss"] == "siglip"
    assert "steps: 7" in out


@pytest.mark.slow
def test_train_unknown_key_is_one_error_line():
    result = vlkit_cli("train", "--set", "train.lrr=1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "train.lrr" in errors[0] and "lr" in errors[0].split("valid keys")[1]


@pytest.mark.slow
def test_classify_prints_one_line_per_image(tiny_run, scene_pngs):
    images = scene_pngs[:3]
    out = ok(vlkit_cli("classify", tiny_run, *images, "--labels", "red circle,blue square", "--top", "2"))
    lines = out.strip().splitlines()
    assert len(lines) == len(images)
    for path, line in zip(images, lines):
        fields = line.split("\t")
        assert fields[0] == str(path)
        scores = dict(f.split("=") for f in fields[1:])
        assert set(scores) == {"red circle", "blue square"}
        assert sum(float(v) for v in scores.values()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.slow
def test_classify_missing_image_is_an_error_line(tiny_run, tmp_path):
    result = vlkit_cli("classify", tiny_run, tmp_path / "missing.png", "--labels", "red circle")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert "missing.png" in result.stderr


@pytest.mark.slow
def test_index_then_search(tiny_run, scene_pngs, tmp_path):
    index_dir = tmp_path / "images.index"
    out = ok(vlkit_cli("index", tiny_run, scene_pngs[0].parent, "--out", index_dir))
    assert f"indexed {len(scene_pngs)} images" in out  # recursive, and notes.txt skipped
    index = SearchIndex.load(index_dir)
    assert sorted(index.keys) == sorted(str(p) for p in scene_pngs)
    assert Path(index.metadata["model"]) == latest_checkpoint(tiny_run).resolve()

    out = ok(vlkit_cli("search", index_dir, "a red circle", "-k", "2"))
    lines = out.strip().splitlines()
    assert lines[0] == "# a red circle"
    results = [line.split("\t") for line in lines[1:]]
    assert len(results) == 2
    scores = [float(score) for score, _ in results]
    assert scores == sorted(scores, reverse=True)
    assert all(key in index.keys for _, key in results)
    # The backend is chosen at search time; exact faiss search returns the same keys.
    faiss_out = ok(vlkit_cli("search", index_dir, "a red circle", "-k", "2", "--backend", "faiss"))
    faiss_keys = [line.split("\t")[1] for line in faiss_out.strip().splitlines()[1:]]
    assert faiss_keys == [key for _, key in results]


@pytest.mark.slow
def test_search_rerank_orders_the_shortlist_by_a_fusion_models_itm(tiny_run, scene_pngs, tmp_path):
    """`vlkit search --rerank FUSION --shortlist N`: the index's best N images per query, re-ordered
    by the fusion model's ITM logit + the index model's logit (cosine x its scale), the best k
    printed with that score; `--rerank-by itm` orders and prints by the ITM logit alone."""
    cfg = make_tiny_fusion_cfg()
    fusion = tmp_path / "fusion"
    save_model(build_model(cfg, texts=texts_for(cfg, build_dataset(cfg.data))), cfg, fusion)
    index_dir = tmp_path / "images.index"
    ok(vlkit_cli("index", tiny_run, scene_pngs[0].parent, "--out", index_dir))
    query = "a red circle"
    found = ok(vlkit_cli("search", index_dir, query, "-k", "3")).splitlines()[1:]
    shortlist = [line.split("\t")[1] for line in found]
    itm = vlkit.load(fusion).match(shortlist, [query] * 3)  # only the shortlist is re-ranked
    dual = vlkit.load(tiny_run)
    combined = itm + dual.scale() * (dual.embed_images(shortlist) @ dual.embed_texts([query])[0])
    for extra, expected in (([], combined), (["--rerank-by", "itm"], itm)):
        out = ok(
            vlkit_cli("search", index_dir, query, "-k", "2", "--rerank", fusion, "--shortlist", "3", *extra)
        )
        lines = out.strip().splitlines()
        assert lines[0] == f"# {query}" and len(lines) == 3
        printed = [(key, float(score)) for score, key in (line.split("\t") for line in lines[1:])]
        best = np.argsort(-expected, kind="stable")[:2]
        assert [key for key, _ in printed] == [shortlist[i] for i in best]
        assert [score for _, score in printed] == pytest.approx(expected[best], abs=1e-3)


@pytest.mark.slow
def test_index_kind_and_parameters_are_saved_and_bad_ones_named(tiny_run, scene_pngs, tmp_path):
    folder, index_dir = scene_pngs[0].parent, tmp_path / "images.index"
    out = ok(vlkit_cli("index", tiny_run, folder, "--out", index_dir, "--kind", "hnsw", "--param", "M=8"))
    assert f"indexed {len(scene_pngs)} images into {index_dir} (hnsw: M=8, ef_construction=64" in out
    header = json.loads((index_dir / "index.json").read_text())
    assert header["kind"] == "hnsw" and header["params"]["M"] == 8
    assert (index_dir / "shard-00000.faiss").is_file()
    hits = ok(vlkit_cli("search", index_dir, "a red circle", "-k", "2", "--param", "ef_search=4"))
    assert len(hits.strip().splitlines()) == 3
    for args, message in [
        (("index", tiny_run, folder, "--out", tmp_path / "x", "--kind", "ivf-pq"), "this one has 4"),
        (
            ("index", tiny_run, folder, "--out", tmp_path / "x", "--param", "nprobe=few"),
            "expected NAME=INTEGER",
        ),
        (("search", index_dir, "a red circle", "--param", "M=4"), "valid: ['ef_search']"),
    ]:
        result = vlkit_cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_index_and_classify_skip_and_report_unreadable_images(
    tiny_run, scene_pngs, make_unreadable, tmp_path
):
    folder = scene_pngs[0].parent
    bad = make_unreadable(folder)
    result = vlkit_cli("index", tiny_run, folder, "--out", tmp_path / "index")
    assert f"indexed {len(scene_pngs)} images" in ok(result)
    assert sorted(SearchIndex.load(tmp_path / "index").keys) == sorted(str(p) for p in scene_pngs)
    listed = [json.loads(x) for x in (tmp_path / "index" / "failures.jsonl").read_text().splitlines()]
    assert sorted(x["path"] for x in listed) == sorted(str(p) for p in bad)
    assert "2 of 6 images could not be read and were skipped" in result.stderr
    assert all(str(p) in result.stderr for p in bad)

    strict = vlkit_cli("index", tiny_run, folder, "--out", tmp_path / "strict", "--strict")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert not (tmp_path / "strict").exists()

    images = [scene_pngs[0], bad[0], scene_pngs[1], bad[1]]
    result = vlkit_cli("classify", tiny_run, *images, "--labels", "red circle,blue square")
    lines = ok(result).strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(scene_pngs[0]), str(scene_pngs[1])]
    assert "2 of 4 images could not be read" in result.stderr


def test_caption_skips_and_reports_unreadable_images(tiny_vlm_run, scene_pngs, make_unreadable):
    bad = make_unreadable(scene_pngs[0].parent)
    result = vlkit_cli("caption", tiny_vlm_run, bad[0], scene_pngs[0], bad[1], "--max-new-tokens", "4")
    lines = ok(result).rstrip("\n").splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(scene_pngs[0])]
    assert "2 of 3 images could not be read" in result.stderr
    strict = vlkit_cli("caption", tiny_vlm_run, bad[0], scene_pngs[0], "--strict", "--max-new-tokens", "4")
    assert strict.returncode == 2 and "truncated.png" in strict.stderr and not strict.stdout


@pytest.mark.slow
def test_chat_reports_a_missing_image_at_once_and_goes_on(tiny_vlm_run, scene_pngs):
    turns = "/image missing.png\nHi\n/image " + str(scene_pngs[0]) + "\nWhat color?\n"
    result = subprocess.run(
        [sys.executable, "-m", "vlkit", "chat", str(tiny_vlm_run), "--max-new-tokens", "3"],
        input=turns,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"},
        timeout=120,  # before the fix the reply thread died and the chat waited forever
    )
    assert result.returncode == 0, result.stderr
    assert "error: missing.png: file not found" in result.stderr
    assert "Traceback" not in result.stderr
    # both messages answered, the second about the image it switched to
    model, decoding = vlkit.load(tiny_vlm_run), Decoding(max_new_tokens=3)
    first = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    second = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": str(scene_pngs[0])},
                {"type": "text", "text": "What color?"},
            ],
        }
    ]
    expected = "".join(model.stream(first, decoding)) + "\n" + "".join(model.stream(second, decoding)) + "\n"
    assert result.stdout == expected


@pytest.mark.slow
def test_chat_ctrl_c_and_a_missing_image_option_exit_without_a_traceback(tiny_vlm_run):
    missing = vlkit_cli("chat", tiny_vlm_run, "--image", "missing.png")
    assert missing.returncode == 2 and "error: missing.png: file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    chat = subprocess.Popen(
        [sys.executable, "-m", "vlkit", "chat", str(tiny_vlm_run)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"},
    )
    while not chat.stderr.readline().startswith("chat: type a message"):  # then it waits for a turn
        assert chat.poll() is None
    chat.send_signal(signal.SIGINT)
    _, rest = chat.communicate(timeout=60)  # reads stderr while waiting: a full pipe cannot block it
    assert chat.returncode == 0, rest[-2000:]
    assert "Traceback" not in rest


@pytest.mark.slow
def test_eval_writes_result_and_report(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = ok(vlkit_cli("eval", run, "--data", "scenes", "--limit", "32"))
    folder = run / "eval-scenes"  # in the run folder the user named (not its checkpoint's)
    assert not (latest_checkpoint(run) / "README.md").exists()  # no model card unless --card
    result = json.loads((folder / "result.json").read_text())
    assert result["data"] == "scenes" and result["limit"] == 32
    metrics = result["metrics"]
    expected = {"top1", "top5", "mean_per_class_recall", "wino_text", "wino_image", "wino_group"}
    expected |= {f"{d}_R@{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)}
    expected |= {f"t2i_R@{k}_any" for k in (1, 5, 10)} | {"t2i_shared_queries"}  # retrieval baselines
    assert set(metrics) == expected
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    report = (folder / "report.md").read_text()
    assert report.startswith("# vlkit eval: scenes") and "| metric | value |" in report
    assert f"report: {folder / 'report.md'}" in out


@pytest.mark.slow
def test_data_shards_round_trip(tmp_path):
    out_dir = tmp_path / "shards"
    out = ok(vlkit_cli("data", "shards", "scenes", "--count", "10", "--per-shard", "4", "--out", out_dir))
    assert "wrote 10 samples into 3 shards" in out
    tars = sorted(out_dir.glob("*.tar"))
    assert len(tars) == 3
    shards = WebDatasetShards(str(out_dir / "*.tar"))
    assert len(shards) == 10
    scenes = Scenes(ScenesConfig())  # `vlkit data` uses the default scenes world
    for i in (0, 9):
        sample = shards[i]
        np.testing.assert_array_equal(sample["image"], scenes[i]["image"])  # PNG is lossless
        assert sample["captions"] == scenes[i]["captions"]


@pytest.mark.slow
def test_export_transformers(tiny_run, tmp_path):
    out_dir = tmp_path / "clip-hf"
    out = ok(vlkit_cli("export", tiny_run, "--format", "transformers", "--out", out_dir))
    assert f"exported to {out_dir}" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["model_type"] == "clip"
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "processor_config.json").is_file()
    # loadable offline by transformers (its parity with vlkit is tested in test_api_export.py)
    from transformers import CLIPModel

    hf = CLIPModel.from_pretrained(out_dir)
    assert hf.config.projection_dim == 8


@pytest.mark.parametrize("command", ["classify", "index"])
def test_embedding_commands_on_a_generative_model_say_what_to_do(command, tiny_vlm_run, scene_pngs, tmp_path):
    args = {
        "classify": [scene_pngs[0], "--labels", "red circle,blue star"],
        "index": [scene_pngs[0].parent, "--out", tmp_path / "index"],
    }[command]
    result = vlkit_cli(command, tiny_vlm_run, *args)
    assert result.returncode != 0
    assert f"is a generative model; {command} needs a contrastive one" in result.stderr
    assert "Traceback" not in result.stderr


def test_instruct_cache_flag_reaches_the_generator(monkeypatch, tmp_path):
    """--cache names the teacher-reply cache (it was parsed and silently ignored)."""
    from vlkit import cli, instruct

    seen = {}
    monkeypatch.setattr(instruct, "generate_llava", lambda *a, **kw: seen.update(kw) or {})
    out, cache = tmp_path / "out", tmp_path / "shared.sqlite"
    cli.main(
        ["instruct", "llava", "--source", "scenes", "--count", "1", "--out", str(out), "--cache", str(cache)]
    )
    assert seen["cache"] == str(cache)


# ---------------------------------------------------------------- the generated parser (fast)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, its parser) for every command that runs a function, sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
    if parser.get_default("_fn"):
        yield path, parser


def _some_value(action: argparse.Action, i: int) -> tuple[list[str], object]:
    """Words that set `action` to a value other than its default, and that value."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return [action.option_strings[0]], not action.default
    if action.choices:
        value = next(c for c in action.choices if c != action.default)
    else:
        value = {int: 1000 + i, float: i + 0.5}.get(action.type, f"value-{i}")
    if isinstance(action, argparse._AppendAction):
        return [action.option_strings[0], str(value), action.option_strings[0], "more"], [value, "more"]
    words, parsed = [str(value)], value
    if action.nargs in ("+", "*"):
        words, parsed = [str(value), "more"], [value, "more"]
    return ([action.option_strings[0]] if action.option_strings else []) + words, parsed


def _received(arguments: dict, name: str):
    """The value the function received for option `name` (a parameter, or a dataclass's field)."""
    if name in arguments:
        return arguments[name]
    holders = [v for v in arguments.values() if dataclasses.is_dataclass(v) and hasattr(v, name)]
    assert len(holders) == 1, f"{name}: no parameter or dataclass field of that name"
    return getattr(holders[0], name)


COMMANDS = list(_commands(cli.build_parser()))


def test_the_table_reaches_every_command():
    """The parser built from the table has exactly the table's commands (groups' included)."""
    assert sorted(path for path, _ in COMMANDS) == sorted(LEAF_COMMANDS)
    assert {"data", "instruct", "train", "serve"} <= set(SUBCOMMANDS)  # the table is the real one


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_reaches_its_function(path, parser):
    """Each option and positional the command's --help lists arrives, with its parsed value, as an
    argument of the command's function (the `--cache` bug: parsed, then never passed)."""
    fn = parser.get_default("_fn")
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    listed = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", parser.format_help())) - {"-h", "--help"}
    assert listed <= {s for a in actions for s in a.option_strings}, "help lists an unknown flag"
    argv, expected = ["-q", *path], {}
    for i, action in enumerate(actions):
        words, expected[action.dest] = _some_value(action, i)
        argv += words
    options = vars(cli.build_parser().parse_args(argv))
    arguments = cli.call_arguments(fn, options)  # fails when a parsed value is left over
    assert set(arguments) == set(inspect.signature(fn).parameters)
    for dest, value in expected.items():
        got = _received(arguments, dest)
        assert (list(got) if isinstance(got, tuple | list) else got) == value, dest
    if "progress" in arguments:
        assert arguments["progress"] is False  # -q


def test_an_option_without_a_parameter_cannot_pass_silently():
    options = vars(cli.build_parser().parse_args(["serve", "--lm", "x"]))
    cli.call_arguments(deploy.serve, options)
    with pytest.raises(AssertionError, match="parsed but not passed: cache"):
        cli.call_arguments(deploy.serve, options | {"cache": "x.sqlite"})


def test_defaults_come_from_the_signatures():
    parse = cli.build_parser().parse_args
    assert parse(["ask", "m", "a.png", "q?"]).max_new_tokens == 8  # ask's own default
    assert parse(["caption", "m", "a.png"]).max_new_tokens == 48
    assert parse(["chat", "m"]).max_new_tokens == 128
    assert cli.call_arguments(evaluation.evaluate, vars(parse(["eval", "m"])))["card"] is False
    assert cli.call_arguments(evaluation.evaluate, vars(parse(["eval", "m", "--card"])))["card"] is True
    assert (
        parse(["ask", "m", "a.png", "q"]).short is True
        and parse(["ask", "m", "a.png", "q", "--no-short"]).short is False
    )
    assert (
        parse(["instruct", "incontext", "--input", "a.json", "--k", "2", "--out", "o"]).input_json == "a.json"
    )
    assert parse(["train", "--set", "a=1", "--set", "b=2"]).overrides == ["a=1", "b=2"]
    llava = parse(["instruct", "llava", "--source", "scenes", "--out", "o"])
    assert (llava.source, llava.out, llava.count, llava.seed) == ("scenes", "o", None, 0)  # one group
    with pytest.raises(SystemExit):  # a group's field without a default is a required option
        parse(["instruct", "llava", "--out", "o"])


def test_building_the_parser_imports_nothing_heavy():
    code = (
        "import sys; from vlkit.cli import build_parser; build_parser().format_help(); "
        "print(sorted({'torch', 'transformers', 'numpy', 'PIL'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
