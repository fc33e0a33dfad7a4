"""Python API for trained dual encoders: `vlkit.load(path)` → embed, classify, index, search;
for open-vocabulary detectors (`DetectorModel`: detect, ground) and text-prompted segmenters
(`SegmenterModel`: segment). A transformers folder loads as its `vlkit.models.hf_models` wrapper,
which has the same task methods.

Images may be file paths, PIL images or uint8 arrays [H, W, 3]. A file that cannot be read is
an `ImageError` naming it; with `strict=False` (what the batch commands use) it is skipped and
reported instead (`Classification.failures`, `index_files`' failures.jsonl), never silently.
Label sets are embedded once and
cached, and images are embedded in batches: the two things that make zero-shot classification
fast compared with calling a pipeline per image. Batches of 32 measured faster than 128 on the
2-core CPUs here (benchmarks/zero_shot_throughput.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlkit.config import DEFAULT_TEMPLATES, Config
from vlkit.data.images import ImageError, ImageInput, as_array, read_images, require_readable
from vlkit.models.boxes import cxcywh_to_xyxy
from vlkit.models.build import load_model
from vlkit.models.detector import OpenVocabDetector
from vlkit.models.dual_encoder import DualEncoder
from vlkit.models.folders import resolve_model_dir
from vlkit.models.fusion import FusionEncoder
from vlkit.models.hf_models import is_transformers, load_transformers
from vlkit.models.kinds import can_stand_in, model_kind, per_kind
from vlkit.models.predictions import Classification, Detections, ImageSearch, MatchReranking
from vlkit.models.segmenter import TextPromptedSegmenter
from vlkit.models.towers import tokenize


class ContrastiveModel(ImageSearch):
    """A loaded dual encoder with inference helpers (see `load`); index and search are
    `ImageSearch`'s."""

    def __init__(self, model: DualEncoder, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path
        self._label_cache: dict[tuple, torch.Tensor] = {}

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many text tokens (padding aside) the model reads of `texts` (what /v1/embeddings bills)."""
        return int(tokenize(self.model.text_tower, list(texts))["attention_mask"].sum())

    # ------------------------------------------------------------------ embeddings
    def embed_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """→ unit vectors float32[N, E]; an unreadable image raises its `ImageError`."""
        return self.embed_readable(images, batch_size, strict=True)[0]

    @torch.inference_mode()
    def embed_readable(
        self, images: Sequence[ImageInput], batch_size: int = 32, strict: bool = False
    ) -> tuple[np.ndarray, list[int], list[ImageError]]:
        """→ (unit vectors float32[M, E] of the readable images, their M input positions, the
        errors of the others). strict: the first unreadable image raises instead. Images are
        decoded one batch at a time, so a folder of any size fits in memory."""
        out, rows, failures = [], [], []
        for start in range(0, len(images), batch_size):
            chunk, positions, errors = read_images(images[start : start + batch_size], strict)
            failures += errors
            rows += [start + p for p in positions]
            if chunk:
                out.append(self.model.encode_images(self.model.image_tower.preprocess(chunk)))
        empty = np.zeros((0, self.model.embed_dim), np.float32)
        return (torch.cat(out).float().numpy() if out else empty), rows, failures

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """→ unit vectors float32[N, E]."""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = tokenize(self.model.text_tower, list(texts[start : start + batch_size]))
            out.append(self.model.encode_texts(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(out).float().numpy() if out else np.zeros((0, self.model.embed_dim), np.float32)

    def label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> np.ndarray:
        """Per label, the mean of its normalised template embeddings, renormalised (CLIP's ensembling)."""
        key = (tuple(labels), tuple(templates))
        if key not in self._label_cache:
            for t in templates:
                if "{}" not in t:
                    raise ValueError(f"template {t!r} has no '{{}}' where the label goes")
            texts = [t.format(label) for label in labels for t in templates]
            emb = torch.from_numpy(self.embed_texts(texts)).view(len(labels), len(templates), -1)
            self._label_cache[key] = torch.nn.functional.normalize(emb.mean(1), dim=-1)
        return self._label_cache[key].numpy()

    def scale(self) -> float:
        """The logit scale (1 / temperature) that turns cosines into the model's logits."""
        return self.model.scale().item()

    # ------------------------------------------------------------------ tasks
    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 32,
        strict: bool = True,
    ) -> Classification:
        """strict=False: unreadable images are skipped; `rows` says which input each row is and
        `failures` lists the rest (a ValueError when none can be read)."""
        if not labels:
            raise ValueError("classify needs at least one label")
        label_emb = self.label_embeddings(labels, templates)  # (C, E)
        image_emb, rows, failures = self.embed_readable(images, batch_size, strict)  # (N, E)
        require_readable(len(images), failures)
        logits = torch.from_numpy(image_emb @ label_emb.T) * self.scale()
        return Classification(list(labels), logits.softmax(-1).numpy(), logits.numpy(), rows, failures)


class DetectorModel:
    """A loaded open-vocabulary detector (see `load`): any phrases are the classes.

    Boxes are in the input image's pixels; an image that is not square is centre-cropped by the
    tower's preprocessing, and its boxes are then relative to that crop's scale."""

    def __init__(self, model: OpenVocabDetector, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path

    def _encode(self, images: Sequence[ImageInput], texts: Sequence[str]) -> tuple:
        """→ (patch tokens float[N, P, D], unit text embeddings float[T, E], boxes float[N, P, 4]
        (x1, y1, x2, y2) pixels)."""
        arrays = [as_array(im) for im in images]
        enc = tokenize(self.model.clip.text_tower, list(texts))
        text_emb = self.model.encode_queries(enc["input_ids"], enc["attention_mask"])  # (T, E)
        tokens = self.model.image_tokens(self.model.clip.image_tower.preprocess(arrays))  # (N, P, D)
        boxes = cxcywh_to_xyxy(self.model.boxes(tokens)).clamp(0, 1).float().numpy()
        sizes = np.array([[a.shape[1], a.shape[0], a.shape[1], a.shape[0]] for a in arrays], np.float32)
        return tokens, text_emb, boxes * sizes[:, None, :]

    @torch.inference_mode()
    def predict(self, images: Sequence[ImageInput], queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """→ (scores float[N, P, Q]: every patch's probability for every query, boxes float[N, P, 4]
        (x1, y1, x2, y2) pixels), P the patch tokens."""
        if not queries:
            raise ValueError("detection needs at least one query phrase")
        tokens, query_emb, boxes = self._encode(images, queries)
        return self.model.class_logits(tokens, query_emb).sigmoid().float().numpy(), boxes

    def detect(self, image: ImageInput, queries: Sequence[str], threshold: float | None = None) -> Detections:
        """Each patch's best query, kept when its score passes `threshold` (default:
        `detector.score_threshold`), best first (OWL-ViT's post-processing: no NMS)."""
        threshold = self.cfg.detector.score_threshold if threshold is None else threshold
        scores, boxes = self.predict([image], queries)
        best, label = scores[0].max(-1), scores[0].argmax(-1)  # (P,)
        keep = np.flatnonzero(best > threshold)
        keep = keep[np.argsort(-best[keep], kind="stable")]
        return Detections(boxes[0][keep], [queries[i] for i in label[keep]], best[keep])

    @torch.inference_mode()
    def ground(self, image, phrase):
        """The best box (x1, y1, x2, y2 pixels) for `phrase` in `image`; given lists of images and
        phrases (the harness's grounding protocol), one box per pair, in one batch."""
        if isinstance(phrase, str):
            return self.ground([image], [phrase])[0]
        if len(image) != len(phrase):
            raise ValueError(
                f"ground: {len(image)} images but {len(phrase)} phrases; give one phrase per image"
            )
        tokens, phrase_emb, boxes = self._encode(image, phrase)
        logits = self.model.class_logits(tokens, phrase_emb[:, None, :])[
            ..., 0
        ]  # (N, P): each its own phrase
        best = logits.argmax(1).numpy()
        return [[float(v) for v in boxes[n, p]] for n, p in enumerate(best)]


class SegmenterModel:
    """A loaded text-prompted segmenter (see `load`): any phrase is a prompt.

    Masks are in the input image's pixels; an image that is not square is centre-cropped by the
    tower's preprocessing, and the pixels outside that crop are outside every mask."""

    def __init__(self, model: TextPromptedSegmenter, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path

    @torch.inference_mode()
    def mask_probabilities(self, images: Sequence[ImageInput], prompts: Sequence[str]) -> list[np.ndarray]:
        """One prompt per image → each pixel's probability of being what its prompt names,
        float[H, W] per image at its own size."""
        if len(images) != len(prompts):
            raise ValueError(
                f"segment: {len(images)} images but {len(prompts)} prompts; give one prompt per image"
            )
        arrays = [as_array(im) for im in images]
        enc = tokenize(self.model.clip.text_tower, list(prompts))
        pixels = self.model.clip.image_tower.preprocess(arrays)
        probs = self.model(pixels, enc["input_ids"], enc["attention_mask"]).sigmoid().float()  # (N, S, S)
        return [_uncrop(p, a.shape[:2]) for p, a in zip(probs, arrays)]

    def segment(self, image, prompt, threshold: float | None = None):
        """The mask (bool[H, W]) of what `prompt` names in `image`: pixels whose probability passes
        `threshold` (default `segmenter.mask_threshold`). Given lists of images and prompts (the
        harness's protocol), one mask per pair, in one batch."""
        threshold = self.cfg.segmenter.mask_threshold if threshold is None else threshold
        if isinstance(prompt, str):
            return self.segment([image], [prompt], threshold)[0]
        return [p > threshold for p in self.mask_probabilities(image, prompt)]

    @torch.inference_mode()
    def clip_similarity_masks(self, images: Sequence[ImageInput], prompts: Sequence[str]) -> list[np.ndarray]:
        """The baseline without the decoder (MaskCLIP-style): each patch token of the CLIP alone,
        through its post-layernorm and visual projection, compared with the prompt's embedding;
        the cosines scaled to [0, 1] per image and kept above 0.5, patch by patch. bool[H, W] each."""
        clip = self.model.clip
        arrays = [as_array(im) for im in images]
        enc = tokenize(clip.text_tower, list(prompts))
        tower = clip.image_tower.model
        tokens = tower(pixel_values=clip.image_tower.preprocess(arrays)).last_hidden_state[:, 1:]  # (N, P, D)
        patches = F.normalize(clip.visual_projection(tower.post_layernorm(tokens)), dim=-1)
        texts = clip.encode_texts(enc["input_ids"], enc["attention_mask"])  # (N, E)
        sims = torch.einsum("npe,ne->np", patches, texts)
        low, high = sims.min(1, keepdim=True).values, sims.max(1, keepdim=True).values
        scaled = (sims - low) / (high - low).clamp(min=1e-8)
        side = int(round(scaled.shape[1] ** 0.5))
        size = tower.config.image_size
        grid = F.interpolate(scaled.view(-1, 1, side, side), size=(size, size), mode="nearest")[:, 0]
        return [_uncrop(g, a.shape[:2]) > 0.5 for g, a in zip(grid, arrays)]


def _uncrop(square: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """A map over the preprocessing's centre crop, float[S, S] → float[H, W] over the whole image
    (0 outside the crop)."""
    h, w = shape
    side = min(h, w)
    inside = F.interpolate(square[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    out = np.zeros((h, w), dtype=np.float32)
    top, left = (h - side) // 2, (w - side) // 2
    out[top : top + side, left : left + side] = inside.numpy()
    return out


class TrainingFreeModel(ContrastiveModel):
    """A training-free model (ASIF, ConSE; `vlkit.models.training_free`): a `ContrastiveModel` in
    every use, which also says which method joined its encoders."""

    @property
    def method(self) -> str:
        return self.cfg.model.method


class FusionModel(MatchReranking):
    """A loaded fusion encoder (ViLT; see `load`): scores image-text pairs together (ITM) and
    fills masked words in a caption from the image (MLM)."""

    MASK = "[MASK]"  # how a caller marks a blank (BERT's spelling); the tokenizer's own works too

    def __init__(self, model: FusionEncoder, cfg: Config, path: Path | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.path = path

    def _pairs(self, images: Sequence[ImageInput], texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts: give one text per image")
        texts = [t.replace(self.MASK, self.model.tokenizer.mask_token) for t in texts]
        pixels = self.model.preprocess([as_array(im) for im in images])  # (N, 3, H, W)
        return tokenize(self.model, texts) | {"pixel_values": pixels}

    @torch.inference_mode()
    def match(self, images: Sequence[ImageInput], texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """ITM logits float32[N] of the pairs (image n, text n); > 0: the model says they match."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self._pairs(images[start : start + batch_size], texts[start : start + batch_size])
            out.append(self.model.match(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]))
        return torch.cat(out).float().numpy() if out else np.zeros(0, np.float32)

    @torch.inference_mode()
    def classify(
        self, images: Sequence[ImageInput], texts: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """The fine-tuned classifier's logits float32[N] of the pairs (image n, text n); > 0:
        label 1 (hateful, or in the scenes task: the text describes the image). A model without a
        classification head (pre-trained only) says how to fine-tune one."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self._pairs(images[start : start + batch_size], texts[start : start + batch_size])
            out.append(
                self.model.classify(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
            )
        return torch.cat(out).float().numpy() if out else np.zeros(0, np.float32)

    def _choice_ids(self, choices: Sequence[str], what: str) -> list[int]:
        tk = self.model.tokenizer
        allowed = [tk.convert_tokens_to_ids(c.lower()) for c in choices]
        if any(i == tk.unk_token_id for i in allowed):
            raise ValueError(f"{what} choices {list(choices)}: each must be one token of the tokenizer")
        return allowed

    def _blank_logits(self, images: Sequence[ImageInput], texts: Sequence[str], what: str) -> list:
        """Per pair, the MLM head's logits at each of the text's blanks float[blanks, V]."""
        batch = self._pairs(images, texts)
        logits = self.model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).mlm
        out = []
        for text, row, ids in zip(texts, logits, batch["input_ids"]):
            where = (ids == self.model.tokenizer.mask_token_id).nonzero()[:, 0]
            if not len(where):
                raise ValueError(f"{what}: a text has no {self.MASK}: {text!r}")
            out.append(row[where])
        return out

    @torch.inference_mode()
    def fill_mask(
        self, images: Sequence[ImageInput], texts: Sequence[str], choices: Sequence[str] = ()
    ) -> list[str]:
        """Per pair, the word for the text's (first) `[MASK]` (one token) given the image: the MLM
        head's best token, or the best of `choices` (single-token words) when given."""
        allowed = self._choice_ids(choices, "fill_mask")
        answers = []
        for rows in self._blank_logits(images, texts, "fill_mask"):
            scores = rows[0]  # (V,)
            best = allowed[int(scores[allowed].argmax())] if allowed else int(scores.argmax())
            answers.append(self.model.tokenizer.convert_ids_to_tokens(best))
        return answers

    @torch.inference_mode()
    def blank_log_probs(
        self, images: Sequence[ImageInput], texts: Sequence[str], choices: Sequence[str]
    ) -> list[np.ndarray]:
        """Per pair, float32[blanks, len(choices)]: at each of the text's `[MASK]`s in order, the
        MLM head's log-probability of each choice (single-token words), normalised over the choices."""
        allowed = self._choice_ids(choices, "blank_log_probs")
        rows = self._blank_logits(images, texts, "blank_log_probs")
        return [torch.log_softmax(r[:, allowed].float(), -1).numpy() for r in rows]


def _generative(model: torch.nn.Module, cfg: Config, path: Path):
    from vlkit.generation import GenerativeModel  # imported when needed: `vlkit classify` starts faster

    return GenerativeModel(model, cfg, path)


# model kind → its user-facing wrapper (`vlkit.models.kinds` has the models floor's table)
WRAPPERS = per_kind(
    "user-facing models",
    {
        "contrastive": ContrastiveModel,
        "generative": _generative,
        "detector": DetectorModel,
        "segmenter": SegmenterModel,
        "training-free": TrainingFreeModel,
        "fusion": FusionModel,
    },
)
# model kind → what it is for, in a user's words (errors that refuse the wrong kind say it)
USES = per_kind(
    "uses",
    {
        "contrastive": "a dual encoder (CLIP, SigLIP, LiT): vlkit classify, index, search",
        "generative": "a VLM that writes text: vlkit caption, ask, chat",
        "detector": "an open-vocabulary detector (OWL-ViT): vlkit detect, model.detect and model.ground",
        "segmenter": "a text-prompted segmenter (CLIPSeg): vlkit segment, model.segment",
        "training-free": "frozen encoders joined without training (ASIF, ConSE): what a dual encoder does",
        "fusion": "a fusion encoder (ViLT, FLAVA): model.match (image-text matching) and model.fill_mask",
    },
)


def load(
    path: str | Path, kind: str | None = None, command: str = "", needs: str = "", max_new_tokens: int = 16
):
    """Loads a trained vlkit model from a model/checkpoint folder or a run folder: a
    `ContrastiveModel` (embed, classify, search), a `vlkit.generation.GenerativeModel`
    (caption, answer, chat), a `DetectorModel` (detect, ground) or a `SegmenterModel` (segment),
    by the model's kind; a transformers folder (config.json, no config.yaml) or a hub id in the
    local cache → its `vlkit.models.hf_models` wrapper, which has the same task methods.
    `kind`: the kind the caller (`command`, a `vlkit` command's name) needs; a model that cannot
    do what that kind does (`kinds.can_stand_in`: a training-free model can for a contrastive one)
    is a ValueError saying what each kind is for. `needs`: the method the caller will call
    (`vlkit caption` needs `caption`, which a VQA classifier lacks). `max_new_tokens`: a
    transformers generative model's reply length (vlkit's own take a `Decoding` per call)."""
    if is_transformers(path):
        model = load_transformers(path, max_new_tokens)
        if kind is not None and not all(hasattr(model, a) for a in model_kind(kind).abilities):
            _refuse(model, path, command, f"stand in for a {kind} model, {USES[kind]}")
    else:
        folder = resolve_model_dir(path)
        net, cfg = load_model(folder)
        if kind is not None and not can_stand_in(cfg.kind, kind):
            what = command or "the caller"
            raise ValueError(
                f"vlkit {command or 'load'}: {path} is a {cfg.kind} model; {what} needs a {kind} one, "
                f"{USES[kind]}. This model is {USES[cfg.kind]}"
            )
        model = WRAPPERS[cfg.kind](net, cfg, folder)
    if needs and not hasattr(model, needs):
        _refuse(model, path, command, needs)
    return model


# the task methods an error lists when it says what a model can do instead
TASK_METHODS = ("classify", "embed_images", "index_files", "answer", "caption", "detect", "ground", "segment")
TASK_METHODS += ("itm", "match", "rerank", "fill_mask")


def _refuse(model, path: str | Path, command: str, cannot: str) -> None:
    """A ValueError: the model (a transformers one by its class) cannot do `cannot`; what it can."""
    if hasattr(model, "architecture"):
        source = f"a transformers {model.architecture} ({type(model).__name__})"
    else:
        source = f"a {model.cfg.kind} model ({type(model).__name__})"
    can = ", ".join(m for m in TASK_METHODS if hasattr(model, m))
    raise ValueError(f"vlkit {command or 'load'}: {path} is {source}, which cannot {cannot}; it can: {can}")
