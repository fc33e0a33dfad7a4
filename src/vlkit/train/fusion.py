"""The fusion encoder's objective (ViLT's pretraining; FLAVA's with `model.contrastive_weight`).

Per image, one of its captions (drawn by sample position) and one hard negative, in the shares
`model.negative_shares`: the caption with colours swapped between its objects (a single object's
colour changed), with a shape changed (the scenes' `negative_captions`), or another image's
caption. Image-text matching (ITM): binary cross-entropy of the match logit on every pair.
Masked language modelling (MLM): the true caption again with word tokens replaced by `<mask>`
(a random share, or with `model.mlm_group_probability` every word of one `model.mlm_word_groups`
group), cross-entropy on those tokens; a separate row, so ITM never sees masked captions. One forward
over all 3B pairs.

Batches (`collate`): pixel_values float[B, 3, H, W]; input_ids, attention_mask int64[3B, T]
(rows: B true captions, B negatives, B masked captions; image b is row b's, B + b's and 2B + b's);
itm_labels float[2B]; mlm_labels int64[B, T] (-100: not masked); with `model.token_itm_weight` > 0,
word_labels float[2B, T] (`word_labels`: word-level matching on the words a negative changed); with
`model.grounding_weight` > 0, grounding_positions / grounding_labels int64[B, K] (`vlkit.train.grounding`:
where the true captions name the scene's objects, and the cells they lie in).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from vlkit.data.negatives import pick_negative
from vlkit.models.fusion import FusionEncoder
from vlkit.models.losses import clip_loss
from vlkit.models.towers import tokenize
from vlkit.train.grounding import grounding_targets, pad_targets


def mask_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_id: int, special: list[int], p: float, rng
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids int64[B, T] → (ids with a share `p` of each row's word tokens replaced by `mask_id`,
    at least one; labels int64[B, T]: the original id where masked, else -100)."""
    ids, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    words = (attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special))).numpy()
    for b, row in enumerate(words):
        positions = np.flatnonzero(row)
        if not len(positions):
            continue
        count = max(1, int(round(p * len(positions))))
        chosen = torch.from_numpy(rng.choice(positions, size=count, replace=False))
        labels[b, chosen] = input_ids[b, chosen]
        ids[b, chosen] = mask_id
    return ids, labels


def group_token_ids(tokenizer, groups: list[list[str]]) -> list[torch.Tensor]:
    """`model.mlm_word_groups` → per group, the token ids of its words int64[W]; a word that is not
    one token of the tokenizer raises an error naming it (a group is masked token by token)."""
    out = []
    for group in groups:
        ids = []
        for word in group:
            found = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(found) != 1 or found[0] == tokenizer.unk_token_id:
                raise ValueError(
                    f"model.mlm_word_groups: {word!r} is {len(found)} tokens of this tokenizer, not one"
                )
            ids.append(found[0])
        out.append(torch.tensor(ids))
    return out


def mask_groups(
    input_ids: torch.Tensor,
    masked: torch.Tensor,
    labels: torch.Tensor,
    mask_id: int,
    groups: list[torch.Tensor],
    p: float,
    rng,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`mask_tokens`' (masked, labels) int64[B, T] of input_ids int64[B, T] → the same with a share
    `p` of the rows (those that contain a group's word) masked instead at every token of one group
    they contain, drawn at random: "a <mask> circle and a <mask> square" for the colours."""
    masked, labels = masked.clone(), labels.clone()
    for b, row in enumerate(input_ids):
        present = [g for g in groups if torch.isin(row, g).any()]
        if not present or rng.random() >= p:
            continue
        where = torch.isin(row, present[int(rng.integers(len(present)))])
        masked[b], labels[b] = torch.where(where, mask_id, row), torch.where(where, row, -100)
    return masked, labels


def word_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: list[int]) -> torch.Tensor:
    """Word-level matching targets of ITM's rows int64[2B, T] (B true captions, then each one's
    negative) → float[2B, T]: 0 at the words a negative changed, 1 at the same places in its true
    caption, -1 (not trained) elsewhere and on pairs whose token counts differ (another image's
    caption, mostly), where no word lines up with another."""
    b = input_ids.shape[0] // 2
    true, negative = input_ids[:b], input_ids[b:]
    same_length = (attention_mask[:b].sum(1) == attention_mask[b:].sum(1))[:, None]
    words = attention_mask[:b].bool() & ~torch.isin(true, torch.tensor(special))
    changed = (true != negative) & words & same_length  # (B, T)
    labels = torch.full(input_ids.shape, -1.0)
    labels[:b][changed] = 1.0
    labels[b:][changed] = 0.0
    return labels


@dataclass
class FusionObjective:
    model: FusionEncoder
    seed: int = 0

    @cached_property
    def word_groups(self) -> list[torch.Tensor]:
        """`model.mlm_word_groups` as token ids, looked up once rather than per batch."""
        return group_token_ids(self.model.tokenizer, self.model.cfg.mlm_word_groups)

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        m = self.model.cfg
        rngs = [np.random.default_rng([self.seed, position]) for position, _ in samples]
        picks = [int(rng.integers(len(s["captions"]))) for rng, (_, s) in zip(rngs, samples)]
        captions = [s["captions"][k] for (_, s), k in zip(samples, picks)]
        negatives = []
        for b, ((_, sample), k, rng) in enumerate(zip(samples, picks, rngs)):
            # another image's caption: the next sample's (never this one's), unless it says the same
            other = captions[(b + 1) % len(samples)]
            other = None if other in sample["captions"] else other
            negatives.append(pick_negative(sample, k, other, m.negative_shares, rng))
        enc = tokenize(self.model, captions + negatives + captions)  # (3B, T)
        b = len(samples)
        tk = self.model.tokenizer
        special = [tk.pad_token_id, tk.bos_token_id, tk.eos_token_id]
        masked, labels = mask_tokens(
            enc["input_ids"][2 * b :], enc["attention_mask"][2 * b :], tk.mask_token_id, special,
            m.mlm_probability, rngs[0],
        )  # fmt: skip
        if m.mlm_group_probability > 0:  # no draw otherwise: earlier runs' masks stay as they were
            masked, labels = mask_groups(
                enc["input_ids"][2 * b :], masked, labels, tk.mask_token_id, self.word_groups,
                m.mlm_group_probability, rngs[0],
            )  # fmt: skip
        enc["input_ids"] = torch.cat([enc["input_ids"][: 2 * b], masked])
        itm = torch.cat([torch.ones(b), torch.zeros(b)])
        pixel_values = self.model.preprocess([s["image"] for _, s in samples])  # (B, 3, H, W)
        out = enc | {"pixel_values": pixel_values, "itm_labels": itm, "mlm_labels": labels}
        if m.token_itm_weight > 0:
            out["word_labels"] = word_labels(
                enc["input_ids"][: 2 * b], enc["attention_mask"][: 2 * b], special
            )
        if m.grounding_weight > 0:  # the true captions' object names (rows :b)
            rows = enc["input_ids"][:b].tolist()
            out |= pad_targets(
                [
                    grounding_targets(tk, ids, s.get("object_regions") or {})
                    for ids, (_, s) in zip(rows, samples)
                ]
            )
        return out

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixel_values"]
        b = pixels.shape[0]
        grounding = {k: batch[k] for k in ("grounding_positions", "grounding_labels") if k in batch}
        itm, mlm, words, located = model(pixels, batch["input_ids"], batch["attention_mask"], **grounding)
        m = self.model.cfg
        itm_loss = F.binary_cross_entropy_with_logits(itm[: 2 * b].float(), batch["itm_labels"])
        mlm_loss = F.cross_entropy(mlm[2 * b :].flatten(0, 1).float(), batch["mlm_labels"].flatten())
        self._last = {"itm_loss": itm_loss.item(), "mlm_loss": mlm_loss.item()}
        loss = m.itm_weight * itm_loss + m.mlm_weight * mlm_loss
        if m.token_itm_weight > 0:  # the changed words of the negatives and their originals
            labels = batch["word_labels"]
            known = labels >= 0
            if known.any():
                word_loss = F.binary_cross_entropy_with_logits(words[: 2 * b][known].float(), labels[known])
            else:  # no colour or shape edit in this batch
                word_loss = words.sum() * 0.0
            self._last["word_itm_loss"] = word_loss.item()
            loss = loss + m.token_itm_weight * word_loss
        if located is not None:  # which cell each named object lies in
            self._last |= {"grounding_loss": located[0].item(), "grounding_accuracy": located[1].item()}
            loss = loss + m.grounding_weight * located[0]
        if m.contrastive_weight > 0:  # FLAVA: the unimodal encodings of the true pairs
            core = self.model  # parameters read outside forward come from the unwrapped model
            images = core.encode_images(pixels)
            texts = core.encode_texts(batch["input_ids"][:b], batch["attention_mask"][:b])
            contrastive = clip_loss(images, texts, core.scale())
            self._last["contrastive_loss"] = contrastive.item()
            loss = loss + m.contrastive_weight * contrastive
        return loss

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["pixel_values"].shape[0]

    def log_extras(self) -> dict[str, float]:
        return dict(getattr(self, "_last", {}))


@dataclass
class ClassificationObjective:
    """Fine-tuning the classifier over the fused [CLS] (`model.objective: classify`): binary
    cross-entropy of its logit against each sample's "label" (0 / 1), the pair being the sample's
    image and its first caption (a meme's text).

    Batches: pixel_values float[B, 3, H, W]; input_ids, attention_mask int64[B, T]; labels float[B]."""

    model: FusionEncoder

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        for _, s in samples:
            if s.get("label") not in (0, 1):
                raise ValueError(
                    f"sample {s.get('key', '?')}: label {s.get('label')!r}; classification fine-tuning "
                    "needs labels 0 / 1 (a hateful-memes data source)"
                )
        enc = tokenize(self.model, [s["captions"][0] for _, s in samples])  # (B, T)
        pixel_values = self.model.preprocess([s["image"] for _, s in samples])  # (B, 3, H, W)
        labels = torch.tensor([float(s["label"]) for _, s in samples])
        return enc | {"pixel_values": pixel_values, "labels": labels}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(
            batch["pixel_values"], batch["input_ids"], batch["attention_mask"], classify=True
        )  # (B,)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        self._last = {"accuracy": float(((logits > 0).float() == batch["labels"]).float().mean())}
        return loss

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["pixel_values"].shape[0]

    def log_extras(self) -> dict[str, float]:
        return dict(getattr(self, "_last", {}))
