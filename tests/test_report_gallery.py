"""The eval report draws a dense task's predictions on a few held-out images: a segmenter's masks
(beside the true outline), a detector's boxes above DRAWN_SCORE."""

import numpy as np
from PIL import Image

from vlkit.eval import detection
from vlkit.eval.embedded import scene_benchmarks
from vlkit.eval.report import task_plots
from vlkit.eval.result import TaskResult


class OneBoxDetector:
    """Finds one box per image: patch 0 answers query 0 with 0.9, everything else scores 0.01."""

    def predict(self, images, queries):
        scores = np.full((len(images), 4, len(queries)), 0.01)
        scores[:, 0, 0] = 0.9
        boxes = np.tile(np.array([[2.0, 3.0, 20.0, 24.0]]), (len(images), 4, 1))
        return scores, boxes


def test_detection_result_carries_its_drawn_boxes_and_the_report_draws_them(tmp_path):
    (bench,) = scene_benchmarks(32, 1, 3, 5, 3, ("detection",))
    result = detection.detection(OneBoxDetector(), bench)
    assert len(result.gallery) == 3
    for drawn in result.gallery:
        assert drawn["boxes"] == [[2.0, 3.0, 20.0, 24.0]]  # only the one above DRAWN_SCORE
        assert drawn["labels"] == [f"{bench.classes[0]} 0.90"]
    (plot,) = [p for p in task_plots(tmp_path, [result]) if p.name.endswith("-examples.png")]
    assert plot.name == "scenes-detection-examples.png" and Image.open(plot).size[0] > 300


def test_a_mask_gallery_is_drawn_with_the_prediction_tinted(tmp_path):
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    result = TaskResult(
        "segmentation", "scenes", {"mIoU": 1.0},
        gallery=[{"image": image, "title": "a red circle\nIoU 1.00", "mask": mask, "true_mask": mask}],
    )  # fmt: skip
    (plot,) = task_plots(tmp_path, [result])
    drawn = np.asarray(Image.open(plot).convert("RGB"))
    magenta = (drawn[..., 0] > 100) & (drawn[..., 2] > 100) & (drawn[..., 1] < 60)
    green = (drawn[..., 1] > 200) & (drawn[..., 0] < 60)
    assert magenta.any() and green.any()
