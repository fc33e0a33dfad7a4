"""The main job end to end at a tiny size: train, evaluate, report with plots; a rerun resumes."""

import json

import pytest

from vlkit.tour import run_tour


@pytest.mark.slow
def test_tour_trains_evaluates_and_reports(tmp_path, capsys, tiny_overrides):
    overrides, generative = list(tiny_overrides.tour), list(tiny_overrides.tour_generative)
    scores = run_tour(str(tmp_path / "tour"), overrides, progress=False, generative_overrides=generative)
    report = tmp_path / "tour" / "report"
    result = json.loads((report / "result.json").read_text())
    assert result["metrics"] == pytest.approx(scores)
    assert {"top1", "t2i_R@1", "i2t_R@1", "wino_text", "wino_group"} <= scores.keys()
    assert {"llava_vqa_accuracy", "llava_vqa_color", "llava_caption_all_named"} <= scores.keys()
    # the VLM's figures are `vlkit eval`'s (run_eval's report for it sits in llava/eval-scenes)
    llava = json.loads((tmp_path / "tour" / "llava" / "eval-scenes" / "result.json").read_text())["metrics"]
    assert {"vqa_accuracy", "paraphrase_accuracy", "caption_all_named"} <= llava.keys()
    assert {f"llava_{k}": v for k, v in llava.items()}.items() <= scores.items()
    markdown = (report / "report.md").read_text()
    # the CLIP trains in two stages (tour/shapes, then tour/binding): the report shows the last one's
    assert "](../binding/plots/loss.png)" in markdown
    assert (tmp_path / "tour" / "binding" / "plots" / "loss.png").is_file()
    assert (tmp_path / "tour" / "shapes" / "plots" / "loss.png").is_file()
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "Winoground" in printed and str(report) in printed
    assert "held-out VQA exact match" in printed and "  Q: " in printed
    assert "fp32 torch.mm peak is" in printed and "the tour all told" in printed
    assert result["fp32 torch.mm peak (GFLOP/s)"] > 0
    # the VLM trains in two stages too (tour/llava/grounding, then tour/llava/mix): both stages' plots
    assert "](../llava/grounding/plots/loss.png)" in markdown and "](../llava/mix/plots/loss.png)" in markdown
    assert result["generative model"].startswith(str(tmp_path / "tour" / "llava" / "mix"))

    # a rerun resumes both runs: no training, the same scores
    again = run_tour(str(tmp_path / "tour"), overrides, progress=False, generative_overrides=generative)
    assert again == pytest.approx(scores)
