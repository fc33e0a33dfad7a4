"""Control for reworded questions, text only: can a small model tell from a question's words which
kind of answer it asks for, on wordings it never saw?

    python benchmarks/question_reading.py                  # four arms x three seeds (three arms: 36 min, one shared core)
    python benchmarks/question_reading.py --smoke          # tiny, seconds

The staged scenes VLM answers two hand-written held-out wordings with a colour ("Is a blue
triangle visible anywhere?" → "blue"; benchmarks/README.md, "Reworded existence questions"): it
misreads what is asked, before any looking. This asks the same of text alone, in seconds instead
of an hour of VLM training: from the question, which type of answer it wants (colour, shape,
count, existence, relation, position). Training questions are the VLM's (the scenes world with
`--wordings`, position questions on, as the staged recipe's mix); the score is on the held-out
scenes' template questions and on their hand-written rewordings (`vlkit.eval.paraphrase`, the
VQA evaluation's), overall and per wording, with the type each wording is read as.

The arms share one reader (a causal transformer, `--layers` x 128, read at the last token, as a
decoder answers) and differ only in how words enter it:

  scratch       vlkit's byte-level BPE trained on the training texts, embeddings learnt from zero
                (the from-scratch VLM's way)
  minilm-words  MiniLM's WordPiece tokenizer and its pretrained word-embedding table (frozen,
                projected to the width): words never seen in training still come with a meaning
  minilm-words-tuned  the same table as the start, trained with the reader (the words training
                uses move; the others keep their pretrained place)
  minilm        the whole pretrained MiniLM sentence encoder, frozen, and a linear head: what
                pretrained reading gives with no reader trained at all

Writes benchmarks/results/question_reading.json: per arm, mean ± sd over seeds of the template
and reworded accuracy, per-wording accuracy and the types each wording is read as, beside the
majority-type baseline.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results  # noqa: E402

from vlkit.data.scenes import Scenes, ScenesConfig  # noqa: E402
from vlkit.eval.embedded import held_out_scenes  # noqa: E402
from vlkit.eval.paraphrase import paraphrase, paraphrase_wording  # noqa: E402
from vlkit.models.language_models import train_chat_tokenizer  # noqa: E402
from vlkit.models.registry import minilm_l6_dir  # noqa: E402

ARMS = ("scratch", "minilm-words", "minilm-words-tuned", "minilm")
TYPES = ("color", "shape", "count", "existence", "relation", "position")
EVAL_SEED, EVAL_SCENES = 1_000_003, 128  # EvalConfig's held-out seed and the recipes' num_images


def training_set(scenes: int, wordings: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(question, type index) of `scenes` training scenes, and every text of them (for a tokenizer)."""
    world = Scenes(ScenesConfig(question_wordings=wordings, position_questions=True))
    pairs, texts = [], []
    for i in range(scenes):
        scene = world.scene(i)
        pairs += [(qa.question, TYPES.index(qa.type)) for qa in scene.qa]
        texts += [qa.question for qa in scene.qa] + [qa.answer for qa in scene.qa] + scene.captions
    return pairs, texts


def held_out_set() -> list[dict]:
    """The VQA evaluation's held-out questions, each with its reworded form and wording."""
    asked = held_out_scenes(64, 1, 3, EVAL_SEED, EVAL_SCENES).asked
    return [
        {"question": qa.question, "reworded": paraphrase(qa.question), "wording": paraphrase_wording(qa.question),
         "type": TYPES.index(qa.type)}
        for scene in asked for qa in scene.qa
    ]  # fmt: skip


class Reader(nn.Module):
    """Token vectors (any width) → projected, plus a learnt position → causal encoder → the
    last real token's state → type logits."""

    def __init__(self, embed: nn.Module, dim_in: int, width: int, layers: int, max_len: int = 64):
        super().__init__()
        self.embed, self.proj, self.pos = embed, nn.Linear(dim_in, width), nn.Embedding(max_len, width)
        layer = nn.TransformerEncoderLayer(
            width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, len(TYPES))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.proj(self.embed(ids)) + self.pos(torch.arange(t))  # (B, T, W)
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.encoder(x, mask=causal, is_causal=True)  # right padding never reaches real tokens
        return self.head(h[torch.arange(len(ids)), lengths - 1])  # (B, types)


@lru_cache(maxsize=1)
def minilm():
    """(WordPiece tokenizer, frozen MiniLM), loaded once for every arm and seed."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_l6_dir())), AutoModel.from_pretrained(
        str(minilm_l6_dir())
    )


@lru_cache(maxsize=1)
def scratch_tokenizer(texts: tuple[str, ...]):
    """The BPE of the scratch arm: deterministic, so trained once for every seed."""
    return train_chat_tokenizer(texts, vocab_size=1024, max_length=64)


def build_arm(arm: str, texts: list[str], width: int, layers: int):
    """→ (tokenizer, model) for a token arm; the minilm arm is `sentence_features` + a head."""
    if arm == "scratch":
        tok = scratch_tokenizer(tuple(texts))
        return tok, Reader(nn.Embedding(len(tok), width), width, width, layers)
    tok, model = minilm()
    table = model.embeddings.word_embeddings.weight.detach().clone()
    words = nn.Embedding.from_pretrained(table, freeze=arm == "minilm-words")
    return tok, Reader(words, words.embedding_dim, width, layers)


def encode(tok, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and lengths; WordPiece's [CLS]/[SEP] dropped so the last token is the '?'."""
    rows = [tok(q, add_special_tokens=False)["input_ids"] for q in questions]
    width = max(map(len, rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    return ids, torch.tensor([len(r) for r in rows])


@lru_cache(maxsize=1)
@torch.no_grad()
def sentence_features(questions: tuple[str, ...]) -> torch.Tensor:
    """Frozen MiniLM, masked mean pool (sentence-transformers' pooling), per question; computed
    once for every seed (the features do not depend on it)."""
    tok, model = minilm()
    out = []
    for start in range(0, len(questions), 256):
        batch = tok(questions[start : start + 256], padding=True, return_tensors="pt")
        h = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append((h * mask).sum(1) / mask.sum(1))
    return torch.cat(out)


def featurize(arm: str, tok, questions: list[str]):
    """A callable batch → logits input: ids and lengths, or pooled MiniLM features (cached)."""
    if arm == "minilm":
        unique = tuple(sorted(set(questions)))
        feats = dict(zip(unique, sentence_features(unique), strict=True))
        return lambda qs: (torch.stack([feats[q] for q in qs]),)
    return lambda qs: encode(tok, qs)


def train_arm(arm: str, seed: int, pairs, texts, held, args) -> dict:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if arm == "minilm":
        tok, model = None, nn.Linear(384, len(TYPES))
    else:
        tok, model = build_arm(arm, texts, args.width, args.layers)
    every = [q for q, _ in pairs] + [h["question"] for h in held] + [h["reworded"] for h in held]
    inputs = featurize(arm, tok, every)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    for _ in range(args.steps):
        batch = rng.sample(pairs, args.batch)
        logits = model(*inputs([q for q, _ in batch]))
        loss = nn.functional.cross_entropy(logits, torch.tensor([t for _, t in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return score(model, inputs, held) | {"final_loss": loss.item()}


@torch.no_grad()
def score(model, inputs, held: list[dict]) -> dict:
    """Template and reworded accuracy, and per wording: accuracy and the types it is read as."""
    model.eval()
    truth = torch.tensor([h["type"] for h in held])
    template = model(*inputs([h["question"] for h in held])).argmax(-1)
    reworded = model(*inputs([h["reworded"] for h in held])).argmax(-1)
    per_wording = {}
    for wording in sorted({h["wording"] for h in held}):
        rows = [i for i, h in enumerate(held) if h["wording"] == wording]
        read_as = Counter(TYPES[int(reworded[i])] for i in rows)
        per_wording[wording] = {
            "accuracy": (reworded[rows] == truth[rows]).float().mean().item(),
            "n": len(rows),
            "read_as": dict(read_as.most_common()),
        }
    return {
        "template_accuracy": (template == truth).float().mean().item(),
        "reworded_accuracy": (reworded == truth).float().mean().item(),
        "per_wording": per_wording,
    }


def summarize(runs: list[dict]) -> dict:
    """Mean ± sd over seeds of the two accuracies and each wording's; the runs themselves kept."""

    def stats(values: list[float]) -> dict:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": statistics.mean(values), "sd": sd, "seeds": values}

    wordings = runs[0]["per_wording"]
    return {
        "template_accuracy": stats([r["template_accuracy"] for r in runs]),
        "reworded_accuracy": stats([r["reworded_accuracy"] for r in runs]),
        "per_wording": {w: stats([r["per_wording"][w]["accuracy"] for r in runs]) for w in wordings},
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--scenes", type=int, default=4000, help="training scenes (5-12 questions each)")
    p.add_argument("--wordings", default="varied", help="the training scenes' question_wordings")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="question_reading", help="results file: NAME.json")
    p.add_argument("--smoke", action="store_true", help="tiny: 40 scenes, 20 steps, one seed")
    args = p.parse_args()
    if args.smoke:
        args.scenes, args.steps, args.seeds, args.width, args.layers = 40, 20, [0], 32, 1
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    pairs, texts = training_set(args.scenes, args.wordings)
    held = held_out_set()
    majority = Counter(h["type"] for h in held).most_common(1)[0][1] / len(held)
    print(f"majority type: {majority:.3f}")
    arms = {}
    for arm in args.arms:
        arms[arm] = summarize([train_arm(arm, seed, pairs, texts, held, args) for seed in args.seeds])
        print(f"{arm}: template {arms[arm]['template_accuracy']['mean']:.3f}, "
              f"reworded {arms[arm]['reworded_accuracy']['mean']:.3f}")  # fmt: skip
    result = {
        "environment": run_info(load_before, args.threads),
        "settings": {k: v for k, v in vars(args).items() if k != "smoke"} | {"smoke": args.smoke},
        "training_questions": len(pairs),
        "held_out_questions": len(held),
        "baseline_majority_type": majority,
        "arms": arms,
    }
    if not args.smoke:
        write_results(args.name, result)


if __name__ == "__main__":
    main()
