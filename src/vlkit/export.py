"""Export a dual encoder to transformers' own format, loadable offline by `pipeline(...)`.

A vlkit dual encoder with CLIP towers (vit-tiny / text-tiny or transformers CLIP towers) has
exactly CLIPModel's layout, so the export is a weight copy plus a CLIPProcessor whose image
settings match vlkit's preprocessing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from vlkit.api import resolve_model_dir
from vlkit.models.build import load_model
from vlkit.models.towers import CLIPTextTower, CLIPVisionTower

FORMATS = ("transformers",)


def export_transformers(model_path: str | Path, out_dir: str | Path) -> Path:
    """Writes a CLIPModel + CLIPProcessor folder; returns it."""
    model, cfg = load_model(resolve_model_dir(model_path))
    image, text = model.image_tower, model.text_tower
    if not isinstance(image, CLIPVisionTower) or not isinstance(text, CLIPTextTower):
        raise ValueError(
            f"export to transformers needs CLIP towers (vit-tiny, text-tiny or transformers CLIP); "
            f"this model has {cfg.model.image_encoder!r} + {cfg.model.text_encoder!r}"
        )
    config = CLIPConfig(
        text_config=text.model.config.to_dict(),
        vision_config=image.model.config.to_dict(),
        projection_dim=cfg.model.embed_dim,
    )
    hf = CLIPModel(config).eval()
    hf.vision_model.load_state_dict(image.model.state_dict())
    hf.text_model.load_state_dict(text.model.state_dict())
    hf.visual_projection.load_state_dict(model.visual_projection.state_dict())
    hf.text_projection.load_state_dict(model.text_projection.state_dict())
    with torch.no_grad():  # CLIPModel does not clamp the scale at run time: bake vlkit's clamp in
        hf.logit_scale.copy_(model.logit_scale.clamp(max=math.log(cfg.model.max_logit_scale)))
    p = image.preprocess
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": p.size},
            crop_size={"height": p.size, "width": p.size},
            image_mean=list(p.mean),
            image_std=list(p.std),
        ),
        tokenizer=text.tokenizer,
    )
    out = Path(out_dir)
    hf.save_pretrained(out)
    processor.save_pretrained(out)
    return out
