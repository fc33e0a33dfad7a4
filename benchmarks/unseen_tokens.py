"""Control for reworded questions: are a generative VLM's untrained token embeddings what breaks
them?

    python benchmarks/unseen_tokens.py CHECKPOINT --name NAME     # a from-scratch VLM's checkpoint
    python benchmarks/unseen_tokens.py --smoke                    # a tiny VLM trained for seconds

A from-scratch VLM's byte-level BPE holds every merge it made on the training texts, but the
training sequences use only some of its ids (vocabulary 600, 190 ids used, for the staged scenes
recipe): a word no training text has ("visible") splits into pieces whose input embeddings never
got a gradient (tied to the output head, they are only pushed down as answers). The held-out
wordings are full of such words. This scores the checkpoint's held-out scenes VQA (with its
reworded questions, per wording) three times: as trained ("keep"); with the input rows of every
id the training sequences never use set to zero ("zero": such a word then adds nothing but its
positions); and set to the mean of the used rows ("mean"). The output head keeps its rows in
all three. If "zero" lifts the reworded scores, the untrained rows are the cause; if not, the
model fails on the words it knows, how they are put together.

Used ids: the token ids of `--samples` training samples of the checkpoint's own data, each made
into a VQA and a caption conversation exactly as training makes them, chat template included.
Writes benchmarks/results/unseen_tokens-NAME.json: per arm, the metrics and the reworded
accuracy per wording, beside the counts of used ids and the mean norms of used and unused rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SMOKE_VLM, run_info, write_results  # noqa: E402

from vlkit.api import load as load_model  # noqa: E402
from vlkit.data import build_dataset  # noqa: E402
from vlkit.eval.run import run_eval  # noqa: E402
from vlkit.train.generative import encode_conversation, sample_messages  # noqa: E402

ARMS = ("keep", "zero", "mean")


def used_ids(model, samples: int) -> set[int]:
    """Every token id of the training sequences of `samples` samples of the model's data."""
    tok, cfg = model.model.tokenizer, model.cfg
    used, rng = set(tok.all_special_ids), np.random.default_rng(0)
    for sample in itertools.islice(build_dataset(cfg.data), samples):
        for tasks in (["vqa"], ["caption"]):
            if tasks == ["vqa"] and not sample.get("qa"):
                continue
            messages = sample_messages(sample, tasks, rng)
            ids, _ = encode_conversation(tok, messages, 1, 10**6, "unseen_tokens")
            used.update(ids)
    return used


def blank_unused(model, used: set[int], arm: str) -> dict:
    """Unties the LM's input rows from its output head and sets the unused input rows by `arm`."""
    lm = model.model.base_language_model()
    rows = lm.get_input_embeddings().weight.detach().clone()
    mask = torch.zeros(len(rows), dtype=torch.bool)
    mask[sorted(used)] = True
    stats = {
        "vocabulary": len(rows),
        "ids_used": int(mask.sum()),
        "norm_used": float(rows[mask].norm(dim=1).mean()),
        "norm_unused": float(rows[~mask].norm(dim=1).mean()),
    }
    lm.config.tie_word_embeddings = False
    lm.get_output_embeddings().weight = torch.nn.Parameter(rows.clone())
    if arm == "zero":
        rows[~mask] = 0.0
    elif arm == "mean":
        rows[~mask] = rows[mask].mean(0)
    lm.set_input_embeddings(torch.nn.Embedding.from_pretrained(rows))
    return stats


def score(checkpoint: str, arm: str, used: set[int], limit: int) -> dict:
    """One arm: the held-out scenes VQA report's metrics and per-wording reworded accuracy."""
    stats: dict = {}

    def wrap(model):
        stats.update(blank_unused(model, used, arm))
        return model

    with tempfile.TemporaryDirectory() as out:
        result = run_eval(checkpoint, task="vqa", limit=limit, out_dir=out, wrap=wrap)
    per_wording = result["results"][0].breakdowns["paraphrase_accuracy by wording"]
    return stats | {"metrics": result["metrics"], "reworded_by_wording": per_wording}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a generative VLM checkpoint or run folder")
    p.add_argument("--samples", type=int, default=4000, help="training samples whose ids count as used")
    p.add_argument("--limit", type=int, default=128, help="held-out scenes scored")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="")
    p.add_argument("--smoke", action="store_true", help="a tiny VLM trained here for seconds")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = smoke_checkpoint(tmp) if args.smoke else args.checkpoint
        if not checkpoint:
            p.error("give a CHECKPOINT (or --smoke)")
        samples, limit = (50, 4) if args.smoke else (args.samples, args.limit)
        used = used_ids(load_model(checkpoint), samples)  # once: it depends on the data and tokenizer only
        arms = {arm: score(checkpoint, arm, used, limit) for arm in ARMS}
    print(f"ids used by training sequences: {arms['keep']['ids_used']} of {arms['keep']['vocabulary']}")
    for arm, r in arms.items():
        print(
            f"{arm:5s} vqa {r['metrics']['vqa_accuracy']:.3f} reworded {r['metrics']['paraphrase_accuracy']:.3f}"
        )
    result = {"checkpoint": checkpoint, "samples": args.samples, "limit": args.limit, "arms": arms}
    result["environment"] = run_info(load, args.threads)
    if not args.smoke:
        write_results("unseen_tokens" + (f"-{args.name}" if args.name else ""), result)


def smoke_checkpoint(folder: str) -> str:
    """A tiny VLM (llava-scenes.yaml at SMOKE_VLM's sizes) trained for 4 steps: the path, in seconds."""
    from vlkit.config import load_config
    from vlkit.train.loop import train

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "llava-scenes.yaml"
    steps = ["train.steps=4", "train.batch_size=8", "train.warmup_steps=1", f"train.out_dir={folder}/run"]
    return str(train(load_config(recipe, SMOKE_VLM + steps), progress=False))


if __name__ == "__main__":
    main()
