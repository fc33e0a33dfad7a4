"""The benchmarks run end to end at tiny sizes and print their side-by-side tables."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_smoke(script: str, *args: str, threads: bool = True) -> str:
    """The script's --smoke run (with --threads 1 where the script takes it); its stdout."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / script),
            "--smoke",
            *(["--threads", "1"] if threads else []),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_zero_shot_throughput_smoke():
    out = run_smoke("zero_shot_throughput.py")
    for expected in ("(a) pipeline, one call per image", "(b) pipeline, whole list", "(c) vlkit classify"):
        assert expected in out
    assert "identical top-1 labels: PASS" in out
    assert "100.00%" in out
    # images of another size than the model's: vlkit resizes them as the pipeline does
    model_px, image_px = re.search(r"input (\d+) px, images (\d+) px", out).groups()
    assert model_px != image_px


@pytest.mark.slow
def test_train_throughput_smoke():
    out = run_smoke("train_throughput.py")
    for expected in ("bare PyTorch loop", "vlkit train()", "overhead", "MFU", "torch.mm"):
        assert expected in out


@pytest.mark.slow
def test_vlm_train_throughput_smoke():
    out = run_smoke("vlm_train_throughput.py")
    for expected in (
        "vlkit prepare + train_step",
        "TRL SFTTrainer",
        "loss curves",
        "frozen-feature cache",
        "MFU",
        "precision: fp32 on both sides",
    ):
        assert expected in out
    # fp32 against fp32: the losses agree to float rounding (~5e-7; TRL's bf16 default gave 2e-5)
    assert float(re.search(r"max \|vlkit - trl\|: (\S+)", out).group(1)) < 1e-5


@pytest.mark.slow
def test_vlm_generation_smoke():
    out = run_smoke("vlm_generation.py")  # exits 1 when the greedy outputs differ
    assert "identical greedy outputs (token ids and replies): PASS" in out
    assert "vlkit tokens/s" in out


@pytest.mark.slow
def test_time_to_accuracy_smoke():
    out = run_smoke("time_to_accuracy.py")  # vlkit and the bare-loop CLIPModel control, scored alike
    for expected in ("torch.mm peak", "seed 0:", "control:", "train_minutes_at_250_gflops"):
        assert expected in out


@pytest.mark.slow
def test_time_to_accuracy_generative_smoke():
    recipe = str(BENCHMARKS.parent / "recipes" / "llava-scenes.yaml")
    out = run_smoke("time_to_accuracy.py", "--recipe", recipe, "--seeds", "0")
    for expected in ("seed 0:", '"vqa_accuracy"', '"prior_accuracy"', "first_reach_vqa_accuracy_0.9"):
        assert expected in out
    assert "control:" not in out  # the bare-loop control is CLIP's


@pytest.mark.slow
def test_shape_probe_smoke():
    out = run_smoke("shape_probe.py")
    for expected in ("patch stem, step 2", "conv stem, step 2", "shape accuracy"):
        assert expected in out


@pytest.mark.slow
def test_patch_probe_smoke():
    out = run_smoke("patch_probe.py")  # an untrained tiny tower's layers, probed on held-out objects
    rows = re.findall(
        r"^layer (\d+) colour_accuracy_on_objects ([\d.]+) shape_accuracy_on_objects ([\d.]+)", out, re.M
    )
    assert [int(layer) for layer, _, _ in rows] == list(range(len(rows))) and len(rows) >= 2
    assert all(0 <= float(v) <= 1 for _, *accs in rows for v in accs)


@pytest.mark.slow
def test_relation_control_smoke():
    out = run_smoke("relation_control.py")  # each arm trains 2 steps and is scored from step 0
    for arm in ("tower, causal", "tower, bidirectional", "oracle, causal", "oracle, bidirectional"):
        for step in (0, 1, 2):
            assert re.search(rf"^{arm}, step {step}: held-out relation accuracy [\d.]+$", out, re.M), (
                arm,
                step,
            )


@pytest.mark.slow
def test_instruct_template_speed_smoke():
    out = run_smoke("instruct_template_speed.py", threads=False)
    for method in ("(a) template teacher alone", "(b) + dedup, validation", "(c) generate_llava end to end"):
        assert re.search(rf"^{re.escape(method)}.* [\d,]+$", out, re.M), method
    assert "consistency errors in (c): 0 of 900" in out  # every record true of its scene


@pytest.mark.slow
def test_instruct_throughput_smoke():
    out = run_smoke("instruct_throughput.py")  # a tiny random Llama served, sequential then 8 at once
    sequential = re.search(r"^sequential +[\d.]+ +[\d.]+ +([\d.]+)", out, re.M)
    batched = re.search(r"^concurrency 8 +[\d.]+ +[\d.]+ +([\d.]+)", out, re.M)
    assert float(sequential.group(1)) == 1.0 and float(batched.group(1)) > 1.0  # the server batched requests


def test_every_make_bench_smoke_script_has_a_test_here():
    """`make bench-smoke` and this file run the same benchmarks, so CI runs them once, through pytest."""
    makefile = (BENCHMARKS.parent / "Makefile").read_text()
    target = makefile.split("bench-smoke: setup", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"benchmarks/(\w+\.py) --smoke", target)
    here = Path(__file__).read_text()
    assert len(scripts) >= 20 and [s for s in scripts if f'"{s}"' not in here] == []


@pytest.mark.slow
def test_vlm_plateau_smoke():
    out = run_smoke("vlm_plateau.py")  # the three arms run and are scored, the oracle arm included
    for expected in (
        "caption, step 4: colour_accuracy",
        "vqa, step 4: colour_accuracy",
        "vqa-oracle, step 4",
    ):
        assert expected in out


@pytest.mark.slow
def test_unseen_tokens_smoke():
    out = run_smoke("unseen_tokens.py")  # the three arms are scored; some ids go unused
    used, vocabulary = map(int, re.search(r"ids used by training sequences: (\d+) of (\d+)", out).groups())
    assert 0 < used < vocabulary
    assert all(
        re.search(rf"^{arm} +vqa [0-9.]+ reworded [0-9.]+$", out, re.M) for arm in ("keep", "zero", "mean")
    )


@pytest.mark.slow
def test_question_reading_smoke():
    out = run_smoke("question_reading.py")  # each arm reads the held-out questions and their rewordings
    majority = float(re.search(r"^majority type: ([0-9.]+)$", out, re.M).group(1))
    for arm in ("scratch", "minilm-words", "minilm-words-tuned", "minilm"):
        found = re.search(rf"^{arm}: template ([0-9.]+), reworded ([0-9.]+)$", out, re.M)
        template, reworded = map(float, found.groups())
        assert template > majority and 0 <= reworded <= 1  # it learns something even at smoke size


@pytest.mark.slow
def test_cold_start_smoke():
    out = run_smoke("cold_start.py", threads=False)
    assert "vlkit help" in out and "vlkit classify" in out and "load average" in out


@pytest.mark.slow
def test_serve_load_smoke():
    out = run_smoke("serve_load.py")  # exits 1 when a request below capacity fails
    for task in ("chat", "classify"):
        for concurrency in (4, 8, 16):
            assert re.search(rf"{task} +concurrency {concurrency} +16/16 +ok, 0 errors, p50 [\d.]+ ms", out)
        refused = re.search(rf"{task} overload \(--max-queue 4, 16 clients\): (\d+) ok, (\d+) refused", out)
        assert int(refused.group(1)) >= 1 and int(refused.group(2)) >= 1  # some served, some 429
    assert "errors below capacity: 0 (PASS)" in out and "resident memory:" in out


@pytest.mark.slow
def test_detection_smoke():
    out = run_smoke("detection.py")
    for expected in ('"mAP@0.5"', '"mAP@[.5:.95]"', '"grounding_acc@0.5"', '"grounding_random_pick"'):
        assert expected in out


@pytest.mark.slow
def test_segmentation_smoke():
    out = run_smoke("segmentation.py")  # trains a tiny CLIP, then a tiny segmenter reading it
    for expected in ('"mIoU"', '"mIoU vs CLIP patch-text similarity"', '"CLIP patch-text similarity"'):
        assert expected in out


def test_segmentation_ceiling_smoke():
    out = run_smoke("segmentation_ceiling.py")  # the coarse-grid ceilings on 8 held-out scenes
    for expected in ("ceiling        8x8 nearest", "ceiling     16x16 bilinear"):
        assert expected in out
    assert "results:" not in out


def test_training_free_smoke():
    out = run_smoke("training_free.py")  # exits 1 when vlkit.load's labels differ from the cached path's
    for name in ("fashion-mnist", "digits"):
        assert f"{name}: ASIF " in out and f"| {name} (" in out
    for method in ("conse", "asif, captions shuffled among the anchors", "lit (trained on the anchor pairs)"):
        assert f"| {method} |" in out
    assert "photos (7, i2t_R@1) | conse (top 5)" in out and "photos (7, t2i_R@1) | lit (trained on" in out
    assert out.count("end-to-end agrees: True") == 2


@pytest.mark.slow
def test_index_scale_smoke():
    out = run_smoke("index_scale.py")  # 3,000 synthetic vectors and 600 scenes through a tiny model
    for name in ("synthetic 3k", "scenes via model"):
        for kind in ("exact", "ivf-pq", "hnsw"):
            assert re.search(rf"{name} +{kind}: build +[\d.]+ s, .* recall@10 [\d.]+", out), (name, kind)
        assert re.search(rf"{name} +exact: .* recall@10 1\.000", out)  # exact search is the reference
    assert re.search(
        r"ivf-pq \(the default approximate kind\) recall@10 at 3,000 vectors: [\d.]+ .*(PASS|MISS)", out
    )
    assert "| set | vectors | kind | build s |" in out


def test_fusion_smoke():
    out = run_smoke("fusion.py")
    for expected in ('"wino_group"', '"t2i_R@1"', '"mlm_colour_accuracy"', '"mlm_shape_chance"'):
        assert expected in out


def test_memes_smoke():
    out = run_smoke("memes.py")  # pre-train, fine-tune twice and score, all tiny
    for expected in (
        '"fine-tuned"',
        '"from scratch"',
        '"pre-trained ITM logit, zero-shot"',
        '"hm_majority_accuracy"',
    ):
        assert expected in out


def test_magic_smoke():
    out = run_smoke("magic.py")  # a tiny CLIP, VLM and caption LM trained for a few steps
    for system in ("magic", "unguided", "magic, wrong image", "captioner"):
        assert re.search(rf"^ *{system}: BLEU-4 \S+ .* caption_all_named \S+$", out, flags=re.M), system


def test_training_log_averages_keys_over_windows_of_steps(tmp_path):
    log = [{"step": s, "loss": 1.0, "grounding_accuracy": s / 10} for s in range(1, 8)] + [
        {"step": 8, "loss": 1}
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    script = [
        sys.executable,
        str(BENCHMARKS / "training_log.py"),
        str(tmp_path),
        "--keys",
        "grounding_accuracy",
    ]
    subprocess.run(
        [*script, "--every", "3", "--name", "t", "--out", str(tmp_path)], check=True, capture_output=True
    )
    windows = json.loads((tmp_path / "training_log-t.json").read_text())["windows"]
    assert [w["steps"] for w in windows] == [[1, 3], [4, 6], [7, 7]]
    assert [round(w["grounding_accuracy"], 6) for w in windows] == [0.2, 0.5, 0.7]
    missing = subprocess.run(
        [*script, "--keys", "nope", "--name", "t", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "no log record has all of ['nope']" in missing.stderr


def _results_part(seed: int, accuracies: list[float], minutes: float, peak: float) -> dict:
    """A results file of time_to_accuracy.py as one seed's run writes it (generative kind)."""
    curve = [
        {"step": 300 * (k + 1), "images": 19200 * (k + 1), "train_minutes": minutes * (k + 1) / 2}
        | {"vqa_accuracy": acc, "prior_accuracy": 0.42}
        for k, acc in enumerate(accuracies)
    ]
    return {
        "recipe": "llava-clip-scenes-staged.yaml",
        "kind": "generative",
        "overrides": [],
        "chance": "prior_* keys: the question-only prior",
        "environment": {"commit": f"c{seed}", "fp32_mm_peak_gflops": peak},
        "vlkit": {"seeds": [seed], "curves": [curve], "final": {}},
    }


def test_time_to_accuracy_merges_seeds_run_apart_into_one_results_file(tmp_path):
    parts = [_results_part(1, [0.5, 0.92], 40.0, 100.0), _results_part(2, [0.6, 0.88], 60.0, 200.0)]
    files = []
    for k, part in enumerate(parts):
        files.append(tmp_path / f"part{k}.json")
        files[-1].write_text(json.dumps(part))
    cmd = [sys.executable, str(BENCHMARKS / "time_to_accuracy.py"), "--merge", *map(str, files)]
    proc = subprocess.run([*cmd, "--name", "joined", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = json.loads((tmp_path / "time_to_accuracy-joined.json").read_text())
    assert (tmp_path / "time_to_accuracy-joined.png").stat().st_size > 0
    assert (
        joined["vlkit"]["seeds"] == [1, 2] and joined["vlkit"]["curves"][1] == parts[1]["vlkit"]["curves"][0]
    )
    final = joined["vlkit"]["final"]
    assert final["vqa_accuracy"]["mean"] == pytest.approx(0.90)
    assert final["vqa_accuracy"]["sd"] == pytest.approx(0.0282843, abs=1e-6)  # stdev of 0.92, 0.88
    # each run's minutes scaled by its own peak: (40 x 100 + 60 x 200) / 2 / 250
    assert final["train_minutes_at_250_gflops"] == pytest.approx(32.0)
    assert final["first_reach_vqa_accuracy_0.9"][0]["minutes_at_250"] == pytest.approx(16.0)
    assert final["first_reach_vqa_accuracy_0.9"][1] is None
    assert [e["commit"] for e in joined["environment"]["merged"]] == ["c1", "c2"]

    # runs that are not the same recipe and overrides, or share a seed, are refused by name
    parts[1]["overrides"] = ["train.lr=0.01"]
    files[1].write_text(json.dumps(parts[1]))
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "part1.json has overrides" in proc.stderr
    files[1].write_text(json.dumps(parts[0]))
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "a seed appears twice" in proc.stderr


def test_time_to_accuracy_merges_different_overrides_only_where_they_train_the_same(tmp_path):
    """A setting given by --set in one run and written into the recipe by a later commit trains
    the same config: the recipe is read as of each part's commit (here both at HEAD, whose staged
    recipe sets merge2x2_mlp itself), with its overrides applied to every stage."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    parts = [_results_part(1, [0.5, 0.92], 40.0, 100.0), _results_part(2, [0.6, 0.88], 60.0, 200.0)]
    for part in parts:
        part["environment"]["commit"] = head.stdout.strip()
    parts[1]["overrides"] = ["vlm.connector=merge2x2_mlp"]
    files = [tmp_path / "part0.json", tmp_path / "part1.json"]
    for f, part in zip(files, parts, strict=True):
        f.write_text(json.dumps(part))
    cmd = [sys.executable, str(BENCHMARKS / "time_to_accuracy.py"), "--merge", *map(str, files)]
    proc = subprocess.run([*cmd, "--name", "same", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((tmp_path / "time_to_accuracy-same.json").read_text())["environment"]["merged"]
    assert [m["overrides"] for m in merged] == [[], ["vlm.connector=merge2x2_mlp"]]
    parts[1]["overrides"] = ["vlm.connector=mlp2x_gelu"]
    files[1].write_text(json.dumps(parts[1]))
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "train different configs" in proc.stderr


@pytest.mark.slow
def test_question_reader_speed_smoke():
    out = run_smoke("question_reader_speed.py")
    rows = re.findall(
        r"(\w+): ([\d.]+) turns/step; encoded per step: own cache ([\d.]+), shared ([\d.]+); "
        r"real tokens: one batch ([\d.]+)%, similar lengths ([\d.]+)%",
        out,
    )
    assert [r[0] for r in rows] == ["grounding", "mix"], out
    (_, _, own_g, shared_g, *_), (_, turns_m, own_m, shared_m, one, similar) = rows
    assert float(own_g) == float(shared_g)  # the first stage: both caches start empty
    assert float(shared_m) <= float(own_m) <= float(turns_m)  # a shared cache never encodes more
    assert float(one) <= float(similar)  # batches of similar length run no more padding


@pytest.mark.slow
def test_length_groups_smoke():
    out = run_smoke("length_groups.py")
    rows = re.findall(
        r"vlm.length_groups=(\d): [\d.]+ s/step, real tokens ([\d.]+)%, .* max \|loss diff\| (\S+)", out
    )
    shares = {int(g): float(share) for g, share, _ in rows}
    assert sorted(shares) == [1, 2, 3]
    assert shares[1] < shares[2] <= shares[3]  # splitting by length runs less padding
    assert all(float(diff) < 1e-4 for _, _, diff in rows)  # and trains the same losses


@pytest.mark.slow
def test_length_groups_times_settings_of_a_dual_encoders_stage_smoke():
    args = ["--recipe", "recipes/clip-scenes.yaml", "--stage", "binding"]
    out = run_smoke("length_groups.py", *args, "--arms", "train.bf16=false", "train.bf16=true")
    rows = dict(re.findall(r"train.bf16=(\w+): [\d.]+ s/step, .* max \|loss diff\| (\S+)", out))
    assert set(rows) == {"false", "true"} and float(rows["false"]) == 0
    assert 0 < float(rows["true"]) < 0.1  # bf16 changes the losses a little, not a lot


@pytest.mark.slow
def test_code_ab_smoke():
    # the same code on both sides: each side runs in its own process on the src it was given
    src = str(BENCHMARKS.parent / "src")
    out = run_smoke("code_ab.py", "--before", src)
    rows = re.findall(r"(before|now) \((\S+)\): ([\d.]+) s/step, of which data ([\d.]+) s", out)
    assert [r[0] for r in rows] == ["before", "now"], out
    assert rows[0][1] == rows[1][1]  # one commit
    assert all(0 < float(data) < float(step) for _, _, step, data in rows)
    assert re.search(r"before / now, per round: [\d.]+$", out.strip())


@pytest.mark.slow
def test_matmul_shapes_smoke():
    out = run_smoke("matmul_shapes.py")  # both precisions, a repeated shape then new ones
    rows = re.findall(
        r"^(fp32|bf16): one shape ([\d.]+) ms/call, a new shape each call ([\d.]+) ms/call", out, re.M
    )
    assert [r[0] for r in rows] == ["fp32", "bf16"] and all(float(s) > 0 and float(n) > 0 for _, s, n in rows)
