"""The generative objective: samples → chat-formatted token sequences with image tokens and
assistant-only labels → the language-model loss.

A sample with "messages" (conversation files) trains on them as they are; any other sample
becomes a short conversation from what it has, chosen by `vlm.tasks`: a caption
("Describe the image in one sentence." → one of its captions) or up to `MAX_QA_TURNS` question
turns from its QA pairs (scenes), each answered with a word or a number.

The loss covers the assistant turns only (end-of-turn token included). A sequence longer than
`vlm.max_length` is cut from the end; a cut that would reach the image tokens, or leave no
answer token, is an error naming the sample: training on nothing is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vlkit.data.conversations import CAPTION_PROMPT, IMAGE_PLACEHOLDER, check_messages, vqa_prompt
from vlkit.models.language_models import CHATML
from vlkit.models.vlm import GenerativeVLM
from vlkit.train.grounding import IGNORE, grounding_targets, pad_targets

MAX_QA_TURNS = 6
_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # made-up words (`noisy_question`)


def sample_messages(
    sample: dict,
    tasks: list[str],
    rng: np.random.Generator,
    question_noise: float = 0.0,
    short_answer_once: bool = False,
) -> list[dict]:
    """The conversation one training sample stands for (see the module docstring); each question
    through `noisy_question` when `question_noise` > 0, and the short-answer instruction after
    every question, or after the first only (`short_answer_once`, `vlm.short_answer_once`)."""
    if sample.get("messages"):
        return sample["messages"]
    options = [
        t for t in tasks if (t == "vqa" and sample.get("qa")) or (t == "caption" and sample["captions"])
    ]
    if not options:
        raise ValueError(
            f"sample {sample.get('key')!r}: has nothing for vlm.tasks={tasks} (no captions / qa)"
        )
    if options[rng.integers(len(options))] == "caption":
        caption = sample["captions"][rng.integers(len(sample["captions"]))]
        return [
            {"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{CAPTION_PROMPT}"},
            {"role": "assistant", "content": caption},
        ]
    qa = sample["qa"]
    picks = rng.permutation(len(qa))[:MAX_QA_TURNS]
    messages = []
    for n, k in enumerate(picks):
        prefix = f"{IMAGE_PLACEHOLDER}\n" if n == 0 else ""
        question = qa[k]["question"]
        if question_noise > 0:
            question = noisy_question(question, question_noise, rng)
        if n == 0 or not short_answer_once:
            question = vqa_prompt(question)
        messages.append({"role": "user", "content": prefix + question})
        messages.append({"role": "assistant", "content": qa[k]["answer"]})
    return messages


def noisy_question(question: str, rate: float, rng: np.random.Generator) -> str:
    """`question` with a made-up word (3-8 random lowercase letters) put before each of its words
    with chance `rate` (`vlm.question_noise`); the words themselves are kept, in order."""
    words = []
    for word in question.split(" "):
        if rng.random() < rate:
            words.append("".join(rng.choice(list(_LETTERS), size=int(rng.integers(3, 9)))))
        words.append(word)
    return " ".join(words)


def render_segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """The chat-template text cut into (text, is_answer) pieces: each assistant reply (with its
    end-of-turn marker) is an answer piece, everything before it a prompt piece."""
    if getattr(tokenizer, "chat_template", None) == CHATML:
        return chatml_segments(messages)
    return template_segments(tokenizer, messages)


def chatml_segments(messages: list[dict]) -> list[tuple[str, bool]]:
    """`render_segments` for vlkit's own template (`CHATML`), written out: rendering each prefix
    of a conversation through jinja (`template_segments`) took ~60% of a batch's collate."""
    segments, prompt = [], ""
    for message in messages:
        if message["role"] == "assistant":
            segments += [
                (prompt + "<|im_start|>assistant\n", False),
                (message["content"] + "<|im_end|>\n", True),
            ]
            prompt = ""
        else:
            prompt += f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
    return segments


def template_segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """`render_segments` through the tokenizer's chat template, one prefix at a time."""
    segments, done = [], ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = tokenizer.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[: k + 1], tokenize=False)
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError("the tokenizer's chat template does not render conversations prefix by prefix")
        segments += [(head[len(done) :], False), (full[len(head) :], True)]
        done = full
    return segments


def encode_conversations(
    tokenizer, conversations: list[list[dict]], image_tokens: int, max_length: int, wheres: list[str]
) -> list[tuple[list[int], list[int]]]:
    """Each conversation → (input_ids, labels) as `encode_conversation`; every piece of every
    conversation goes through the tokenizer in one call (a call per piece took a third of a
    batch's collate)."""
    segments = [render_segments(tokenizer, messages) for messages in conversations]
    texts = [text for pieces in segments for text, _ in pieces]
    encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    return [
        conversation_ids(tokenizer, [(next(encoded), a) for _, a in pieces], image_tokens, max_length, where)
        for pieces, where in zip(segments, wheres, strict=True)
    ]


def encode_conversation(
    tokenizer, messages: list[dict], image_tokens: int, max_length: int, where: str
) -> tuple[list[int], list[int]]:
    """→ (input_ids, labels): `<image>` expanded to `image_tokens` ids, prompts labelled IGNORE."""
    return encode_conversations(tokenizer, [messages], image_tokens, max_length, [where])[0]


def conversation_ids(
    tokenizer, pieces: list[tuple[list[int], bool]], image_tokens: int, max_length: int, where: str
) -> tuple[list[int], list[int]]:
    """A conversation's tokenized (ids, is_answer) pieces → (input_ids, labels), checked."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    ids: list[int] = []
    labels: list[int] = []
    for piece, is_answer in pieces:
        expanded = [t for i in piece for t in ([i] * image_tokens if i == image_id else [i])]
        ids += expanded
        labels += expanded if is_answer else [IGNORE] * len(expanded)
    positions = [p for p, t in enumerate(ids) if t == image_id]
    if len(positions) != image_tokens:
        raise ValueError(
            f"{where}: expected one {IMAGE_PLACEHOLDER} in the prompt, found {len(positions) // image_tokens}"
        )
    if len(ids) > max_length:
        if positions[-1] >= max_length:
            raise ValueError(
                f"{where}: the image tokens end at position {positions[-1] + 1}, beyond vlm.max_length="
                f"{max_length}; truncation never cuts image tokens: raise vlm.max_length"
            )
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        raise ValueError(
            f"{where}: no answer tokens left to train on (sequence of {len(ids)} tokens, "
            f"vlm.max_length={max_length}); raise vlm.max_length or shorten the prompt"
        )
    return ids, labels


# `vlm.fixed_shapes`: passes padded to a multiple of this many tokens (with groups of equal row
# counts, a batch of 64 rows at the staged recipe's lengths runs as a few dozen distinct shapes)
SHAPE_MULTIPLE = 16


def fixed_width(longest: int, multiple: int, limit: int) -> int:
    """A pass's width: `longest` rounded up to a multiple of `multiple`, never past `limit` (the
    model's `max_length`) unless `longest` is."""
    return max(longest, min(-(-longest // multiple) * multiple, limit))


def pad_batch(
    sequences: list[list[int]], labels: list[list[int]], pad_id: int, width: int = 0
) -> dict[str, torch.Tensor]:
    """Right-pads to the longest sequence (or to `width`, if wider) → input_ids, attention_mask,
    labels: int64[B, T]."""
    width = max(width, *(len(s) for s in sequences))
    batch = {
        "input_ids": torch.full((len(sequences), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(sequences), width), dtype=torch.long),
        "labels": torch.full((len(sequences), width), IGNORE, dtype=torch.long),
    }
    for row, (s, lab) in enumerate(zip(sequences, labels)):
        batch["input_ids"][row, : len(s)] = torch.tensor(s)
        batch["attention_mask"][row, : len(s)] = 1
        batch["labels"][row, : len(lab)] = torch.tensor(lab)
    return batch


def processes() -> int:
    """The processes of this distributed run (1 without one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def answer_tokens_per_process(labels: torch.Tensor) -> torch.Tensor:
    """The global batch's predicted answer tokens (labels shifted by one, as the LM's loss reads
    them) over the process count: each process's loss is its tokens' loss sum over this, so the
    mean over processes (what DDP / FSDP average gradients by) is the global token mean, whatever
    each process holds; one process: its own count, the plain mean."""
    count = (labels[:, 1:] != IGNORE).sum().to(torch.float32)
    if processes() > 1:
        torch.distributed.all_reduce(count)
        count = count / processes()
    return count


def length_groups(lengths: list[int], groups: int) -> list[list[int]]:
    """Rows (indices into `lengths`) in exactly min(`groups`, rows) groups of similar length,
    longest first, whose padded area (each group's rows x its longest row) is the least: an exact
    dynamic programme over the rows sorted by length (a batch is tens of rows). Exactly: every
    process of a distributed run must run as many passes (their forwards hold collectives)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    ls = [lengths[i] for i in order]
    n, groups = len(ls), min(groups, len(ls))
    # best[g][i]: least area of rows i.. in exactly g groups; cut[g][i]: where its first group ends
    best = [[float("inf")] * (n + 1) for _ in range(groups + 1)]
    cut = [[n] * (n + 1) for _ in range(groups + 1)]
    best[0][n] = 0
    for g in range(1, groups + 1):
        for i in range(n - g, -1, -1):
            for j in range(i + 1, n - g + 2):
                area = ls[i] * (j - i) + best[g - 1][j]
                if area < best[g][i]:
                    best[g][i], cut[g][i] = area, j
    rows, i = [], 0
    for g in range(groups, 0, -1):
        rows.append(order[i : cut[g][i]])
        i = cut[g][i]
    return rows


def equal_groups(lengths: list[int], groups: int) -> list[list[int]]:
    """Rows (indices into `lengths`) sorted longest first, in exactly min(`groups`, rows) groups of
    ceil(rows / groups) rows, the last one the rest (64 rows in 3: 22, 22, 20); where that would
    leave a group empty (4 rows in 3), row counts that differ by one (2, 1, 1). `vlm.fixed_shapes`'
    grouping: its passes' shapes repeat from batch to batch where `length_groups`' least-padding
    cuts vary. Exactly, as `length_groups`: every process of a distributed run runs as many passes."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n, groups = len(order), min(groups, len(order))
    size = -(-n // groups)
    if size * (groups - 1) < n:
        ends = [min(k * size, n) for k in range(groups + 1)]
    else:
        ends = [k * (n // groups) + min(k, n % groups) for k in range(groups + 1)]
    return [order[ends[k] : ends[k + 1]] for k in range(groups)]


def same_on_every_process(value: int, device: torch.device) -> int:
    """The least of `value` over the processes of a distributed run (itself in one process);
    `device`: where the process group's tensors live (the batch's)."""
    if processes() == 1:
        return value
    least = torch.tensor(value, device=device)
    torch.distributed.all_reduce(least, op=torch.distributed.ReduceOp.MIN)
    return int(least)


def split_by_length(
    batch: dict[str, torch.Tensor], groups: int, multiple: int = 1
) -> list[dict[str, torch.Tensor]]:
    """A right-padded batch (every tensor one row per sample) → min(`groups`, rows) batches of rows
    of similar length, the token tensors cut to each one's longest row: `length_groups`' cuts; with
    `multiple` > 1, `equal_groups`' cuts and widths rounded up to a multiple of it (within the
    batch's width: `vlm.fixed_shapes`)."""
    lengths = batch["attention_mask"].sum(1)
    cut = equal_groups if multiple > 1 else length_groups
    parts = []
    for rows in cut(lengths.tolist(), groups):
        index = torch.tensor(rows, device=lengths.device)
        width = fixed_width(int(lengths[index].max()), multiple, batch["input_ids"].shape[1])
        part = {k: v[index] for k, v in batch.items()}
        parts.append(part | {k: part[k][:, :width] for k in ("input_ids", "attention_mask", "labels")})
    return parts


@dataclass
class GenerativeObjective:
    """Next-token loss on assistant tokens, for every generative strategy."""

    model: GenerativeVLM
    seed: int = 0
    feature_cache: object | None = None  # a FeatureCache when the vision tower is frozen
    shape_multiple: int = 1  # `vlm.fixed_shapes` resolved: SHAPE_MULTIPLE, or 1 (no rounding)
    _grounding: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def collate(self, samples: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("an empty batch: every sample of this step was unreadable")
        m, cfg = self.model, self.model.cfg
        conversations, wheres = [], []
        for position, sample in samples:
            rng = np.random.default_rng([self.seed, position])
            messages = sample_messages(sample, cfg.tasks, rng, cfg.question_noise, cfg.short_answer_once)
            wheres.append(f"sample {sample.get('key', position)!r}")
            check_messages(messages, wheres[-1])
            conversations.append(messages)
        encoded = encode_conversations(m.tokenizer, conversations, m.image_tokens, cfg.max_length, wheres)
        sequences, labels = [ids for ids, _ in encoded], [lab for _, lab in encoded]
        images = [sample["image"] for _, sample in samples]
        longest = max(len(ids) for ids in sequences)
        width = fixed_width(longest, self.shape_multiple, cfg.max_length)
        batch = pad_batch(sequences, labels, m.tokenizer.pad_token_id, width)
        if cfg.grounding_weight > 0:
            regions = [sample.get("object_regions") or {} for _, sample in samples]
            batch |= pad_targets(
                [grounding_targets(m.tokenizer, ids, r) for ids, r in zip(sequences, regions)]
            )
        if self.feature_cache is not None:
            batch["vision_grid"] = self.feature_cache.get_or_compute(images, self._grid)
        else:
            batch["pixel_values"] = m.vision.preprocess(images)  # (B, 3, H, W)
        return batch

    def _grid(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.model.vision_grid(self.model.vision.preprocess(images))

    def parts(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The forward/backward passes one batch runs as (`vlm.length_groups`, `split_by_length`):
        each part's loss is its answer tokens' loss sum over the whole batch's count, so the
        parts' gradients add up to the batch's. A batch with grounding targets stays whole (the
        head's loss is a mean over its own targets)."""
        if self.model.cfg.length_groups <= 1 or "grounding_labels" in batch:
            return [batch]
        # every process runs as many passes (under DDP / FSDP each forward holds collectives)
        rows = batch["input_ids"]
        groups = same_on_every_process(min(self.model.cfg.length_groups, rows.shape[0]), rows.device)
        count = answer_tokens_per_process(batch["labels"])
        parts = split_by_length(batch, groups, self.shape_multiple)
        return [part | {"num_items_in_batch": count} for part in parts]

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A batch or one of its `parts` (which carries the whole batch's `num_items_in_batch`)."""
        if not (batch["labels"] != IGNORE).any():
            raise ValueError("a batch whose labels are all masked: nothing to train on")
        if "num_items_in_batch" not in batch:  # a collective under DDP: once per batch, never per part
            batch = batch | {"num_items_in_batch": answer_tokens_per_process(batch["labels"])}
        out = model(**batch)
        if "grounding_labels" in batch:
            self._grounding = (float(out.grounding_loss), float(out.grounding_accuracy))
        return out.loss

    @staticmethod
    def batch_size(batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0]

    def log_extras(self) -> dict[str, float]:
        """`vlm.grounding_weight`: the last step's grounding loss and accuracy (cell named right)."""
        if self._grounding is None:
            return {}
        return {"grounding_loss": self._grounding[0], "grounding_accuracy": self._grounding[1]}
