"""Build a generative VLM from config, and save / load it as a self-contained folder.

A generative model folder holds `config.yaml`, `model.safetensors` (every weight, PEFT adapters
and cross-attention blocks included), `vision/` (tower config, image processor) and
`language_model/` (LM config, tokenizer with `<image>` and chat template). A frozen pretrained LM
(`vlm.freeze_lm` with SmolLM2, a hub id or a folder) is not copied into every checkpoint: its
unchanged weights are referenced by name (`external_weights.json`, see `frozen_base`) and loading
rebuilds them from the registry; its embeddings (which gain the `<image>` row) are stored.

Building is two steps: the parts (from the registry, or from a saved folder without weights),
then `adapt` (freezing, PEFT, gated cross-attention), which is a pure function of the config,
so a checkpoint's structure is rebuilt exactly before its weights are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from vlkit.config import PEFT_KINDS, Config, save_config
from vlkit.models.connectors import CONNECTORS, build_connector
from vlkit.models.language_models import IMAGE_TOKEN
from vlkit.models.registry import build_image_tower, build_language_model, from_scratch, save_tower_files
from vlkit.models.vlm import GenerativeVLM
from vlkit.models.vocabulary_head import VocabularyHead, add_vocabulary_head, data_vocabulary


def check_vlm_config(cfg: Config) -> None:
    v = cfg.vlm
    if v.connector not in CONNECTORS:
        raise ValueError(f"vlm.connector: {v.connector!r} is not a connector; valid: {', '.join(CONNECTORS)}")
    if v.peft not in PEFT_KINDS:
        raise ValueError(f"vlm.peft: {v.peft!r} is not a PEFT method; valid: {', '.join(PEFT_KINDS)}")
    if v.peft != "none" and v.connector == "gated_xattn":
        raise ValueError("vlm.peft: PEFT and gated_xattn both adapt the frozen LM; choose one")
    if v.logits_at_answers and v.peft == "prompt":
        raise ValueError(
            "vlm.logits_at_answers: prompt tuning puts virtual tokens before the text, so the answer "
            "positions move; use it with vlm.peft none, lora or prefix"
        )
    if v.data_vocabulary and not v.logits_at_answers:
        raise ValueError(
            "vlm.data_vocabulary: set vlm.logits_at_answers too (the head's smaller softmax is "
            "what makes it faster, and answer positions are where it runs)"
        )
    unknown = set(v.tasks) - {"caption", "vqa"}
    if unknown:
        raise ValueError(f"vlm.tasks: unknown {sorted(unknown)}; valid: caption, vqa")


def build_vlm(
    cfg: Config,
    texts: Iterable[str] | None = None,
    saved: Path | None = None,
    *,
    vision: torch.nn.Module | None = None,
    previous: tuple[GenerativeVLM, Config] | None = None,
) -> GenerativeVLM:
    """A new model (pretrained parts loaded), or the structure of a saved one (`saved`: its
    folder; weights are loaded by the caller). A recipe that starts from trained parts is given
    them loaded (`vlkit.models.build.initial_parts` loads them): `previous`, the model and config that
    `vlm.init_from` names (LLaVA stage 2 from stage 1), or else `vision`, the image tower of the
    dual encoder that `vlm.vision_init` names (LLaVA starts from a contrastively trained tower)."""
    check_vlm_config(cfg)
    v = cfg.vlm
    # Loading trained parts seeds the RNG with their own run's seed; the new parts' initialisation
    # goes on from there, as it did when this function loaded them itself.
    if saved is None and v.init_from:
        if previous is None:
            raise ValueError(f"vlm.init_from={v.init_from!r}: pass previous=, the loaded (model, config)")
        model = _parts_from(*previous, cfg)
    elif saved is None and v.vision_init:
        if vision is None:
            raise ValueError(f"vlm.vision_init={v.vision_init!r}: pass vision=, the loaded image tower")
        model = _parts(cfg, texts, None, vision)
    else:
        torch.manual_seed(cfg.train.seed)
        model = _parts(cfg, texts, saved)
    _vocabulary_head(model, cfg, texts, saved)
    return adapt(model, cfg)


def _vocabulary_head(
    model: GenerativeVLM, cfg: Config, texts: Iterable[str] | None, saved: Path | None
) -> None:
    """`vlm.data_vocabulary`: the LM's head scores the data's tokens only (a saved model's own
    vocabulary is read with its weights; stage 2 keeps stage 1's)."""
    lm = model.base_language_model()
    has = isinstance(lm.get_output_embeddings(), VocabularyHead)
    if has and not cfg.vlm.data_vocabulary:
        raise ValueError(
            f"vlm.init_from={cfg.vlm.init_from!r} was trained with vlm.data_vocabulary; set it here too"
        )
    if has or not cfg.vlm.data_vocabulary:
        return
    if saved is None and texts is None:
        raise ValueError("vlm.data_vocabulary: a new model needs the training data's texts")
    vocabulary = (
        torch.zeros(0, dtype=torch.long) if saved is not None else data_vocabulary(model.tokenizer, texts)
    )
    add_vocabulary_head(lm, vocabulary)


def _parts(
    cfg: Config, texts: Iterable[str] | None, saved: Path | None, vision: torch.nn.Module | None = None
) -> GenerativeVLM:
    """`vision`: a trained tower (`vlm.vision_init`); its width, not model.*'s, sizes the connector."""
    v = cfg.vlm
    if vision is None:
        vision = build_image_tower(cfg.model.image_encoder, cfg.model, saved / "vision" if saved else None)
    lm, tokenizer = build_language_model(
        v.language_model, v, saved / "language_model" if saved else None, texts
    )
    if IMAGE_TOKEN not in tokenizer.get_vocab():  # pretrained LMs: one new token, never trained
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    n, vision_dim = _grid_shape(vision, v.vision_feature_layer)
    # gated_xattn: the connector is Flamingo's resampler; the LM cross-attends to its latents.
    connector = build_connector(v, vision_dim, lm.config.hidden_size, n)
    return GenerativeVLM(v, vision, connector, lm, tokenizer, n)


def _grid_shape(vision: torch.nn.Module, layer: int) -> tuple[int, int]:
    """(N, Dv) of the tower's grid features at its input size (one blank image through it)."""
    side = vision.preprocess.size
    with torch.no_grad():
        grid = vision.grid(vision.preprocess([np.zeros((side, side, 3), np.uint8)]), layer)
    return grid.shape[1], grid.shape[2]


def _parts_from(previous: GenerativeVLM, previous_cfg: Config, cfg: Config) -> GenerativeVLM:
    """The trained parts of another generative model (LLaVA stage 2 starts from stage 1)."""
    path = cfg.vlm.init_from
    if previous_cfg.kind != "generative":
        raise ValueError(f"vlm.init_from: {path} is a {previous_cfg.kind} model, not a generative one")
    if previous.cross_attention or previous_cfg.vlm.connector != cfg.vlm.connector:
        raise ValueError(
            f"vlm.init_from: {path} has connector {previous_cfg.vlm.connector!r}, this recipe "
            f"{cfg.vlm.connector!r}; continuing needs the same soft-token connector"
        )
    if previous_cfg.vlm.vision_feature_layer != cfg.vlm.vision_feature_layer:
        raise ValueError(
            f"vlm.init_from: {path}'s connector reads vision layer {previous_cfg.vlm.vision_feature_layer}, "
            f"this recipe's vlm.vision_feature_layer is {cfg.vlm.vision_feature_layer}; set them equal"
        )
    if previous_cfg.vlm.peft not in ("none", "lora"):
        raise ValueError(f"vlm.init_from: cannot continue from a {previous_cfg.vlm.peft!r}-tuned model")
    from vlkit.models.peft_adapters import merged_lm

    lm = merged_lm(previous.language_model)  # LoRA merged into the weights; a plain LM as is
    lm.requires_grad_(True)
    previous.vision.requires_grad_(True)
    return GenerativeVLM(
        cfg.vlm, previous.vision, previous.connector, lm, previous.tokenizer, previous.vision_features
    )


def adapt(model: GenerativeVLM, cfg: Config) -> GenerativeVLM:
    """Freezing, then PEFT or gated cross-attention on the LM (their new weights train)."""
    v = cfg.vlm
    if v.freeze_vision:
        model.vision.requires_grad_(False)
    if v.freeze_lm:
        model.language_model.requires_grad_(False)
    if v.peft != "none":
        from vlkit.models.peft_adapters import apply_peft

        model.language_model = apply_peft(model.language_model, v)
    if v.connector == "gated_xattn":
        from vlkit.models.flamingo import add_gated_xattn

        lm_dim = model.language_model.config.hidden_size  # the resampler's media are at the LM width
        model.language_model = add_gated_xattn(
            model.language_model, lm_dim, v.xattn_every, freeze_lm=v.freeze_lm
        )
    return model


def save_vlm_files(model: GenerativeVLM, cfg: Config, folder: Path) -> None:
    """Everything but the weights: config, tower files, LM config and tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / "config.yaml")
    save_tower_files(model.vision, folder / "vision")
    (folder / "language_model").mkdir(exist_ok=True)
    model.base_language_model().config.save_pretrained(folder / "language_model")
    model.tokenizer.save_pretrained(folder / "language_model")


def save_vlm_folder(model: GenerativeVLM, cfg: Config, folder: Path) -> dict | None:
    """Everything but the weights (`save_vlm_files`); returns the frozen base's external-weights
    record (`frozen_base`): those weights are referenced by name, not copied."""
    save_vlm_files(model, cfg, folder)
    return frozen_base(model, cfg)


def initial_parts(cfg: Config, load: Callable[[str], tuple[torch.nn.Module, Config]]) -> dict:
    """The trained parts this recipe starts from, loaded with `load` (a run or model path →
    (model, config)), as `build_vlm`'s keyword arguments: `previous`, the model and config
    `vlm.init_from` names (LLaVA stage 2 from stage 1), or else `vision`, the image tower of the
    dual encoder `vlm.vision_init` names."""
    v = cfg.vlm
    if v.init_from:
        return {"previous": load(v.init_from)}
    if v.vision_init:
        dual, _ = load(v.vision_init)
        return {"vision": dual.image_tower}
    return {}


def frozen_base(model: GenerativeVLM, cfg: Config) -> dict | None:
    """{"base": the LM's name, "keys": the model's keys of the frozen pretrained LM weights} when
    a checkpoint can leave them out and `fill_frozen_base` rebuild them exactly, else None.

    That is a frozen (`vlm.freeze_lm`), pretrained (not `from_scratch`) LM loaded by name, not
    continued from another run (`vlm.init_from`) nor wrapped (PEFT, gated cross-attention). The
    embeddings are kept: a pretrained tokenizer gains the `<image>` row when the model is built."""
    v = cfg.vlm
    if not v.freeze_lm or from_scratch(v.language_model) or v.init_from:
        return None
    if v.peft != "none" or v.connector == "gated_xattn":
        return None
    lm = model.base_language_model()
    embeddings = {id(lm.get_input_embeddings().weight), id(lm.get_output_embeddings().weight)}
    names = {id(t): name for name, t in model.named_parameters(remove_duplicate=False)}
    keys = [names[id(t)] for t in lm.parameters() if not t.requires_grad and id(t) not in embeddings]
    return {"base": v.language_model, "keys": sorted(keys)} if keys else None


def fill_frozen_base(model: GenerativeVLM, cfg: Config, keys: list[str]) -> None:
    """Copies the frozen base LM's weights (rebuilt from the registry by name) into `keys`."""
    if not keys:
        return
    base, _ = build_language_model(cfg.vlm.language_model, cfg.vlm)
    lm = model.base_language_model()
    prefix = next(n for n, m in model.named_modules() if m is lm)
    weights = base.state_dict()
    with torch.no_grad():
        for key in keys:
            model.get_parameter(key).copy_(weights[key[len(prefix) + 1 :]])
