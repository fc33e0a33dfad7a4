"""Export vlkit models to transformers' own formats, loadable offline with `from_pretrained`.

- `transformers`: a dual encoder with CLIP towers (vit-tiny / text-tiny or transformers CLIP
  towers) has exactly CLIPModel's layout, so the export is a weight copy plus a CLIPProcessor
  whose image settings match vlkit's preprocessing (`pipeline(...)` loads it). A SigLIP-loss
  model is refused: SiglipModel's towers are another architecture, and CLIPModel has no logit bias.
- `llava`: a generative VLM with a CLIP vision tower, a `linear` or `mlp2x_gelu` connector and a
  transformers causal LM is LLaVA: `LlavaForConditionalGeneration` (its vision_feature_layer is
  `vlm.vision_feature_layer`; "default" strategy = that hidden state without CLS, as
  `CLIPVisionTower.grid`) + a
  `LlavaProcessor` that expands `<image>` to `model.image_tokens` tokens and left-pads prompts
  as `GenerativeModel.encode_prompts` does. LoRA adapters are merged into the LM first.
- `clipseg`: a segmenter on CLIP towers with the patch stem is CLIPSeg: its decoder is
  transformers' `CLIPSegDecoder` and its towers are CLIP's, so `CLIPSegForImageSegmentation` is
  a weight copy (+ a CLIPProcessor with vlkit's image settings); its logits match vlkit's. A
  segmenter with `segmenter.refine: pixels` is refused: CLIPSeg has no refinement stage.
- `vilt`: a fusion encoder is transformers' `ViltModel` plus `ViltForImageAndTextRetrieval`'s
  one-logit head, so the export is a weight copy into that class (its MLM and contrastive heads
  stay behind) and a `ViltProcessor` with vlkit's image size, mean and std and its tokenizer.
- `anchors`: a training-free model (ASIF, ConSE), which no transformers class holds (`WHY_NOT`):
  its own tensors as safetensors and its settings as config.json, beside the named encoders.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPSegForImageSegmentation,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    ViltForImageAndTextRetrieval,
    ViltImageProcessor,
    ViltProcessor,
)

from vlkit.config import Config, load_config
from vlkit.models.build import load_model
from vlkit.models.folders import resolve_model_dir
from vlkit.models.kinds import model_kind, per_kind
from vlkit.models.language_models import CHATML, IMAGE_TOKEN
from vlkit.models.preprocess import ImagePreprocess
from vlkit.models.question_reader import QuestionReader
from vlkit.models.segmenter import clipseg_config
from vlkit.models.towers import CLIPTextTower, CLIPVisionTower
from vlkit.models.word_vectors import plain_embeddings

# export format → the model kind it takes, and what it writes (the functions: `WRITERS`)
FORMATS = {
    "transformers": ("contrastive", "transformers (CLIPModel)"),
    "llava": ("generative", "LLaVA"),
    "clipseg": ("segmenter", "CLIPSeg (CLIPSegForImageSegmentation)"),
    "anchors": ("training-free", "anchors (the method's tensors as safetensors + config.json)"),
    "vilt": ("fusion", "ViLT (ViltForImageAndTextRetrieval)"),
}
LLAVA_CONNECTORS = ("linear", "mlp2x_gelu")
# ChatML whose user content may also be a list of {"type": "image" | "text"} parts (HF chat
# messages), rendered as vlkit's `split_messages` does: `<image>` for an image, parts joined by "\n".
CHATML_PARTS = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _load(model_path: str | Path, fmt: str) -> tuple[torch.nn.Module, Config]:
    """The model and its config, refused with what to do when its kind is not the one `fmt` takes."""
    model, cfg = load_model(resolve_model_dir(model_path))
    takes, target = FORMATS[fmt]
    if cfg.kind != takes:
        raise ValueError(
            f"{model_path}: a {cfg.kind} model; {target} export needs a {takes} one "
            + (
                f"(this model's export: --format {EXPORTS[cfg.kind]})"
                if EXPORTS[cfg.kind]
                else "(this model has no export)"
            )
            + WHY_NOT[cfg.kind]
        )
    return model, cfg


def clip_image_processor(p: ImagePreprocess) -> CLIPImageProcessor:
    """Resize the shortest edge (bicubic), centre crop, rescale, normalise: vlkit's arithmetic."""
    return CLIPImageProcessor(
        size={"shortest_edge": p.size},
        crop_size={"height": p.size, "width": p.size},
        image_mean=list(p.mean),
        image_std=list(p.std),
    )


def _require_patch_stem(tower: torch.nn.Module, target: str) -> None:
    """transformers' CLIP vision model has one strided convolution where a conv stem has a stack."""
    if isinstance(tower, CLIPVisionTower) and getattr(tower.model.config, "vlkit_stem", "patch") != "patch":
        raise ValueError(
            f"export to {target}: this vision tower has a convolutional stem (model.vision_stem=conv), "
            "which transformers' CLIP vision model has no place for; train with model.vision_stem=patch "
            "to export, or use the model through vlkit (load, serve, eval)"
        )


def _refuse_siglip(model: torch.nn.Module, cfg: Config) -> None:
    """A vlkit SigLIP model is CLIP's architecture trained with the sigmoid loss. Neither target
    holds it: SiglipModel's towers differ (no CLS token or pre-layernorm, attention-pooling head,
    bidirectional text attention pooled at the last position through a biased head, no
    projections), and CLIPModel has no `logit_bias`, so its logits would silently lose it."""
    if cfg.model.loss == "siglip":
        raise ValueError(
            "export to transformers: this is a SigLIP model (model.loss=siglip), whose towers are "
            "CLIP's (CLS token, causal text attention pooled at the end token, projections); "
            "transformers' SiglipModel has no place for them (no CLS token, an attention-pooling "
            "head, bidirectional text attention pooled at the last position), and CLIPModel has no "
            f"logit_bias (this model's is {model.logit_bias.item():.4f}), so neither reproduces its "
            "logits. Use the model through vlkit (load, serve, eval), or train with model.loss=clip "
            "to export"
        )


def export_transformers(model_path: str | Path, out_dir: str | Path) -> Path:
    """Writes a CLIPModel + CLIPProcessor folder; returns it. SigLIP-loss models are refused
    (see `_refuse_siglip`)."""
    model, cfg = _load(model_path, "transformers")
    _refuse_siglip(model, cfg)
    image, text = model.image_tower, model.text_tower
    _require_patch_stem(image, "transformers (CLIPModel)")
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
    processor = CLIPProcessor(
        image_processor=clip_image_processor(image.preprocess), tokenizer=text.tokenizer
    )
    out = Path(out_dir)
    hf.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _check_llava_exportable(model, cfg) -> None:
    """LLaVA's layout: a CLIP tower with the patch stem, a linear or MLP projector that reads the
    tower's features alone, and at most LoRA on the LM; else a ValueError naming what differs."""
    v = cfg.vlm
    if (
        v.connector not in LLAVA_CONNECTORS
        or v.connector_positions
        or v.connector_coordinates
        or not isinstance(model.vision, CLIPVisionTower)
    ):
        added = [
            n
            for n, on in (("positions", v.connector_positions), ("coordinates", v.connector_coordinates))
            if on
        ]
        raise ValueError(
            f"export to LLaVA needs a CLIP vision tower (vit-tiny or transformers CLIP) and a "
            f"{' or '.join(LLAVA_CONNECTORS)} connector without vlm.connector_positions or "
            f"vlm.connector_coordinates (LLaVA's projector reads the tower's features alone); this "
            f"model has {cfg.model.image_encoder!r} + {v.connector!r}"
            f"{' with ' + ' and '.join(added) if added else ''}"
        )
    _require_patch_stem(model.vision, "LLaVA")
    if isinstance(model.base_language_model().get_input_embeddings(), QuestionReader):
        raise ValueError(
            f"export to LLaVA: {v.language_model!r} reads user turns through a sentence encoder; "
            "LLaVA's language model reads every token through one embedding table"
        )
    if v.peft not in ("none", "lora"):
        raise ValueError(f"export to LLaVA: {v.peft!r} tuning adds virtual tokens LLaVA has no place for")
    if v.data_vocabulary:
        raise ValueError(
            "export to LLaVA: vlm.data_vocabulary limits what the model says to its data's tokens; "
            "LLaVA's head scores every token (its other rows were never trained)"
        )


def export_llava(model_path: str | Path, out_dir: str | Path) -> Path:
    """Writes a LlavaForConditionalGeneration + LlavaProcessor folder; returns it."""
    model, cfg = _load(model_path, "llava")
    v = cfg.vlm
    _check_llava_exportable(model, cfg)
    lm = model.language_model.merge_and_unload() if v.peft == "lora" else model.language_model
    lm = plain_embeddings(lm)  # gpt-tiny-words: its projected word table as one matrix
    tower = model.vision.model
    config = LlavaConfig(
        vision_config=tower.config,
        text_config=lm.config,
        image_token_index=model.image_token_id,
        image_seq_length=model.image_tokens,
        projector_hidden_act="gelu" if v.connector == "mlp2x_gelu" else "linear",
        vision_feature_select_strategy="default",
        vision_feature_layer=v.vision_feature_layer,
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    hf = LlavaForConditionalGeneration(config).eval()
    hf.model.vision_tower.load_state_dict(tower.state_dict())
    hf.model.language_model.load_state_dict(lm.base_model.state_dict())
    hf.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    projector = hf.model.multi_modal_projector
    with torch.no_grad():
        if v.connector == "mlp2x_gelu":
            projector.load_state_dict(model.connector.state_dict())
        else:  # LLaVA v1: one linear map = linear_1, then an identity linear_2
            projector.linear_1.load_state_dict(model.connector.linear_1.state_dict())
            projector.linear_2.weight.copy_(torch.eye(projector.linear_2.weight.shape[0]))
            projector.linear_2.bias.zero_()
    tokenizer = copy.deepcopy(model.tokenizer)
    # Prompts batch left-padded, as GenerativeModel.encode_prompts; init_kwargs is what is saved.
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
    hf.generation_config.pad_token_id = tokenizer.pad_token_id
    hf.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = LlavaProcessor(
        image_processor=clip_image_processor(model.vision.preprocess),
        tokenizer=tokenizer,
        patch_size=tower.config.patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHATML_PARTS if tokenizer.chat_template == CHATML else tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS token, which the "default" strategy drops
    )
    out = Path(out_dir)
    hf.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def export_clipseg(model_path: str | Path, out_dir: str | Path) -> Path:
    """Writes a CLIPSegForImageSegmentation + CLIPProcessor folder; returns it. Its `logits` for
    (pixel_values, input_ids, attention_mask) are vlkit's mask logits."""
    model, cfg = _load(model_path, "clipseg")
    if cfg.segmenter.refine != "none":
        raise ValueError(
            f"export to CLIPSeg: this segmenter has segmenter.refine={cfg.segmenter.refine!r}, a "
            "refinement stage over the image's pixels that CLIPSegForImageSegmentation has no place "
            "for (its mask is the decoder's transposed convolution alone), so the exported logits "
            "would not be this model's; train with segmenter.refine=none to export, or use the model "
            "through vlkit (load, segment, eval)"
        )
    clip = model.clip
    _require_patch_stem(clip.image_tower, "CLIPSeg")
    hf = CLIPSegForImageSegmentation(clipseg_config(clip, cfg.segmenter)).eval()
    hf.clip.vision_model.load_state_dict(clip.image_tower.model.state_dict())
    hf.clip.text_model.load_state_dict(clip.text_tower.model.state_dict())
    hf.clip.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    hf.clip.text_projection.load_state_dict(clip.text_projection.state_dict())
    with torch.no_grad():
        hf.clip.logit_scale.copy_(clip.logit_scale.clamp(max=math.log(cfg.model.max_logit_scale)))
    hf.decoder.load_state_dict(model.decoder.state_dict())
    processor = CLIPProcessor(
        image_processor=clip_image_processor(clip.image_tower.preprocess), tokenizer=clip.text_tower.tokenizer
    )
    out = Path(out_dir)
    hf.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def export_anchors(model_path: str | Path, out_dir: str | Path) -> Path:
    """A training-free model as plain data: `anchors.safetensors` (the method's tensors: ASIF's
    anchor features and means, ConSE's class-name embeddings; the towers are the named pretrained
    encoders, unchanged), `config.json` (the method, the encoders, k / p / top) and the anchors'
    captions when the folder has them (`anchors.jsonl`). No transformers class computes either
    method, so this is what another runtime needs beside the two encoders."""
    model, cfg = _load(model_path, "anchors")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(TOWERS)}
    save_file(tensors, str(out / "anchors.safetensors"))
    record = dataclasses.asdict(cfg.model) | {"embed_dim": model.embed_dim, "tensors": sorted(tensors)}
    (out / "config.json").write_text(json.dumps(record, indent=1))
    captions = resolve_model_dir(model_path) / "anchors.jsonl"
    if captions.is_file():
        shutil.copy(captions, out / captions.name)
    return out


def export_vilt(model_path: str | Path, out_dir: str | Path) -> Path:
    """A fusion encoder as `ViltForImageAndTextRetrieval` (its ITM logit is that class's
    `logits`) + a `ViltProcessor` (the tokenizer; images resized to the model's size, CLIP's
    mean and std as vlkit's preprocessing)."""
    model, cfg = _load(model_path, "vilt")
    if cfg.model.image_embedder != "patch":
        raise ValueError(
            f"export to ViltForImageAndTextRetrieval: this model embeds images with "
            f"model.image_embedder={cfg.model.image_embedder} ({EMBEDDER_NAMES[cfg.model.image_embedder]}); "
            "ViLT's patch embedding is one convolution with the patch size as kernel and stride and has "
            "no place for it; train with model.image_embedder=patch to export, or use the model through "
            "vlkit (load, eval, search --rerank)"
        )
    hf = ViltForImageAndTextRetrieval(copy.deepcopy(model.vilt.config)).eval()
    hf.vilt.load_state_dict(model.vilt.state_dict())
    hf.rank_output.load_state_dict(model.rank_output.state_dict())
    p = model.preprocess
    images = ViltImageProcessor(
        size={"shortest_edge": p.size},
        size_divisor=cfg.model.patch_size,
        image_mean=list(p.mean),
        image_std=list(p.std),
        do_pad=True,
    )
    out = Path(out_dir)
    hf.save_pretrained(out)
    ViltProcessor(image_processor=images, tokenizer=model.tokenizer).save_pretrained(out)
    return out


EMBEDDER_NAMES = {"conv": "a stack of 3×3 convolutions", "clip": "a CLIP vision transformer's patch tokens"}
TOWERS = ("image_tower.", "text_tower.")
WRITERS = {
    "transformers": export_transformers,
    "llava": export_llava,
    "clipseg": export_clipseg,
    "anchors": export_anchors,
    "vilt": export_vilt,
}
# model kind → its export format, or None for a kind with none (`vlkit.models.kinds` has the
# models floor's table)
EXPORTS = per_kind(
    "export formats",
    {
        "contrastive": "transformers",
        "generative": "llava",
        "detector": None,
        "segmenter": "clipseg",
        "training-free": "anchors",
        "fusion": "vilt",
    },
)
# model kind → why no (other) format holds it, added to a refusal; a kind without an export must say
WHY_NOT = per_kind(
    "export refusals",
    {
        "contrastive": "",
        "generative": "",
        "segmenter": "",
        "detector": (
            ". transformers' OwlViTForObjectDetection computes its box bias from patch corners and "
            "multiplies patch tokens by the CLS token, and pools text at the highest token id; vlkit's "
            "detector uses patch centres, plain patch tokens and its tokenizer's end token, so its "
            "logits would not match"
        ),
        "training-free": (
            ". A training-free model has no transformers class: its scores are not a projection of "
            "its towers' features (ASIF compares sparse similarities to stored anchors, ConSE mixes "
            "class-name embeddings by the classifier's probabilities), so CLIPModel cannot hold it; "
            "its towers are the unchanged pretrained encoders"
        ),
        "fusion": "",
    },
)


def export_of(kind: str) -> str:
    """The export format of model kind `kind`; a ValueError saying why (`WHY_NOT`) when it has none."""
    if EXPORTS[kind] is None:
        raise ValueError(f"a {kind} model has no export format{WHY_NOT[kind]}")
    return EXPORTS[kind]


def export(model_path: str | Path, out_dir: str | Path, format: str | None = None) -> Path:
    """Writes the model in `format` (one of `FORMATS`; None: its kind's, `EXPORTS`); returns the folder."""
    if format is None:
        format = export_of(model_kind(load_config(resolve_model_dir(model_path) / "config.yaml").kind).name)
    if format not in WRITERS:
        raise ValueError(f"export format {format!r}: valid formats are {', '.join(WRITERS)}")
    return WRITERS[format](model_path, out_dir)
