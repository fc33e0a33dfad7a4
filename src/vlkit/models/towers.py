"""Image and text towers: thin adapters that give every backbone the same small interface.

An image tower has `out_dim`, `preprocess` (an `ImagePreprocess`), `forward(pixel_values)` →
pooled features `float[B, out_dim]`, `grid(pixel_values)` → patch/grid features
`float[B, N, D]` (what generative models consume; `layer` picks transformers' `hidden_states` index,
-1 the last) and `blocks()` (its layers in order, for LiT's
partial unlocking). A text tower has `out_dim`, `tokenizer`, `max_length`,
`forward(input_ids, attention_mask)` → `float[B, out_dim]` and `blocks()`.
The towers themselves are transformers models (or the packaged EfficientNet); we only add glue.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel, PreTrainedTokenizerBase

from vlkit.models.preprocess import ImagePreprocess

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def hidden_state(model: nn.Module, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
    """A transformers vision model's `hidden_states[layer]` (0: the embeddings, k: after layer k);
    -1 is `last_hidden_state` (for ViT that is after its final norm, which hidden_states[-1] is not)."""
    if layer == -1:
        return model(pixel_values=pixel_values).last_hidden_state
    states = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
    if not -len(states) <= layer < len(states):
        raise ValueError(
            f"vlm.vision_feature_layer={layer}: the tower has {len(states)} hidden states "
            f"(indices {-len(states)}..{len(states) - 1})"
        )
    return states[layer]


class CLIPVisionTower(nn.Module):
    """A transformers CLIP vision transformer; pooled = post-layernormed CLS token."""

    def __init__(self, model: CLIPVisionModel, preprocess: ImagePreprocess):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.out_dim = model.config.hidden_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).pooler_output  # (B, D)

    def grid(self, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
        return hidden_state(self.model, pixel_values, layer)[:, 1:]  # (B, N_patches, D): no CLS

    def blocks(self) -> list[nn.Module]:
        return [*self.model.encoder.layers, self.model.post_layernorm]


class HFVisionTower(nn.Module):
    """Any transformers vision backbone (ViT, SigLIP, DINOv2...): pooler output, else the CLS token."""

    def __init__(self, model: nn.Module, preprocess: ImagePreprocess):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.out_dim = model.config.hidden_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    def grid(self, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
        return hidden_state(self.model, pixel_values, layer)

    def blocks(self) -> list[nn.Module]:
        encoder = getattr(self.model, "encoder", None)
        layers = getattr(encoder, "layers", None) or getattr(encoder, "layer", None)
        if layers is None:
            raise ValueError(f"{type(self.model).__name__}: cannot find its layers to unlock")
        return list(layers)


class EfficientNetTower(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights): pooled = mean of the final 1280×7×7 grid at 224 px."""

    def __init__(self, model: nn.Module, preprocess: ImagePreprocess):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.out_dim = 1280
        self.num_classes = model._fc.out_features  # 1000 ImageNet classes

    def class_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features float[B, 1280] → the ImageNet classifier's logits float[B, num_classes]
        (what the packaged model's forward ends with; its dropout is off in eval). ConSE reads them."""
        return self.model._fc(pooled)

    def feature_map(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixel_values)  # (B, 1280, 7, 7) at 224 px

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.feature_map(pixel_values).mean(dim=(2, 3))  # (B, 1280)

    def grid(self, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
        if layer != -1:
            raise ValueError(
                f"vlm.vision_feature_layer={layer}: the EfficientNet tower gives its last grid only (-1)"
            )
        return self.feature_map(pixel_values).flatten(2).transpose(1, 2)  # (B, 49, 1280)

    def blocks(self) -> list[nn.Module]:
        m = self.model
        return [*m._blocks, nn.ModuleList([m._conv_head, m._bn1])]


class TextTower(nn.Module):
    """A transformers text encoder and its tokenizer; a subclass says how its token states pool
    into one vector per text (`forward`) and which layers it has (`blocks`)."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.out_dim = model.config.hidden_size


class CLIPTextTower(TextTower):
    """A transformers CLIP text transformer; pooled = final-layernormed end-of-text token."""

    model: CLIPTextModel

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).pooler_output  # (B, D)

    def blocks(self) -> list[nn.Module]:
        return [*self.model.encoder.layers, self.model.final_layer_norm]


class MeanPoolTextTower(TextTower):
    """A BERT-style encoder (e.g. all-MiniLM-L6-v2) with sentence-transformers' masked mean pooling."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)

    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)


def tokenize(tower: nn.Module, texts: list[str]) -> dict[str, torch.Tensor]:
    """A text tower's input for `texts`: padded, cut at its `max_length`."""
    enc = tower.tokenizer(
        texts, padding=True, truncation=True, max_length=tower.max_length, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def scratch_dims(width: int, layers: int, heads: int) -> dict[str, int]:
    """The shape of every transformer vlkit builds from scratch (vit-tiny, text-tiny, gpt-tiny),
    as transformers configs name it: MLP width 4x the model width."""
    return dict(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads
    )
