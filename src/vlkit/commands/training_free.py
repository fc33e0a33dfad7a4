"""`vlkit asif` and `vlkit conse`: build a training-free VLM from the pretrained encoders.

The folder they write loads with `vlkit.load` and works wherever a dual encoder does (`vlkit
classify`, `index`, `search`, `eval`); `vlkit export` writes its tensors (`--format anchors`).
"""

from __future__ import annotations

import json
from pathlib import Path

from vlkit.config import TrainingFreeConfig

_DEFAULT = TrainingFreeConfig()  # one place for the defaults: the config the commands write


def asif(
    *,
    data: str,
    out: str,
    anchors: int = _DEFAULT.anchors,
    k: int = _DEFAULT.k,
    p: float = _DEFAULT.p,
    split: str = "train",
    center: bool = _DEFAULT.center,
    image_encoder: str = _DEFAULT.image_encoder,
    text_encoder: str = _DEFAULT.text_encoder,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Build an ASIF model: images and texts compared through anchor image-caption pairs.

    Args:
        data: captioned data the anchors come from (scenes, photos, fashion-mnist, a folder, shards, ...)
        out: model folder to write (config.yaml, model.safetensors with the anchors, anchors.jsonl)
        anchors: anchor image-caption pairs, drawn at random from the data
        k: similarities kept per relative representation (anchors, k and p: the setting chosen on
            Fashion-MNIST validation images by benchmarks/training_free.py)
        p: power the kept similarities are raised to
        split: the data's split (photos, fashion-mnist, a saved DatasetDict)
        center: subtract the anchors' mean features before the cosines (the paper uses raw cosines)
        image_encoder: pretrained image encoder (registry name, transformers id or folder)
        text_encoder: pretrained text encoder
        seed: which anchors and captions are drawn

    Examples:
        vlkit asif --data fashion-mnist --anchors 4000 --k 1000 --p 8 --out runs/asif-fmnist
        vlkit eval runs/asif-fmnist --data fashion-mnist
    """
    from vlkit.config import Config
    from vlkit.data import open_named
    from vlkit.models.build import build_model, save_model
    from vlkit.models.build_training_free import choose_anchors, fill_anchors

    settings = dict(anchors=anchors, anchor_data=data, k=k, p=p, center=center)
    m = TrainingFreeConfig(method="asif", image_encoder=image_encoder, text_encoder=text_encoder, **settings)
    cfg = Config(kind="training-free", model=m)
    chosen = choose_anchors(open_named(data, split=split), anchors, seed)
    report = (lambda n: print(f"\ranchors embedded: {n}/{anchors}", end="", flush=True)) if progress else None
    model = fill_anchors(build_model(cfg), chosen, report)
    folder = Path(out)
    save_model(model, cfg, folder)
    lines = (json.dumps({"key": a["key"], "caption": a["caption"]}) for a in chosen)
    (folder / "anchors.jsonl").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {folder} (ASIF, {anchors} anchors from {data} {split}, k={k}, p={p})")
    return folder


def conse(
    *,
    out: str,
    top: int = _DEFAULT.top,
    image_encoder: str = _DEFAULT.image_encoder,
    text_encoder: str = _DEFAULT.text_encoder,
) -> Path:
    """Build a ConSE model: the ImageNet classifier's top classes, as a mix of their names' embeddings.

    Args:
        out: model folder to write (config.yaml, model.safetensors with the class-name embeddings)
        top: the classifier's top-T classes mixed, weighted by their probabilities
        image_encoder: an ImageNet-1k classifier (efficientnet-lite0)
        text_encoder: pretrained text encoder the class names and labels are embedded with

    Examples:
        vlkit conse --out runs/conse
        vlkit eval runs/conse
    """
    from vlkit.config import Config
    from vlkit.models.build import build_model, save_model
    from vlkit.models.build_training_free import fill_class_names

    m = TrainingFreeConfig(method="conse", image_encoder=image_encoder, text_encoder=text_encoder, top=top)
    cfg = Config(kind="training-free", model=m)
    folder = Path(out)
    save_model(fill_class_names(build_model(cfg)), cfg, folder)
    print(f"wrote {folder} (ConSE, top {top} of 1000 ImageNet classes)")
    return folder
