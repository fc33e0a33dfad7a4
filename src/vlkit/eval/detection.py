"""Detector tasks: COCO-style detection mAP (computed by pycocotools' COCOeval, the reference
code) and phrase grounding beside a random pick of a candidate box.

Detection examples: id, image, objects [{"label", "box" (x1, y1, x2, y2 pixels)}]; the benchmark's
`classes` are the queries every image is asked (an open vocabulary evaluated on a fixed one).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from tqdm.auto import tqdm

from vlkit import metrics
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import TaskResult

TOP_K = 100  # detections kept per image (COCO's maxDets)
GALLERY = 8  # held-out images drawn in the report, with their detections scoring above DRAWN_SCORE
DRAWN_SCORE = 0.3


def _top_detections(scores: np.ndarray, boxes: np.ndarray, k: int = TOP_K) -> list[tuple[int, int, float]]:
    """scores float[P, Q] → the k best (patch, query, score) over every patch × query pair."""
    flat = np.argsort(-scores, axis=None, kind="stable")[:k]
    patches, queries = np.unravel_index(flat, scores.shape)
    return [(int(p), int(q), float(scores[p, q])) for p, q in zip(patches, queries)]


def coco_map(gold: list[dict], found: list[dict], classes: list[str]) -> dict[str, float]:
    """gold: [{"image", "label", "box"}], found: the same with "score" → mAP@0.5 and mAP@[.5:.95]
    by pycocotools (boxes x1, y1, x2, y2 pixels; COCO's own format is x, y, w, h)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {name: i + 1 for i, name in enumerate(classes)}
    images = sorted({g["image"] for g in gold})
    number = {name: i + 1 for i, name in enumerate(images)}
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    annotations = [
        {"id": k + 1, "image_id": number[g["image"]], "category_id": ids[g["label"]], "bbox": xywh(g["box"]),
         "area": xywh(g["box"])[2] * xywh(g["box"])[3], "iscrowd": 0}
        for k, g in enumerate(gold)
    ]  # fmt: skip
    truth = COCO()
    truth.dataset = {
        "images": [{"id": i} for i in number.values()],
        "categories": [{"id": i, "name": n} for n, i in ids.items()],
        "annotations": annotations,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth.createIndex()
        results = [
            {"image_id": number[f["image"]], "category_id": ids[f["label"]], "bbox": xywh(f["box"]), "score": f["score"]}
            for f in found
        ]  # fmt: skip
        evaluation = COCOeval(truth, truth.loadRes(results) if results else COCO(), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(0.0, float(v)) for v in evaluation.stats]  # -1: no ground truth of that size
    return {"mAP@[.5:.95]": stats[0], "mAP@0.5": stats[1]}


def detection(model, bench: Benchmark, batch_size: int = 16, progress: bool = False) -> TaskResult:
    """Every image asked every class of the benchmark; the top 100 (patch, class) pairs scored."""
    ex, classes = bench.examples, list(bench.classes)
    gold = [{"image": e["id"], **o} for e in ex for o in e["objects"]]
    found, preds = [], []
    for start in tqdm(range(0, len(ex), batch_size), desc="detection", disable=not progress, leave=False):
        chunk = ex[start : start + batch_size]
        scores, boxes = model.predict([e["image"] for e in chunk], classes)
        for e, s, b in zip(chunk, scores, boxes):
            mine = [
                {"image": e["id"], "label": classes[q], "box": b[p].tolist(), "score": v}
                for p, q, v in _top_detections(s, b)
            ]
            found += mine
            preds.append({"id": e["id"], "objects": e["objects"], "detections": mine[:5]})
    scores = coco_map(gold, found, classes)
    gallery = [
        {
            "image": e["image"],
            "title": e["id"],
            "boxes": [d["box"] for d in p["detections"] if d["score"] > DRAWN_SCORE],
            "labels": [f"{d['label']} {d['score']:.2f}" for d in p["detections"] if d["score"] > DRAWN_SCORE],
        }
        for e, p in zip(ex[:GALLERY], preds)
    ]
    return TaskResult(
        "detection", bench.name, scores, {}, preds, split=bench.split, samples=len(ex), gallery=gallery
    )


def grounding(model, bench: Benchmark, batch_size: int = 16, progress: bool = False) -> TaskResult:
    """Acc@0.5 of the model's best box for the phrase, beside picking one of the candidates at random."""
    ex = bench.examples
    boxes = []
    for start in tqdm(range(0, len(ex), batch_size), desc="grounding", disable=not progress, leave=False):
        chunk = ex[start : start + batch_size]
        boxes += model.ground([e["image"] for e in chunk], [e["phrase"] for e in chunk])
    preds = [
        {"id": e["id"], "phrase": e["phrase"], "box": e["box"], "predicted": b} for e, b in zip(ex, boxes)
    ]
    accuracy = metrics.grounding_accuracy(boxes, [e["box"] for e in ex])
    chance = metrics.random_pick_accuracy([e["candidates"] for e in ex], [e["box"] for e in ex])
    versus = {"grounding_acc@0.5 vs a random pick": {"model": accuracy, "random pick": chance}}
    return TaskResult(
        "grounding",
        bench.name,
        {"grounding_acc@0.5": accuracy},
        versus,
        preds,
        split=bench.split,
        samples=len(ex),
    )
