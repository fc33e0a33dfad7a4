"""Plots: the expected PNGs are written, open as images and are not blank."""

import json

import numpy as np
import pytest
from PIL import Image

from vlkit.plots import plot_confusion, plot_metrics_log, plot_recall_at_k


def _assert_png(path, min_bytes=5_000):
    assert path.is_file(), path
    assert path.stat().st_size > min_bytes  # an empty canvas compresses to a few hundred bytes
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file, so a truncated PNG fails here
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 128 < pixels.max()  # something dark was drawn on the light background


def _write_log(path, lines, truncated_tail=""):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + truncated_tail)


TRAIN_LINES = [{"run": "tiny", "config": {"lr": 0.001}}] + [  # header without a step: skipped
    {"step": step, "loss": 3.0 / (1 + step / 50), "lr": 0.001 * min(1, step / 40), "images_per_s": 410.0}
    for step in range(10, 510, 10)
]
EVAL_LINES = [
    {"step": step, "eval/top1": 0.2 + step / 1000, "eval/t2i_R@1": 0.1 + step / 2000, "eval/i2t_R@1": 0.15}
    for step in (250, 500)
]


def test_metrics_log_writes_loss_and_eval(tmp_path):
    log = tmp_path / "metrics.jsonl"
    _write_log(log, TRAIN_LINES + EVAL_LINES, truncated_tail='{"step": 510, "loss": 0.4, "l')
    written = plot_metrics_log(log, tmp_path / "plots")
    assert written == [tmp_path / "plots" / "loss.png", tmp_path / "plots" / "eval.png"]
    for path in written:
        _assert_png(path)


def test_metrics_log_skips_plots_with_nothing_to_draw(tmp_path):
    log = tmp_path / "metrics.jsonl"
    _write_log(log, EVAL_LINES)
    assert plot_metrics_log(log, tmp_path) == [tmp_path / "eval.png"]
    _write_log(log, TRAIN_LINES)
    assert plot_metrics_log(log, tmp_path / "train_only") == [tmp_path / "train_only" / "loss.png"]
    _write_log(log, [], truncated_tail='{"step": 1')  # crashed before the first line was complete
    assert plot_metrics_log(log, tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_metrics_log_corrupt_line_before_the_end_is_an_error(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=f"{log}:2: not valid JSON"):
        plot_metrics_log(log, tmp_path)


def test_confusion_and_recall_at_k(tmp_path):
    matrix = np.array([[8, 1, 1], [2, 6, 2], [0, 0, 0]])  # last class never seen: row stays zero
    _assert_png(plot_confusion(matrix, ["cat", "dog", "fox"], tmp_path / "confusion.png"))
    results = {
        "t2i_R@1": 0.4,
        "t2i_R@5": 0.7,
        "t2i_R@10": 0.8,
        "i2t_R@1": 0.5,
        "i2t_R@5": 0.8,
        "i2t_R@10": 0.9,
    }
    _assert_png(plot_recall_at_k(results | {"top1": 0.3}, tmp_path / "recall.png"))


def test_helpers_reject_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="class_names: got 2 names for a 3x3 matrix"):
        plot_confusion(np.eye(3), ["a", "b"], tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"matrix: expected a square \[C, C\] array, got shape \(2, 3\)"):
        plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "c.png")
    with pytest.raises(ValueError, match="no keys of the form"):
        plot_recall_at_k({"top1": 0.5}, tmp_path / "r.png")


def test_recall_plot_draws_the_chance_of_a_random_ranking(tmp_path, monkeypatch):
    import vlkit.plots as plots
    from vlkit.metrics import retrieval_chance

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) and path)
    results = {"t2i_R@1": 0.5, "t2i_R@5": 0.9, "i2t_R@1": 0.4, "i2t_R@5": 0.8}
    plot_recall_at_k(results, tmp_path / "recall.png", chance=retrieval_chance([1] * 20, ks=(1, 5)))
    lines = drawn["fig"].axes[0].get_lines()
    dashed = {line.get_label(): list(line.get_ydata()) for line in lines if line.get_linestyle() == "--"}
    assert dashed == {"i2t chance": pytest.approx([0.05, 0.25]), "t2i chance": pytest.approx([0.05, 0.25])}
