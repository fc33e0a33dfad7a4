"""The open-vocabulary detector (OWL-ViT on scenes): box arithmetic against brute force, the
matching and the focal loss against their definitions, and a tiny detector that learns to ground
phrases on held-out scenes far better than a random pick of a scene object."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_tiny_detector_cfg
from vlkit import api
from vlkit.config import SourceConfig
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.run import run_eval
from vlkit.models.boxes import box_bias, cxcywh_to_xyxy, pairwise_giou, xyxy_to_cxcywh
from vlkit.train.detection import phrase, scene_queries, sigmoid_focal_loss
from vlkit.train.matching import match


def _brute_giou(a: np.ndarray, b: np.ndarray, side: int = 32) -> float:
    """GIoU by counting unit cells of a side×side raster (exact for integer corners)."""
    ys, xs = np.mgrid[0:side, 0:side] + 0.5  # cell centres
    inside = lambda box: (xs > box[0]) & (xs < box[2]) & (ys > box[1]) & (ys < box[3])  # noqa: E731
    ma, mb = inside(a), inside(b)
    inter, union = (ma & mb).sum(), (ma | mb).sum()
    hull = inside([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]).sum()
    return inter / union - (hull - union) / hull


def test_giou_matches_a_brute_force_raster_count():
    rng = np.random.default_rng(0)
    corners = np.sort(rng.integers(0, 33, (40, 2, 2)), axis=1)  # (N, [lo, hi], [x, y])
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0] + 1, corners[:, 1, 1] + 1], 1)
    boxes = np.minimum(boxes, 32).astype(np.float32)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    got = pairwise_giou(torch.from_numpy(boxes), torch.from_numpy(boxes)).numpy()
    want = np.array([[_brute_giou(a, b) for b in boxes] for a in boxes])
    assert (want < 0).any() and (want > 0.2).any()  # disjoint and overlapping pairs both tested
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.allclose(np.diag(got), 1.0)


def test_box_formats_round_trip_and_the_box_bias_predicts_each_patch():
    boxes = torch.tensor([[0.2, 0.3, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)
    centre = torch.sigmoid(box_bias(4))  # an untrained head (output 0) predicts its own patch
    assert centre.shape == (16, 4)
    torch.testing.assert_close(centre[5], torch.tensor([0.375, 0.375, 0.25, 0.25]))  # row 1, column 1
    torch.testing.assert_close(centre[3, :2], torch.tensor([0.875, 0.125]))  # row 0, last column


def test_matching_finds_the_permutation_and_focal_loss_reduces_to_bce():
    targets = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.2, 0.3], [0.5, 0.8, 0.3, 0.1]])
    boxes = torch.cat([torch.full((2, 4), 0.5), targets[[2, 0, 1]]])  # predictions 2, 3, 4 are exact
    rows, cols = match(torch.zeros(5, 3), boxes, targets, torch.tensor([0, 1, 2]), (1.0, 5.0, 2.0))
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 3, 1: 4, 2: 2}
    logits, labels = torch.randn(4, 5), (torch.rand(4, 5) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
    torch.testing.assert_close(sigmoid_focal_loss(logits, labels, alpha=-1, gamma=0), bce)


def test_queries_name_each_object_first_then_objects_the_scene_lacks():
    objects = [{"color": "red", "shape": "circle", "size": "small", "box": (0, 0, 0.2, 0.2)}]
    assert [phrase(objects[0], f) for f in range(4)] == [
        "red circle", "small red circle", "a red circle", "a small red circle",
    ]  # fmt: skip
    queries = scene_queries(objects, 12, np.random.default_rng(0))
    assert len(queries) == 12 and "red circle" in queries[0]
    negatives = queries[1:]
    assert all("red circle" not in q or "large" in q for q in negatives)


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    """A tiny detector trained for 500 steps (~20 s on one thread) on 1-2 object scenes."""
    from vlkit.train.loop import train

    torch.set_num_threads(1)
    cfg = make_tiny_detector_cfg()
    m = cfg.model
    m.vision_width, m.vision_layers, m.text_width, m.embed_dim = 32, 2, 32, 16
    cfg.data.min_objects, cfg.data.max_objects = 1, 2
    cfg.data.sources = [SourceConfig(kind="scenes-boxes")]
    t = cfg.train
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.weight_decay, t.log_every, t.save_every = (
        500,
        16,
        3e-3,
        10,
        0,
        50,
        0,
    )
    cfg.train.out_dir = str(tmp_path_factory.mktemp("detector") / "run")
    return train(cfg, progress=False), cfg


def test_a_tiny_detector_grounds_phrases_far_above_a_random_pick(tiny_detector):
    run, cfg = tiny_detector
    model = api.load(run, kind="detector")
    benches = scene_benchmarks(32, 2, 2, cfg.eval.seed, 64, ("grounding", "detection"))
    grounding, detection = evaluate_benchmarks(model, benches)
    versus = grounding.breakdowns["grounding_acc@0.5 vs a random pick"]
    assert versus["random pick"] == 0.5  # two objects per scene
    assert versus["model"] >= 0.75, versus
    assert (
        0.1 < detection.metrics["mAP@0.5"] <= 1
        and detection.metrics["mAP@[.5:.95]"] < detection.metrics["mAP@0.5"]
    )
    box = model.ground(benches[0].examples[0]["image"], benches[0].examples[0]["phrase"])
    assert len(box) == 4 and box[0] < box[2] and box[1] < box[3]


def test_vlkit_eval_runs_detection_and_grounding_and_vlkit_detect_draws(tiny_detector, tmp_path):
    run, _ = tiny_detector
    result = run_eval(
        str(run), "scenes", limit=8, task=["detection", "grounding"], out_dir=str(tmp_path / "e")
    )
    assert set(result["metrics"]) == {"mAP@0.5", "mAP@[.5:.95]", "grounding_acc@0.5"}
    image = scene_benchmarks(32, 1, 1, 7, 1, ("grounding",))[0].examples[0]
    Image.fromarray(image["image"]).save(tmp_path / "scene.png")
    args = [
        str(run),
        str(tmp_path / "scene.png"),
        "--queries",
        f"{image['phrase']},blue star",
        "--threshold",
        "0",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "vlkit", "detect", *args], capture_output=True, text=True, check=True
    ).stdout
    found = json.loads(out)
    assert found["detections"] and {d["label"] for d in found["detections"]} <= {image["phrase"], "blue star"}
    drawn = Image.open(found["drawn"])
    assert drawn.size == (128, 128)  # the 32-pixel scene drawn 4x


def test_serve_and_export_refuse_a_detector_saying_why(tiny_detector, tmp_path):
    from vlkit import export
    from vlkit.serve.loading import load_served

    run, _ = tiny_detector
    with pytest.raises(ValueError, match="detectors are not served yet .*vlkit detect"):
        load_served(str(run))
    with pytest.raises(ValueError, match="a detector model has no export format. transformers' OwlViT"):
        export.export(run, tmp_path / "out")


def test_a_detector_starts_from_a_contrastive_run_whose_towers_fit(tiny_run):
    from vlkit.models.build import build_model, initial_parts, load_model
    from vlkit.models.folders import resolve_model_dir

    cfg = make_tiny_detector_cfg()
    cfg.detector.clip_init = str(tiny_run)
    detector = build_model(cfg, **initial_parts(cfg))
    clip, _ = load_model(resolve_model_dir(tiny_run))
    started, trained = detector.clip.state_dict(), clip.state_dict()
    assert started.keys() == trained.keys() and all(torch.equal(started[k], trained[k]) for k in started)
    cfg.model.vision_width = 32
    with pytest.raises(ValueError, match="model.vision_width: 32, but detector.clip_init .* has 16"):
        initial_parts(cfg)
