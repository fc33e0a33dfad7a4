"""The segmenter's task: referring segmentation on held-out scenes, mIoU (`metrics.mean_iou`)
beside its baseline, the CLIP alone (each patch's similarity to the prompt, thresholded:
`SegmenterModel.clip_similarity_masks`): what the decoder adds over the towers it reads.

Examples: id, image, phrase ("a small red circle"), mask bool[H, W].
"""

from __future__ import annotations

from tqdm.auto import tqdm

from vlkit import metrics
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import TaskResult

BASELINE = "CLIP patch-text similarity"
GALLERY = 8  # held-out examples drawn in the report


def segmentation(model, bench: Benchmark, batch_size: int = 16, progress: bool = False) -> TaskResult:
    """mIoU of the model's masks, and of the CLIP-alone baseline's, per phrase and by object size."""
    ex = bench.examples
    masks, baseline = [], []
    for start in tqdm(range(0, len(ex), batch_size), desc="segmentation", disable=not progress, leave=False):
        chunk = ex[start : start + batch_size]
        images, phrases = [e["image"] for e in chunk], [e["phrase"] for e in chunk]
        masks += model.segment(images, phrases)
        baseline += model.clip_similarity_masks(images, phrases)
    truth = [e["mask"] for e in ex]
    ious = [metrics.mean_iou([m], [t]) for m, t in zip(masks, truth)]
    score, chance = metrics.mean_iou(masks, truth), metrics.mean_iou(baseline, truth)
    by_size = {}
    for size in ("small", "large"):
        mine = [i for i, e in zip(ious, ex) if f" {size} " in f" {e['phrase']} "]
        if mine:
            by_size[size] = sum(mine) / len(mine)
    preds = [
        {"id": e["id"], "phrase": e["phrase"], "iou": i, "area": int(m.sum()), "true_area": int(t.sum())}
        for e, i, m, t in zip(ex, ious, masks, truth)
    ]
    breakdowns = {f"mIoU vs {BASELINE}": {"model": score, BASELINE: chance}}
    if by_size:
        breakdowns["mIoU by object size"] = by_size
    gallery = [
        {"image": e["image"], "title": f"{e['phrase']}\nIoU {i:.2f}", "mask": m, "true_mask": e["mask"]}
        for e, m, i in zip(ex[:GALLERY], masks, ious)
    ]
    return TaskResult(
        "segmentation",
        bench.name,
        {"mIoU": score},
        breakdowns,
        preds,
        split=bench.split,
        samples=len(ex),
        gallery=gallery,
    )
