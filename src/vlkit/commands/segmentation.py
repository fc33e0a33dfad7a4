"""`vlkit segment`: the mask of what a prompt names in an image."""

from __future__ import annotations

import json
from pathlib import Path


def segment(
    model: str,
    image: str,
    *,
    prompt: str,
    threshold: float | None = None,
    out: str = "",
) -> None:
    """Segment what a phrase names in an image: writes the mask PNG, an overlay PNG and a JSON
    summary, and prints the summary.

    Args:
        model: segmenter model or run folder, or a transformers CLIPSeg folder
        image: image file
        prompt: the phrase, e.g. "the large green triangle"
        threshold: keep pixels whose probability passes this (default: the model's segmenter.mask_threshold; CLIPSeg: 0.5)
        out: file stem for <out>.mask.png, <out>.overlay.png and <out>.json (default: next to the image)
    """
    from PIL import Image

    from vlkit.api import load
    from vlkit.data.images import as_array
    from vlkit.plots import draw_mask

    if not prompt.strip():
        raise ValueError("--prompt: give a phrase, e.g. 'the large green triangle'")
    picture = as_array(image)
    loaded = load(model, kind="segmenter", command="segment", needs="segment")
    mask = loaded.segment(picture, prompt.strip(), threshold)
    stem = Path(out) if out else Path(image).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    mask_png, overlay_png, summary = (Path(f"{stem}{s}") for s in (".mask.png", ".overlay.png", ".json"))
    Image.fromarray(mask.astype("uint8") * 255).save(mask_png)
    draw_mask(picture, mask, prompt.strip(), overlay_png)
    ys, xs = mask.nonzero()
    record = {
        "image": image,
        "prompt": prompt.strip(),
        "pixels": int(mask.sum()),
        "share": float(mask.mean()),
        "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else None,
        "mask": str(mask_png),
        "overlay": str(overlay_png),
    }
    summary.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record | {"json": str(summary)}, indent=2))
