"""`vlkit detect`: what an open-vocabulary detector finds in an image, by phrase."""

from __future__ import annotations

import json
from pathlib import Path


def detect(
    model: str,
    image: str,
    *,
    queries: str,
    threshold: float | None = None,
    out: str = "",
) -> None:
    """Find the objects that phrases name in an image: prints JSON and draws the boxes.

    Args:
        model: detector model or run folder, or a transformers OWL-ViT folder
        image: image file
        queries: comma-separated phrases, e.g. "red circle,small blue star"
        threshold: keep boxes scoring above this (default: the model's detector.score_threshold; OWL-ViT: 0.1)
        out: PNG to draw the boxes on (default: the image's name with .detections.png)
    """
    from vlkit.api import load
    from vlkit.data.images import as_array
    from vlkit.plots import draw_boxes

    names = [q.strip() for q in queries.split(",") if q.strip()]
    if not names:
        raise ValueError(f"--queries {queries!r}: give at least one phrase, e.g. 'red circle,blue star'")
    picture = as_array(image)
    found = load(model, kind="detector", command="detect", needs="detect").detect(picture, names, threshold)
    drawn = Path(out) if out else Path(image).with_suffix(".detections.png")
    draw_boxes(picture, found.boxes, found.labels, found.scores, drawn)
    print(json.dumps({"image": image, "detections": found.as_json(), "drawn": str(drawn)}, indent=2))
