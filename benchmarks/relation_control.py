"""Control for the VLM's relation questions: how fast does a small transformer learn "where is
object a relative to object b" from image tokens, when the question's parsing is taken away?

    python benchmarks/relation_control.py --run runs/tour      # the tour's CLIP tower, 4 arms
    python benchmarks/relation_control.py --smoke              # an untrained tiny tower, seconds
    python benchmarks/relation_control.py --arms oracle,bidirectional --steps 4800 --name long
                                                               # one arm, longer: does its plateau end?
    python benchmarks/relation_control.py --arms oracle,causal --steps 2000 --pool 2 --name pool2
                                                               # what shortens the plateau (below)

Each held-out or training example is a scene of 2-3 objects, two of them picked as a and b, and
the answer `relation(a, b)` (left, right, above, below: what the scenes' relation questions ask).
The model is the VLM's path without its language: the image's 64 tokens (a 2-layer MLP
connector over the frozen tower's grid features with `grid_coordinates` appended, as
`vlm.connector_coordinates` does), then a token for a and one for b (a learned embedding of each
object's colour × shape, so nothing has to be read from words), then an answer token, through a
4-layer 128-wide transformer, AdamW 1e-3, batch 64, cross-entropy on the answer token's
4-way head. Arms: the tower's features or oracle features (per patch, one-hot colour and shape
of the object covering it: perfect recognition), each with causal attention (as the language
model reads the prompt) or bidirectional attention. If even oracle features learn slowly, the
time goes into learning two lookups and a comparison, not into what the tower sees.

Levers on the length of that plateau, each off by default: `--lr`; `--train-objects 2-2` (train
on two-object scenes only; the held-out scenes keep 2-3); `--pool K` (average K x K neighbouring
tokens: 64 / K^2 tokens to search, as `merge2x2_mlp` does); `--grounding W` (an auxiliary loss,
weight W: a linear head reads the a and b tokens' outputs and predicts each object's box centre,
rewarding the lookup directly, as region-level training data does for a VLM); with `--regions`,
that head names the cell of a 3 x 3 grid the centre falls in instead (cross-entropy): what the
scenes' position questions ask ("top left"). `--words` names a and b as a question does, by two
tokens each (a colour embedding, then a shape embedding carrying the a / b role), so the model must
also put the two words together; the grounding head then reads each name's last (shape) token.
`--lm llama` swaps the transformer for the VLM's language-model body (gpt-tiny's: transformers'
Llama, rotary positions instead of learned ones, causal); `--init-std` sets the standard deviation
its weights start from (transformers' default 0.02; torch's own layers start near 1/sqrt(3 x width)).
Writes benchmarks/results/relation_control.json (relation_control-NAME.json with --name).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results  # noqa: E402
from patch_probe import patch_labels, tower_of  # noqa: E402

from vlkit.data.scenes import COLOR_NAMES, SHAPES, Scenes, ScenesConfig  # noqa: E402
from vlkit.data.scenes_text import relation  # noqa: E402
from vlkit.models.connectors import grid_coordinates  # noqa: E402
from vlkit.models.towers import scratch_dims  # noqa: E402

RELATIONS = ("left", "right", "above", "below")


def centre(obj) -> tuple[float, float]:
    return (obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2


@torch.no_grad()
def examples(tower, seed: int, n: int, objects: tuple[int, int] = (2, 3)) -> dict[str, torch.Tensor]:
    """n scenes → tower grid features, oracle features, a and b ids (colour × shape), answers,
    and the a and b box centres."""
    config = tower.model.config
    side, patch = config.image_size // config.patch_size, config.patch_size
    world, rng = Scenes(ScenesConfig(config.image_size, *objects, seed=seed)), random.Random(seed)
    grids, oracle, a_ids, b_ids, answers, centres = [], [], [], [], [], []
    for start in range(0, n, 64):
        scenes = [world.scene(i) for i in range(start, min(n, start + 64))]
        grids.append(tower.grid(tower.preprocess([s.image for s in scenes])))
        for scene in scenes:
            colour, shape = patch_labels(scene, side, patch)
            hot = np.zeros((side * side, len(COLOR_NAMES) + len(SHAPES)), dtype=np.float32)
            hot[colour >= 0, colour[colour >= 0]] = 1
            hot[shape >= 0, len(COLOR_NAMES) + shape[shape >= 0]] = 1
            oracle.append(torch.from_numpy(hot))
            a, b = rng.sample(scene.objects, 2)
            a_ids.append(COLOR_NAMES.index(a.color) * len(SHAPES) + SHAPES.index(a.shape))
            b_ids.append(COLOR_NAMES.index(b.color) * len(SHAPES) + SHAPES.index(b.shape))
            answers.append(RELATIONS.index(relation(a, b)))
            centres.append(centre(a) + centre(b))
    return {
        "tower": torch.cat(grids),
        "oracle": torch.stack(oracle),
        "a": torch.tensor(a_ids),
        "b": torch.tensor(b_ids),
        "answer": torch.tensor(answers),
        "centres": torch.tensor(centres),
    }


def pooled(features: torch.Tensor, k: int) -> torch.Tensor:
    """float[B, N, D] on a square grid → float[B, N / k², D]: each k x k block averaged."""
    if k == 1:
        return features
    b, n, d = features.shape
    side = round(n**0.5)
    grid = features.transpose(1, 2).reshape(b, d, side, side)
    return F.avg_pool2d(grid, k).reshape(b, d, -1).transpose(1, 2)


class RelationModel(nn.Module):
    """[64 image tokens; a; b; answer] → a 4-way relation (see the module docstring); with
    `words`, a and b are two tokens each, a colour then a shape, as a question names them."""

    def __init__(self, feature_dim: int, n_tokens: int, width: int, causal: bool, levers: Levers):
        super().__init__()
        self.register_buffer("coordinates", grid_coordinates(n_tokens), persistent=False)
        extra = self.coordinates.shape[1]
        self.connector = nn.Sequential(
            nn.Linear(feature_dim + extra, width), nn.GELU(), nn.Linear(width, width)
        )
        self.objects = nn.Embedding(len(COLOR_NAMES) * len(SHAPES), width)
        # made only when used: drawing their weights would change every other arm's initial weights
        self.words = (
            nn.ModuleList([nn.Embedding(len(COLOR_NAMES), width), nn.Embedding(len(SHAPES), width)])
            if levers.words
            else None
        )
        self.roles = nn.Parameter(torch.randn(3, width) * 0.02)  # a, b, answer
        # drawn in every arm, --lm llama too (which does not use it), so each arm's later weights stay
        # as its results file drew them
        self.positions = nn.Parameter(torch.randn(1, n_tokens + (5 if levers.words else 3), width) * 0.02)
        self.encoder = encoder(levers.lm, width, n_tokens + 5, levers.init_std)
        self.head = nn.Linear(width, len(RELATIONS))
        self.where = nn.Linear(width, 2)  # the --grounding head: an object token → its box centre
        self.region = nn.Linear(width, 9)  # with --regions: → its cell of a 3 x 3 grid
        self.causal = causal

    def forward(self, features, a, b, grounding: bool = False):
        """→ relation logits float[B, 4]; with grounding, also the a and b token outputs [B, 2, W]."""
        where = self.coordinates.expand(len(features), -1, -1)
        image = self.connector(torch.cat([features, where], -1))
        tokens = torch.cat([image, self.query(a, b)], 1)
        if isinstance(self.encoder, LlamaModel):  # rotary positions inside, causal: as the VLM's LM
            out = self.encoder(inputs_embeds=tokens).last_hidden_state
        else:
            mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1]) if self.causal else None
            out = self.encoder(tokens + self.positions, mask=mask, is_causal=self.causal)
        logits = self.head(out[:, -1])
        named = out[:, -3:-1] if self.words is None else out[:, [-4, -2]]  # where each name ends
        return (logits, named) if grounding else logits

    def query(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The a, b and answer tokens float[B, 3 (5 with words), W]."""
        answer = self.roles[2].expand(len(a), -1)
        if self.words is None:
            return torch.stack([self.objects(a) + self.roles[0], self.objects(b) + self.roles[1], answer], 1)
        colour, shape = self.words
        n = len(SHAPES)
        names = [colour(a // n), shape(a % n) + self.roles[0], colour(b // n), shape(b % n) + self.roles[1]]
        return torch.stack([*names, answer], 1)


@dataclass
class Levers:
    """What an arm changes besides its features and attention (see the module docstring)."""

    lr: float = 1e-3
    pool: int = 1
    grounding: float = 0.0
    regions: bool = False
    words: bool = False
    lm: str = "encoder"
    init_std: float = 0.02  # --lm llama: its weights' initial standard deviation (transformers' 0.02)


def encoder(kind: str, width: int, max_tokens: int, init_std: float) -> nn.Module:
    """The 4-layer transformer: torch's pre-norm encoder with learned absolute positions, or
    (`--lm llama`) the VLM's gpt-tiny body, transformers' Llama (rotary positions, RMSNorm,
    SwiGLU, always causal) of the same width, its weights drawn with standard deviation `init_std`."""
    if kind == "llama":
        dims = scratch_dims(width, 4, 4) | {"num_key_value_heads": 4, "initializer_range": init_std}
        return LlamaModel(LlamaConfig(vocab_size=2, **dims, max_position_embeddings=max_tokens))
    layer = nn.TransformerEncoderLayer(width, 4, 4 * width, 0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


def region_of(centres: torch.Tensor) -> torch.Tensor:
    """float[B, 4] (a's x, y, b's x, y) → long[B, 2]: each centre's cell of a 3 x 3 grid."""
    cells = torch.bucketize(centres, torch.tensor([1 / 3, 2 / 3]))
    return cells[:, 1::2] * 3 + cells[:, 0::2]


def grounding_loss(model: nn.Module, objects: torch.Tensor, centres: torch.Tensor, regions: bool):
    """The --grounding loss on the a and b token outputs `objects` float[B, 2, W]."""
    if regions:
        return F.cross_entropy(model.region(objects).flatten(0, 1), region_of(centres).flatten())
    return F.mse_loss(model.where(objects).flatten(1), centres)


def train_arm(train: dict, test: dict, arm: str, steps: int, every: int, levers: Levers) -> list[dict]:
    features, attention = arm.split(",")
    torch.manual_seed(0)
    x, xt = pooled(train[features], levers.pool), pooled(test[features], levers.pool)
    if levers.lm == "llama" and attention != "causal":
        raise SystemExit(f"--lm llama is causal: arm {arm!r} asks for {attention} attention")
    model = RelationModel(x.shape[-1], x.shape[1], 128, attention == "causal", levers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=levers.lr, weight_decay=0.1)
    order = torch.Generator().manual_seed(0)
    curve = []
    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            with torch.no_grad():
                correct = model(xt, test["a"], test["b"]).argmax(-1) == test["answer"]
            model.train()
            curve.append({"step": step, "images": step * 64, "accuracy": correct.float().mean().item()})
            print(f"{features}, {attention}, step {step}: held-out relation accuracy "
                  f"{curve[-1]['accuracy']:.3f}", flush=True)  # fmt: skip
        if step < steps:
            idx = torch.randint(len(x), (64,), generator=order)
            logits, objects = model(x[idx], train["a"][idx], train["b"][idx], grounding=True)
            loss = F.cross_entropy(logits, train["answer"][idx])
            if levers.grounding:
                loss = loss + levers.grounding * grounding_loss(
                    model, objects, train["centres"][idx], levers.regions
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/tour", help="a CLIP run or model folder")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--train-scenes", type=int, default=19200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arms", nargs="+", default=["tower,causal", "tower,bidirectional", "oracle,causal",
                   "oracle,bidirectional"], help="features,attention pairs to train")  # fmt: skip
    p.add_argument("--lr", type=float, default=Levers.lr)
    p.add_argument("--train-objects", default="2-3", help="objects per training scene, MIN-MAX")
    p.add_argument("--pool", type=int, default=Levers.pool, help="average K x K neighbouring tokens")
    p.add_argument("--grounding", type=float, default=Levers.grounding, help="weight of the box-centre loss")
    p.add_argument("--regions", action="store_true", help="--grounding names a 3 x 3 cell instead")
    p.add_argument("--words", action="store_true", help="name a and b by two tokens each, colour and shape")
    p.add_argument(
        "--lm", choices=["encoder", "llama"], default=Levers.lm, help="the transformer (see above)"
    )
    p.add_argument("--init-std", type=float, default=Levers.init_std, help="--lm llama: initial weight sd")
    p.add_argument("--name", default="", help="results file relation_control-NAME.json")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load, every, test_scenes = os.getloadavg()[0], 200, 512
    if args.smoke:
        args.steps, args.train_scenes, every, test_scenes = 2, 16, 1, 8
    tower = tower_of(args.run, args.smoke)
    objects = tuple(int(n) for n in args.train_objects.split("-"))
    levers = Levers(args.lr, args.pool, args.grounding, args.regions, args.words, args.lm, args.init_std)
    train, test = examples(tower, 0, args.train_scenes, objects), examples(tower, 1_000_003, test_scenes)
    counts = torch.bincount(test["answer"], minlength=len(RELATIONS))
    arms = {}
    for arm in args.arms:
        features, attention = arm.split(",")
        if features not in ("tower", "oracle") or attention not in ("causal", "bidirectional"):
            raise SystemExit(f"--arms {arm!r}: want tower|oracle,causal|bidirectional")
        arms[f"{features}, {attention}"] = train_arm(train, test, arm, args.steps, every, levers)
    result = {
        "run": args.run,
        "chance": 1 / len(RELATIONS),
        "majority": (counts.max() / counts.sum()).item(),
        "train_scenes": args.train_scenes,
        "train_objects": args.train_objects,
        "levers": asdict(levers),
        "test_scenes": test_scenes,
        "arms": arms,
        **run_info(load, args.threads),
    }
    if not args.smoke:
        write_results("relation_control" + (f"-{args.name}" if args.name else ""), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
