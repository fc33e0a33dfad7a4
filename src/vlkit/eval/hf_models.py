"""transformers models in the harness, so vlkit can score models it did not train.

- `HFContrastiveModel`: a CLIP / SigLIP folder or cached hub id, with the methods of
  `vlkit.api.ContrastiveModel` the harness uses (embed_images, embed_texts, label_embeddings,
  classify).
- `HFGenerativeModel`: any image-text-to-text model (LLaVA, BLIP-2, ...) through
  `AutoProcessor` + `AutoModelForImageTextToText`, with the generative protocol `answer` /
  `caption`: batched, greedy, only the new tokens decoded.
- `load_for_eval(path)`: a vlkit checkpoint or run folder, or one of the above.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlkit.config import DEFAULT_TEMPLATES

CONTRASTIVE_TYPES = ("clip", "siglip", "siglip2")
# LLaVA-1.5's own VQA instruction; captioning asks for one sentence.
SHORT_ANSWER = "Answer the question using a single word or phrase."
CAPTION_PROMPT = "Describe the image in one sentence."


def _pil(images: Sequence) -> list[Image.Image]:
    from vlkit.eval.embedded import as_arrays

    return [Image.fromarray(a) for a in as_arrays(list(images))]


class HFContrastiveModel:
    """A transformers CLIP / SigLIP model with vlkit's contrastive inference methods."""

    def __init__(self, path: str | Path):
        from transformers import AutoModel, AutoProcessor

        self.path = path
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.model_type = self.model.config.model_type
        self.max_length = self.model.config.text_config.max_position_embeddings
        self._label_cache: dict[tuple, np.ndarray] = {}

    @torch.inference_mode()
    def embed_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        """→ unit vectors float32[N, E]."""
        out = []
        for start in range(0, len(images), batch_size):
            pixels = self.processor(images=_pil(images[start : start + batch_size]), return_tensors="pt")
            feats = self.model.get_image_features(pixel_values=pixels["pixel_values"])
            out.append(getattr(feats, "pooler_output", feats))  # transformers 5: an output object
        return torch.nn.functional.normalize(torch.cat(out), dim=-1).float().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """→ unit vectors float32[N, E]. SigLIP was trained on max-length padding, so it gets it."""
        padding = "max_length" if self.model_type.startswith("siglip") else True
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.processor(
                text=list(texts[start : start + batch_size]),
                padding=padding,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            kwargs = {"attention_mask": enc["attention_mask"]} if "attention_mask" in enc else {}
            feats = self.model.get_text_features(input_ids=enc["input_ids"], **kwargs)
            out.append(getattr(feats, "pooler_output", feats))
        return torch.nn.functional.normalize(torch.cat(out), dim=-1).float().numpy()

    def label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> np.ndarray:
        """Per label, the renormalised mean of its template embeddings (CLIP's ensembling)."""
        key = (tuple(labels), tuple(templates))
        if key not in self._label_cache:
            emb = self.embed_texts([t.format(label) for label in labels for t in templates])
            emb = emb.reshape(len(labels), len(templates), -1).mean(1)
            self._label_cache[key] = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
        return self._label_cache[key]

    def classify(self, images: Sequence, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES):
        from vlkit.api import Classification

        logits = torch.from_numpy(self.embed_images(images) @ self.label_embeddings(labels, templates).T)
        logits = logits * self.model.logit_scale.exp().item()
        return Classification(list(labels), logits.softmax(-1).numpy(), logits.numpy())


class HFGenerativeModel:
    """An image-text-to-text model answering and captioning greedily, in batches."""

    def __init__(self, path: str | Path, max_new_tokens: int = 16, prompt_format: str | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.path = path
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path).eval()
        self.max_new_tokens = max_new_tokens
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
        self.prompt_format = prompt_format or self._default_format()

    def _default_format(self) -> str:
        """A prompt with `{text}` (and the image token where the model expects it in the text)."""
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "{text}"}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        if self.model.config.model_type in ("blip-2", "instructblip"):
            return "Question: {text} Answer:"  # the processor adds the query tokens itself
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"USER: {image_token}\n{{text}} ASSISTANT:"  # LLaVA-1.5

    @torch.inference_mode()
    def generate(self, images: Sequence, texts: Sequence[str]) -> list[str]:
        """One greedy completion per (image, text); only the generated tokens are decoded."""
        prompts = [self.prompt_format.replace("{text}", t) for t in texts]
        inputs = self.processor(images=_pil(images), text=prompts, padding=True, return_tensors="pt")
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]  # (B, T_new)
        return [s.strip() for s in self.processor.batch_decode(new, skip_special_tokens=True)]

    def answer(self, images: Sequence, questions: Sequence[str]) -> list[str]:
        return self.generate(images, [f"{q} {SHORT_ANSWER}" for q in questions])

    def caption(self, images: Sequence, prompt: str | None = None) -> list[str]:
        return self.generate(images, [prompt or CAPTION_PROMPT] * len(images))


def load_for_eval(path: str, max_new_tokens: int = 16):
    """A vlkit model/run folder → `vlkit.load`; a transformers folder or cached hub id → the
    contrastive or generative adapter by its config's model_type."""
    import vlkit

    folder = Path(path)
    if (folder / "config.yaml").is_file() or (folder.is_dir() and not (folder / "config.json").is_file()):
        return vlkit.load(folder)
    model_type = _model_type(path)
    if model_type in CONTRASTIVE_TYPES:
        return HFContrastiveModel(path)
    return HFGenerativeModel(path, max_new_tokens=max_new_tokens)


def _model_type(path: str) -> str:
    config = Path(path) / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model_type", "")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).model_type
    except OSError as err:
        raise FileNotFoundError(
            f"{path}: not a vlkit model or run folder, a transformers folder, or a hub id in the local cache ({err})"
        ) from err
