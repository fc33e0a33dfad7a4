"""Training-free VLMs from vlkit's pretrained parts (ASIF, ConSE) beside a LiT trained on the same pairs.

    python benchmarks/training_free.py --threads 1     # digits, Fashion-MNIST, photos; ~15-25 min cold
    python benchmarks/training_free.py --smoke         # tiny sizes, a minute
    python benchmarks/training_free.py --table         # the README's table, from the results file

EfficientNet-Lite0 (ImageNet) + MiniLM-L6, frozen. Every choice (ASIF's k and p; for digits also
the rendering's margin and the anchors' caption wording) is made on a validation split carved from
the training pairs (the last fifth), then the model is rebuilt with all the training pairs and
scored once on the test images:

- sklearn digits (`vlkit.data.digits`): anchors are the "train" half, test the other half; the
  validation rows also record each margin's nearest-neighbour accuracy between images (does the
  image side separate the classes?) and ASIF with one-hot class "captions" (the image side's
  ceiling), so a shortfall can be placed on the image or the text side.
- Fashion-MNIST: anchors drawn from train as `vlkit asif --data fashion-mnist` draws them, scored
  on the whole test split (10,000 images; the run at commit 6f09da1 scored a random
  2,000 of them).
- photos: the 13 training photographs, every caption an anchor pair; retrieval on the 7 held-out
  ones through `vlkit.eval.harness` (R@1 chance 1/7; a sanity check, not a measurement).

LiT is `recipes/lit-scenes.yaml`'s model (locked EfficientNet-Lite0, MiniLM-L6 and projections
trained, CLIP loss, its lr, warmup and AdamW) trained on the same training pairs. The image tower
is locked and in eval mode, so its features are computed once and the trained parts see them
exactly as `vlkit train` would show them. Image features are cached on disk
(`runs/cache/training-free`, `vlkit.models.feature_cache`, keyed by image bytes and encoder
weights), so a rerun embeds nothing. One check classifies raw images end to end with `vlkit.load`
to show the cached path gives the same labels. Writes benchmarks/results/training_free-lit.json
(not in --smoke); the earlier training_free.json (digits without a margin, mixed wordings) stays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, run_info, write_results

from vlkit.api import ContrastiveModel, TrainingFreeModel, load
from vlkit.config import DEFAULT_TEMPLATES, Config, TrainingFreeConfig, load_config
from vlkit.data.digits import WORDS, Digits
from vlkit.data.fashion_mnist import FashionMNIST
from vlkit.data.photos import Photos
from vlkit.eval.embedded import named_benchmarks
from vlkit.eval.harness import evaluate_benchmarks
from vlkit.eval.result import RETRIEVAL_CHANCE
from vlkit.models.build import build_model, save_model
from vlkit.models.build_training_free import choose_anchors, fill_class_names
from vlkit.models.feature_cache import FeatureCache, encoder_fingerprint
from vlkit.models.losses import clip_loss
from vlkit.models.towers import tokenize
from vlkit.models.training_free import ASIF, TrainingFree, embed_image_features, embed_text_features
from vlkit.train.loop import lr_lambda, make_optimizer

ROOT = Path(__file__).resolve().parent.parent
NAME = "training_free-lit"
GOALS = {"fashion-mnist": 0.85, "digits": 0.90}  # issue 12's ASIF goals
WORDINGS = ["a handwritten digit {}", "the number {}", "a picture of the number {}"]


class Embedder:
    """The frozen towers, with image features cached on disk."""

    def __init__(self, towers: TrainingFree):
        self.towers = towers
        key = encoder_fingerprint(towers.image_tower, towers.cfg.image_encoder)
        self.cache = FeatureCache(
            ROOT / "runs" / "cache" / "training-free", key, (1, towers.image_tower.out_dim)
        )
        self.seconds = 0.0

    def images(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8[H, W, 3] arrays → float[N, D_img] pooled features."""
        started = time.perf_counter()

        def compute(missing):
            print(f"embedding {len(missing)} images", flush=True)
            with torch.inference_mode():
                return embed_image_features(self.towers, missing).unsqueeze(1)

        # in chunks: each chunk is on disk once computed, so an interrupted run loses one chunk
        chunks = [self.cache.get_or_compute(images[i : i + 128], compute) for i in range(0, len(images), 128)]
        self.seconds += time.perf_counter() - started
        return torch.cat(chunks).squeeze(1)

    def texts(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return embed_text_features(self.towers, texts)


class Pairs:
    """Image features float[N, D] with captions and (optionally) class labels."""

    def __init__(self, features, captions, labels=None):
        self.features, self.captions = features, list(captions)
        self.labels = None if labels is None else np.asarray(labels)

    def split(self, fraction: float = 0.2) -> tuple[Pairs, Pairs]:
        """(the first 1 - fraction, the last fraction): fit and validation."""
        cut = len(self.captions) - max(1, int(len(self.captions) * fraction))
        head = Pairs(
            self.features[:cut], self.captions[:cut], None if self.labels is None else self.labels[:cut]
        )
        tail = Pairs(
            self.features[cut:], self.captions[cut:], None if self.labels is None else self.labels[cut:]
        )
        return head, tail


def asif_model(emb: Embedder, anchors: Pairs, k: int, p: float) -> ASIF:
    cfg = TrainingFreeConfig(
        method="asif", anchors=len(anchors.captions), k=min(k, len(anchors.captions)), p=p
    )
    model = ASIF(cfg, emb.towers.image_tower, emb.towers.text_tower)
    model.set_anchors(anchors.features, emb.texts(anchors.captions))
    return model


def zero_shot(user: ContrastiveModel, images: torch.Tensor, test: Pairs, classes: list[str]) -> float:
    """Top-1 of image embeddings float[N, E] against the classes' label embeddings."""
    labels = torch.from_numpy(user.label_embeddings(classes, DEFAULT_TEMPLATES))  # (C, E)
    return float(((images @ labels.T).argmax(1).numpy() == test.labels).mean())


def asif_top1(model: ASIF, test: Pairs, classes: list[str]) -> float:
    user = TrainingFreeModel(model, Config(kind="training-free", model=model.cfg))
    with torch.inference_mode():
        return zero_shot(user, model.encode_image_features(test.features), test, classes)


def image_side(fit: Pairs, val: Pairs, k: int, p: float) -> dict:
    """Nearest anchor image's label, and ASIF with one-hot class 'captions' (perfect text side)."""
    mean = fit.features.mean(0)
    a, v = F.normalize(fit.features - mean, dim=-1), F.normalize(val.features - mean, dim=-1)
    nearest = float((fit.labels[(v @ a.T).argmax(1).numpy()] == val.labels).mean())
    from vlkit.models.training_free import relative

    onehot = torch.zeros(len(fit.labels), 10)
    onehot[torch.arange(len(fit.labels)), torch.from_numpy(fit.labels)] = 1
    oracle = (relative(v, a, min(k, len(a)), p) @ onehot).argmax(1).numpy()
    return {"nearest_image": nearest, "asif_one_hot_text": float((oracle == val.labels).mean())}


def choose_asif(emb: Embedder, train: Pairs, classes: list[str], grid: dict, tag: dict) -> list[dict]:
    """ASIF on the validation fifth of `train` for every (k, p): rows tagged with `tag`."""
    fit, val = train.split()
    rows = []
    for k in grid["k"]:
        for p in grid["p"]:
            acc = asif_top1(asif_model(emb, fit, k, p), val, classes)
            rows.append(tag | {"k": k, "p": p, "validation_top1": acc})
            print(f"validation {tag} k={k} p={p}: {acc:.3f}", flush=True)
    return rows


def train_lit(train: Pairs, steps: int, batch: int, seed: int) -> ContrastiveModel:
    """recipes/lit-scenes.yaml's model and optimiser on `train`'s cached features (its image tower
    is locked: only the text tower, the projections and the temperature learn)."""
    cfg = load_config(ROOT / "recipes" / "lit-scenes.yaml")
    cfg.train.steps, cfg.train.warmup_steps = steps, min(cfg.train.warmup_steps, steps // 10)
    torch.manual_seed(seed)
    model = build_model(cfg).train()
    optimizer = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for step in range(steps):
        rows = rng.choice(len(train.captions), size=min(batch, len(train.captions)), replace=False)
        images = F.normalize(model.visual_projection(train.features[rows]), dim=-1)  # (B, E)
        enc = tokenize(model.text_tower, [train.captions[i] for i in rows])
        texts = model.encode_texts(enc["input_ids"], enc["attention_mask"])  # (B, E)
        loss = clip_loss(images, texts, model.scale())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"LiT step {step}: loss {loss.item():.3f}", flush=True)
    user = ContrastiveModel(model.eval(), cfg)
    user.train_seconds = time.perf_counter() - started
    return user


def lit_images(user: ContrastiveModel, features: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return F.normalize(user.model.visual_projection(features), dim=-1)


def classified(
    emb: Embedder, conse, train: Pairs, test: Pairs, classes: list[str], best: dict, args, raw
) -> list[dict]:
    """The test rows of a labelled set: ASIF as chosen (and whether `vlkit.load` on the raw first
    test images agrees), ConSE, LiT, chance."""
    model = asif_model(emb, train, best["k"], best["p"])
    agrees = end_to_end_agrees(model, raw, test.features[: len(raw)], classes)
    print(f"end-to-end agrees: {agrees}", flush=True)
    rows = [{"method": "asif", "anchors": len(train.captions), "k": best["k"], "p": best["p"],
             "top1": asif_top1(model, test, classes), "end_to_end_agrees": agrees}]  # fmt: skip
    shuffled = np.random.default_rng(0).permutation(len(train.captions))  # the pairs broken
    control = Pairs(train.features, [train.captions[i] for i in shuffled], train.labels)
    acc = asif_top1(asif_model(emb, control, best["k"], best["p"]), test, classes)
    rows.append(
        {"method": "asif, captions shuffled among the anchors", "k": best["k"], "p": best["p"], "top1": acc}
    )
    user = TrainingFreeModel(conse, Config(kind="training-free", model=conse.cfg))
    for top in (1, 5, 10):
        conse.cfg.top = top
        with torch.inference_mode():
            acc = zero_shot(user, conse.encode_image_features(test.features), test, classes)
        rows.append({"method": "conse", "top": top, "top1": acc})
    lit = train_lit(train, args.lit_steps, 64, args.seed)
    rows.append({"method": "lit (trained on the anchor pairs)", "pairs": len(train.captions),
                 "steps": args.lit_steps, "batch": 64, "train_seconds": round(lit.train_seconds),
                 "top1": zero_shot(lit, lit_images(lit, test.features), test, classes)})  # fmt: skip
    rows.append({"method": "chance", "top1": 1 / len(classes)})
    return rows


def best_row(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["validation_top1"])


def digits(emb: Embedder, conse, args, sizes: dict) -> dict:
    """Margins x wordings x (k, p) on validation; the best rebuilt on the train half, tested once;
    the same settings with no margin (how the digits were rendered before) tested beside it."""
    validation, image_rows, train_sets = [], [], {}
    for margin in args.margins:
        train = Digits("train", margin=margin)
        n = min(len(train), sizes["digits"])
        feats, labels = emb.images([train[i]["image"] for i in range(n)]), train.labels[:n]
        train_sets[margin] = (feats, labels)
        fit, val = Pairs(feats, [""] * n, labels).split()
        image_rows.append({"margin": margin} | image_side(fit, val, 800, 8.0))
        print(f"digits margin {margin}: {image_rows[-1]}", flush=True)
        captions = {"one wording": [WORDINGS[0].format(WORDS[c]) for c in labels],
                    "three wordings": [WORDINGS[i % 3].format(WORDS[c]) for i, c in enumerate(labels)]}  # fmt: skip
        for wording, caps in captions.items():
            tag = {"margin": margin, "captions": wording}
            validation += choose_asif(emb, Pairs(feats, caps, labels), WORDS, args.grid, tag)
    best = best_row(validation)
    feats, labels = train_sets[best["margin"]]
    wording = WORDINGS[0] if best["captions"] == "one wording" else None
    caps = [(wording or WORDINGS[i % 3]).format(WORDS[c]) for i, c in enumerate(labels)]
    tests = {}
    # the chosen margin's test images, and the unmargined ones for the "as rendered before" row
    for margin in {best["margin"], 0} & set(train_sets):
        held = Digits("test", margin=margin)
        n = min(len(held), sizes["digits"])
        tests[margin] = Pairs(emb.images([held[i]["image"] for i in range(n)]), [""] * n, held.labels[:n])
    raw = [Digits("test", margin=best["margin"])[i]["image"] for i in range(8)]
    rows = classified(emb, conse, Pairs(feats, caps, labels), tests[best["margin"]], WORDS, best, args, raw)
    if best["margin"] != 0:
        plain = Pairs(train_sets[0][0], caps, train_sets[0][1]) if 0 in train_sets else None
        if plain is not None:
            acc = asif_top1(asif_model(emb, plain, best["k"], best["p"]), tests[0], WORDS)
            rows.insert(1, {"method": "asif, no margin (as rendered before)", "anchors": len(caps),
                            "k": best["k"], "p": best["p"], "top1": acc})  # fmt: skip
    return {"validation": validation, "image_side_on_validation": image_rows, "chosen": best,
            "test_images": len(tests[best["margin"]].labels), "rows": rows}  # fmt: skip


def fashion(emb: Embedder, conse, args, sizes: dict) -> dict:
    """Anchors drawn as `vlkit asif --data fashion-mnist` draws them; (k, p) chosen on their last
    fifth; ASIF, ConSE and LiT on `sizes["fashion_test"]` test images in a random order (all of them
    at full size)."""
    train_set, held_out = FashionMNIST("train"), FashionMNIST("test")
    pairs = choose_anchors(train_set, sizes["fashion_anchors"], args.seed)
    labels = [int(a["key"].rsplit("/", 1)[1]) for a in pairs]
    train = Pairs(
        emb.images([a["image"] for a in pairs]), [a["caption"] for a in pairs], train_set.labels[labels]
    )
    rows = np.random.default_rng(args.seed + 1).permutation(len(held_out))[: sizes["fashion_test"]]
    images = [held_out[int(i)]["image"] for i in rows]
    test = Pairs(emb.images(images), [""] * len(rows), held_out.labels[rows])
    classes = list(held_out.classes)
    validation = choose_asif(emb, train, classes, args.grid, {})
    best = best_row(validation)
    return {"validation": validation, "chosen": best, "test_images": len(rows),
            "rows": classified(emb, conse, train, test, classes, best, args, images[:8])}  # fmt: skip


def photos(emb: Embedder, conse, args) -> dict:
    """Retrieval among the 7 held-out photos by the harness: ASIF with every (photo, caption) of
    the 13 training photos as an anchor (k = all, p = `vlkit asif`'s default; too few to validate),
    ConSE, and LiT trained on those pairs."""
    train = Photos(split="train")
    pairs = [(train[i]["image"], c) for i in range(len(train)) for c in train[i]["captions"]]
    anchors = Pairs(emb.images([im for im, _ in pairs]), [c for _, c in pairs])
    benchmarks = [b for b in named_benchmarks("photos") if b.task == "retrieval"]
    asif = asif_model(emb, anchors, len(pairs), TrainingFreeConfig().p)
    lit = train_lit(anchors, args.lit_steps, 64, args.seed)
    conse.cfg.top = 5
    models = {
        f"asif ({len(pairs)} anchor pairs, k={len(pairs)}, p={asif.cfg.p})": TrainingFreeModel(asif, Config(kind="training-free", model=asif.cfg)),
        "conse (top 5)": TrainingFreeModel(conse, Config(kind="training-free", model=conse.cfg)),
        f"lit (trained on the {len(pairs)} pairs, {args.lit_steps} steps)": lit,
    }  # fmt: skip
    rows = []
    for method, user in models.items():
        result = evaluate_benchmarks(user, benchmarks)[0]
        scores = {key: result.metrics[key] for key in ("i2t_R@1", "t2i_R@1")}
        rows.append({"method": method} | scores)
        print(f"photos {method}: {scores}", flush=True)
    chance = result.breakdowns[RETRIEVAL_CHANCE]
    rows.append({"method": "chance"} | {key: chance[key] for key in ("i2t_R@1", "t2i_R@1")})
    return {"test_images": len(benchmarks[0].examples), "rows": rows}


def end_to_end_agrees(model: ASIF, raw: list[np.ndarray], features: torch.Tensor, classes: list[str]) -> bool:
    """Save the ASIF model, `vlkit.load` it, classify raw images: the cached features' labels."""
    with tempfile.TemporaryDirectory() as folder:
        save_model(model, Config(kind="training-free", model=model.cfg), Path(folder))
        top = load(folder, kind="contrastive").classify(raw, classes).probs.argmax(1)
    user = TrainingFreeModel(model, Config(kind="training-free", model=model.cfg))
    labels = torch.from_numpy(user.label_embeddings(classes, DEFAULT_TEMPLATES))
    with torch.inference_mode():
        cached = (model.encode_image_features(features) @ labels.T).argmax(1).numpy()
    return bool((top == cached).all())


def table(result: dict) -> str:
    """benchmarks/README.md's table, from a results file."""
    lines = ["| data (test images, metric) | method | settings | score | chance |", "|---|---|---|---|---|"]
    for name, metric in (
        ("digits", "top1"),
        ("fashion-mnist", "top1"),
        ("photos", "i2t_R@1"),
        ("photos", "t2i_R@1"),
    ):
        r = result[name]
        chance = next(row for row in r["rows"] if row["method"] == "chance")[metric]
        for row in r["rows"]:
            if row["method"] == "chance":
                continue
            keys = ("anchors", "k", "p", "top", "pairs", "steps")
            settings = ", ".join(f"{key}={row[key]}" for key in keys if key in row)
            score = row[metric]
            where = f"{name} ({r['test_images']}, {metric})"
            lines.append(f"| {where} | {row['method']} | {settings} | {score:.3f} | {chance:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lit-steps", type=int, default=150, help="LiT's steps (recipes/lit-scenes.yaml: 300)"
    )
    parser.add_argument("--table", action="store_true", help="print the README table from the results file")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads((RESULTS / f"{NAME}.json").read_text())))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    if args.smoke:
        args.grid, args.margins, args.lit_steps = {"k": [4, 16], "p": [1.0, 8.0]}, [0, 4], 3
        sizes = {"digits": 24, "fashion_anchors": 20, "fashion_test": 16}
    else:
        # k up to 1000: template captions repeat (Fashion-MNIST's 20 captions over 4,000 anchors,
        # ~200 anchors each), and a text's top-k must reach past one caption's copies to say anything
        args.grid, args.margins = {"k": [100, 300, 1000], "p": [1.0, 4.0, 8.0, 16.0]}, [0, 4]
        sizes = {"digits": 10_000, "fashion_anchors": 4000, "fashion_test": 10_000}
    conse = fill_class_names(
        build_model(Config(kind="training-free", model=TrainingFreeConfig(method="conse")))
    )
    emb = Embedder(conse)  # the same pretrained towers: ASIF and the cache reuse them
    result = {"digits": digits(emb, conse, args, sizes), "fashion-mnist": fashion(emb, conse, args, sizes)}
    result["photos"] = photos(emb, conse, args)
    result |= {"encoders": "efficientnet-lite0 (ImageNet) + minilm-l6", "templates": list(DEFAULT_TEMPLATES),
               "embed_seconds": round(emb.seconds), "lit_recipe": "recipes/lit-scenes.yaml"}  # fmt: skip
    print(table(result))
    agree = all(r["rows"][0]["end_to_end_agrees"] for r in (result["digits"], result["fashion-mnist"]))
    for name in ("digits", "fashion-mnist"):
        asif = result[name]["rows"][0]["top1"]
        print(f"{name}: ASIF {asif:.3f}, goal {GOALS[name]}: {'met' if asif >= GOALS[name] else 'NOT met'}")
        result[name]["goal"], result[name]["goal_met"] = GOALS[name], asif >= GOALS[name]
    if not args.smoke:
        write_results(NAME, run_info(load_before, torch.get_num_threads()) | result)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
