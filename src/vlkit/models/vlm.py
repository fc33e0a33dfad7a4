"""The generative VLM: a vision tower → a connector → a causal language model.

Three replaceable parts, joined as transformers' LLaVA joins them: the connector turns the
tower's grid features into `image_tokens` soft tokens, each `<image>` placeholder of the prompt
is expanded to that many placeholder ids, and the features are scattered into the text
embeddings at those positions. The count must match exactly (an error otherwise). Flamingo
(`gated_xattn`) instead keeps one `<image>` marker in the text and feeds the resampled features
to gated cross-attention blocks inside the language model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from vlkit.config import VLMConfig
from vlkit.models.grounding import GroundingHead
from vlkit.models.language_models import IMAGE_TOKEN
from vlkit.models.vocabulary_head import VocabularyHead


def answer_positions(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """labels: int64[B, T] (-100 = ignored) → transformers' causal-LM arguments that compute the
    logits only where the next token is labelled: `logits_to_keep`, bool[B, T], and
    `shift_labels`, int64[N], those next tokens (the loss is the same as over every position)."""
    following = nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]  # (B, T): the next token's label
    keep = following != -100
    return {"logits_to_keep": keep, "shift_labels": following[keep]}


class GenerativeVLM(nn.Module):
    """vision: an image tower (`grid`, `preprocess`); connector: float[B, N, Dv] → float[B, M, D];
    language_model: a transformers causal LM (possibly PEFT-wrapped or with gated cross-attention)."""

    def __init__(
        self,
        cfg: VLMConfig,
        vision: nn.Module,
        connector: nn.Module,
        language_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        vision_features: int,
    ):
        super().__init__()
        self.cfg = cfg
        self.vision = vision
        self.connector = connector
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.vision_features = vision_features  # N: grid features per image
        self.cross_attention = cfg.connector == "gated_xattn"
        # `vlm.grounding_weight`: a training-only head (export leaves it out) that names the 3 x 3
        # cell of the object a word refers to, from an LM hidden state (`vlm.grounding_layer`) there
        self.grounding_head = None
        if cfg.grounding_weight > 0:
            width = self.base_language_model().config.hidden_size
            self.grounding_head = GroundingHead(width)

    def base_language_model(self) -> nn.Module:
        """The transformers LM under any PEFT wrapper (`get_base_model`) or cross-attention (`.lm`)."""
        lm = self.language_model
        if hasattr(lm, "get_base_model"):
            return lm.get_base_model()
        return getattr(lm, "lm", lm)

    @property
    def image_tokens(self) -> int:
        """Sequence positions one `<image>` placeholder expands to."""
        return 1 if self.cross_attention else self.connector.num_tokens(self.vision_features)

    def train(self, mode: bool = True) -> GenerativeVLM:
        super().train(mode)
        if self.cfg.freeze_vision:  # frozen parts keep dropout and batch-norm statistics fixed
            self.vision.eval()
        elif self.cfg.vision_init or self.cfg.init_from:  # a pretrained tower that trains keeps its
            # batch-norm statistics (a conv stem's) as they came, as detection backbones are
            # fine-tuned: a batch run as several passes (vlm.length_groups) then trains as the whole
            # batch would. A tower from scratch has no statistics yet: it learns them
            for module in self.vision.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def vision_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: float[B, 3, H, W] → float[B, N, Dv] (no gradient when the tower is frozen)."""
        with torch.no_grad() if self.cfg.freeze_vision else contextlib.nullcontext():
            return self.vision.grid(pixel_values, self.cfg.vision_feature_layer)

    def input_embeddings(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """input_ids: int64[B, T]; image_embeds: float[B_img, M, D] → float[B, T, D].

        Soft-token connectors: the image placeholder positions take the image embeddings, in
        order. Their number must equal B_img * M.
        """
        embeds = self.base_language_model().get_input_embeddings()(input_ids)  # (B, T, D)
        if self.cross_attention or image_embeds is None:
            return embeds
        mask = input_ids == self.image_token_id  # (B, T)
        if int(mask.sum()) != image_embeds.shape[0] * image_embeds.shape[1]:
            raise ValueError(
                f"image tokens and image features do not match: the text holds {int(mask.sum())} "
                f"{IMAGE_TOKEN} tokens, the images give {image_embeds.shape[0]} x {image_embeds.shape[1]} "
                "features (expand each placeholder to `model.image_tokens` tokens)"
            )
        return embeds.masked_scatter(mask.unsqueeze(-1), image_embeds.to(embeds.dtype))

    def image_embeds(
        self, pixel_values: torch.Tensor | None = None, vision_grid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """From pixels, or from cached tower features (frozen vision): → float[B, M, D]."""
        if vision_grid is None:
            vision_grid = self.vision_grid(pixel_values)
        return self.connector(vision_grid)

    @contextlib.contextmanager
    def _media(self, image_embeds: torch.Tensor | None) -> Iterator[None]:
        """Gated cross-attention reads the images from its blocks while the LM runs."""
        if not self.cross_attention or image_embeds is None:
            yield
            return
        with self.language_model.media(image_embeds):  # a flamingo.GatedXAttnLM
            yield

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        vision_grid: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | None = None,
        grounding_positions: torch.Tensor | None = None,
        grounding_labels: torch.Tensor | None = None,
    ):
        """input_ids, attention_mask: int64[B, T]; labels: int64[B, T] (-100 = ignored);
        pixel_values: float[B, 3, H, W] or vision_grid: float[B, N, Dv] → the LM's output (loss, logits).
        `num_items_in_batch`: the loss is the sum over answer tokens divided by it (transformers'
        loss functions), not their mean: processes that hold different numbers of answer tokens
        then add up to the one-process loss (`GenerativeObjective.loss`).
        grounding_positions, grounding_labels: int64[B, K], a word's position and its object's cell
        (-100 = none): the loss adds `vlm.grounding_weight` x the head's cross-entropy there, and
        the output carries it as `grounding_loss` and `grounding_accuracy` (detached)."""
        image_embeds = None
        if pixel_values is not None or vision_grid is not None:
            image_embeds = self.image_embeds(pixel_values, vision_grid)
        embeds = self.input_embeddings(input_ids, image_embeds)
        grounding = self.grounding_head is not None and grounding_labels is not None
        with self._media(image_embeds):
            extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            if labels is not None and self.cfg.logits_at_answers:
                extra |= answer_positions(labels)
            with self._answer_head(extra):
                out = self.language_model(
                    inputs_embeds=embeds,
                    attention_mask=attention_mask,
                    labels=labels,
                    output_hidden_states=grounding,
                    **extra,
                )
        if grounding:
            self._add_grounding(out, grounding_positions, grounding_labels)
        return out

    def _answer_head(self, extra: dict) -> contextlib.AbstractContextManager:
        """`vlm.data_vocabulary` when the logits are computed at answer positions only: the head's
        logits over its vocabulary, the targets as its columns (`extra`'s shift_labels, rewritten);
        else nothing changes."""
        head = self.base_language_model().get_output_embeddings()
        if "shift_labels" not in extra or not isinstance(head, VocabularyHead):
            return contextlib.nullcontext()
        extra["shift_labels"] = head.positions(extra["shift_labels"], self.tokenizer)
        return head.subset()

    def _add_grounding(self, out, positions: torch.Tensor, labels: torch.Tensor) -> None:
        """The `vlm.grounding_weight` term, added to out.loss (see `forward`)."""
        states = out.hidden_states  # embeddings, then each layer's output: (B, T, D) each
        layer = self.cfg.grounding_layer
        if not -len(states) <= layer < len(states):
            raise ValueError(
                f"vlm.grounding_layer={layer}: the language model has {len(states)} hidden states "
                f"(0 = embeddings .. {len(states) - 1} = the last layer's, or -1)"
            )
        hidden = states[layer]
        loss, accuracy = self.grounding_head(hidden, positions, labels)
        out.loss = out.loss + self.cfg.grounding_weight * loss
        out.grounding_loss, out.grounding_accuracy = loss.detach(), accuracy

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """Left-padded prompts → int64[B, T_new] (new tokens only); kwargs go to transformers'
        `generate` (max_new_tokens, num_beams, do_sample, stop_strings, streamer, ...)."""
        image_embeds = self.image_embeds(pixel_values) if pixel_values is not None else None
        embeds = self.input_embeddings(input_ids, image_embeds)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        generate_kwargs.setdefault("eos_token_id", self.tokenizer.eos_token_id)
        from vlkit.models.peft_adapters import generate  # transformers' generate, PEFT-aware

        with self._media(image_embeds):
            return generate(self.language_model, embeds, attention_mask, **generate_kwargs)
