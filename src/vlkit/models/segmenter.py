"""A text-prompted segmenter (CLIPSeg, Lüddecke & Ecker 2022) on a vlkit dual encoder.

The image tower runs as usual (frozen by default, as in CLIPSeg); its token states after a few
layers (`segmenter.extract_layers`, CLS included) feed transformers' own `CLIPSegDecoder`: each
is reduced to `reduce_dim` and added to the running output, FiLM-modulated by the prompt's text
embedding (the text tower's pooled state through `text_projection`, not normalised: CLIPSeg's
conditional embedding), then a post-norm transformer layer; a transposed convolution with the
patch size as kernel and stride turns the patch tokens into one mask logit per pixel. Because
the decoder is transformers' module and the towers are CLIP's, a model with CLIP's patch stem
exports to `CLIPSegForImageSegmentation` as a weight copy (`vlkit.export`).

`segmenter.refine: pixels` adds what CLIPSeg lacks (and so what no export holds): a skip from the
image itself. The decoder's logits come from an 8 × 8 token grid (64-px images, 8-px patches), so
a small object's edges are guessed from coarse features; a few small convolutions over the RGB
pixels beside those logits redraw the mask at full resolution (`PixelRefiner`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPSegConfig
from transformers.models.clipseg.modeling_clipseg import CLIPSegDecoder

from vlkit.config import Config, SegmenterConfig
from vlkit.models.build_dual import build_dual_encoder, save_dual_files
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.towers import CLIPTextTower, CLIPVisionTower

REFINES = ("none", "pixels")  # segmenter.refine: CLIPSeg's decoder alone, or + `PixelRefiner`


class PixelRefiner(nn.Module):
    """The mask redrawn at the image's resolution from its own pixels and the decoder's mask:
    3 × 3 convolutions (dilated 1, 2, 4, 1: a 17-px field, a small object's size) over [RGB,
    the decoder's probability] → a correction added to the decoder's logit. The last layer starts
    at zero, so an untrained refinement passes the decoder's mask through unchanged."""

    DILATIONS = (1, 2, 4, 1)

    def __init__(self, width: int):
        super().__init__()
        layers, channels = [], 4
        for d in self.DILATIONS:
            layers += [nn.Conv2d(channels, width, 3, padding=d, dilation=d), nn.GELU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pixel_values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W]; logits: float[B, H, W] → refined logits float[B, H, W]."""
        # the decoder's mask as an input only: its own gradient comes from its own loss (the
        # objective's deep supervision), never through what the refinement makes of it
        x = torch.cat([pixel_values, logits.detach().sigmoid()[:, None]], dim=1)  # (B, 4, H, W)
        return logits + self.out(self.body(x))[:, 0]


def clipseg_config(clip: DualEncoder, cfg: SegmenterConfig) -> CLIPSegConfig:
    """transformers' CLIPSeg config for a decoder over `clip`'s towers (also the export's config)."""
    return CLIPSegConfig(
        text_config=clip.text_tower.model.config.to_dict(),
        vision_config=clip.image_tower.model.config.to_dict(),
        projection_dim=clip.embed_dim,
        extract_layers=list(cfg.extract_layers),
        reduce_dim=cfg.reduce_dim,
        decoder_num_attention_heads=cfg.decoder_heads,
        decoder_intermediate_size=cfg.decoder_intermediate,
        conditional_layer=cfg.conditional_layer,
        use_complex_transposed_convolution=False,  # kernels of patch_size / 4: only 16-pixel patches
    )


class TextPromptedSegmenter(nn.Module):
    """clip: the dual encoder (read, frozen unless `freeze_clip` is off); decoder: CLIPSeg's."""

    def __init__(self, clip: DualEncoder, cfg: SegmenterConfig):
        super().__init__()
        if not isinstance(clip.image_tower, CLIPVisionTower) or not isinstance(
            clip.text_tower, CLIPTextTower
        ):
            raise ValueError(
                "a segmenter reads a CLIP image tower's layer activations and a CLIP text tower's "
                f"pooled state; this dual encoder has {type(clip.image_tower).__name__} + "
                f"{type(clip.text_tower).__name__} (use vit-tiny / text-tiny or transformers CLIP towers)"
            )
        layers = clip.image_tower.model.config.num_hidden_layers
        bad = [i for i in cfg.extract_layers if not 0 <= i < layers]
        if bad or not cfg.extract_layers:
            raise ValueError(
                f"segmenter.extract_layers: {list(cfg.extract_layers)}; the image tower has layers 0..{layers - 1}"
            )
        if cfg.refine not in REFINES:
            raise ValueError(
                f"segmenter.refine: {cfg.refine!r}; valid: 'none' (CLIPSeg's decoder alone) or "
                "'pixels' (+ convolutions over the image's pixels and the decoder's mask)"
            )
        self.clip = clip
        self.frozen = cfg.freeze_clip
        config = clipseg_config(clip, cfg)
        config.vision_config._attn_implementation = "sdpa"  # what transformers' own models pick
        self.decoder = CLIPSegDecoder(config)
        self.extract_layers = list(cfg.extract_layers)
        self.refiner = PixelRefiner(cfg.refine_width) if cfg.refine == "pixels" else None
        if self.frozen:
            self.clip.requires_grad_(False)

    def train(self, mode: bool = True) -> TextPromptedSegmenter:
        super().train(mode)
        if self.frozen:  # a frozen CLIP keeps its dropout off too
            self.clip.eval()
        return self

    def activations(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """pixel_values: float[B, 3, H, W] → the token states after each extract layer, float[B, 1 + P, D]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.clip.image_tower.model(pixel_values=pixel_values, output_hidden_states=True)
        return [out.hidden_states[i + 1] for i in self.extract_layers]  # hidden_states[0]: the embeddings

    def prompt_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: int64[B, T] → conditional embeddings float[B, E] (not normalised)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.clip.text_projection(self.clip.text_tower(input_ids, attention_mask))

    def decode(self, activations: list[torch.Tensor], prompts: torch.Tensor) -> torch.Tensor:
        """activations: float[B, 1 + P, D] per layer; prompts: float[B, E] → mask logits float[B, H, W]."""
        return self.decoder(activations, prompts).logits.view(prompts.shape[0], *self._mask_size())

    def _mask_size(self) -> tuple[int, int]:
        size = self.clip.image_tower.model.config.image_size
        return size, size

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        with_coarse: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One prompt per image → mask logits float[B, H, W] at the tower's input resolution;
        `with_coarse`: (those, the decoder's own logits before any refinement)."""
        logits = self.decode(
            self.activations(pixel_values), self.prompt_embeddings(input_ids, attention_mask)
        )
        refined = logits if self.refiner is None else self.refiner(pixel_values, logits)
        return (refined, logits) if with_coarse else refined


def build_segmenter(
    cfg: Config,
    texts: Iterable[str] | None = None,
    saved: Path | None = None,
    clip: DualEncoder | None = None,
) -> TextPromptedSegmenter:
    """A new segmenter on a new dual encoder, or on `clip` (the one `segmenter.clip_init` names,
    loaded by `clip_parts`); with `saved`, a saved folder's structure."""
    if clip is None:
        clip = build_dual_encoder(cfg, texts, saved)
    torch.manual_seed(cfg.train.seed + 1)  # the decoder: the same whether or not the towers were loaded
    return TextPromptedSegmenter(clip, cfg.segmenter)


def save_segmenter_files(model: TextPromptedSegmenter, cfg: Config, folder: Path) -> None:
    """The dual encoder's files (config, towers, tokenizer); every weight is stored."""
    save_dual_files(model.clip, cfg, folder)


def clip_parts(cfg: Config, load: Callable[[str], tuple[nn.Module, Config]]) -> dict:
    """{"clip": the dual encoder `segmenter.clip_init` names}, checked to have the towers the
    `model` section describes; {} when it starts from scratch."""
    from vlkit.models.detector import tower_parts

    return tower_parts(cfg, cfg.segmenter.clip_init, "segmenter", load)
