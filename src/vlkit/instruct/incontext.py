"""In-context example sets (Otter / MIMIC-IT): each query with its k most similar examples.

Records of an instruction set (LLaVA JSON) are embedded, by text (the first question and
answer, with the registry's MiniLM) or by image (a vlkit contrastive checkpoint's
`embed_images`), and every record becomes the query of one set whose k examples are its
nearest neighbours by cosine similarity among records of *other* images.

    incontext.json   [{"id", "query": id, "examples": [id, ...], "similarity": [float, ...]}]
    chat.jsonl       {"id", "images": [k + 1 paths], "messages": k example turns, then the query}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vlkit.data.conversations import IMAGE_PLACEHOLDER, read_conversations


def embed_texts(texts: Sequence[str], encoder: str = "minilm-l6", batch_size: int = 64) -> np.ndarray:
    """Unit vectors float32[N, D] from a registry text tower."""
    from vlkit.config import ModelConfig
    from vlkit.models.registry import build_text_tower

    tower = build_text_tower(encoder, ModelConfig()).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tower.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=tower.max_length,
                return_tensors="pt",
            )
            out.append(
                torch.nn.functional.normalize(tower(enc["input_ids"], enc["attention_mask"]).float(), dim=-1)
            )
    return torch.cat(out).numpy()


def neighbours(embeddings: np.ndarray, groups: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k most similar rows of other groups (images): (indices int[N, k], sims float[N, k])."""
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    sims = e @ e.T  # (N, N)
    g = np.asarray(groups)
    sims[g[:, None] == g[None, :]] = -np.inf  # never the query itself or its own image
    if k > len(set(groups)) - 1:
        raise ValueError(f"k={k}: needs at least k + 1 different images, the input has {len(set(groups))}")
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def generate_incontext(
    input_json: str | Path,
    out_dir: str | Path,
    k: int = 3,
    by: str = "text",
    encoder: str = "minilm-l6",
    model: str | None = None,
    limit: int | None = None,
) -> dict:
    """Writes in-context sets for the records of a LLaVA JSON; by 'text' (encoder) or 'image' (model)."""
    path = Path(input_json)
    records = [
        {"id": key, "image": str(image.resolve()), "messages": messages}
        for key, image, messages in read_conversations(path, check=False)[:limit]
    ]
    if not records:
        raise ValueError(f"{path}: expected a non-empty LLaVA JSON list")
    images = [r["image"] for r in records]
    idx, sims = neighbours(embed_records(records, images, by, encoder, model), images, k)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = write_sets(out, records, images, idx, sims)
    stats = {
        "sets": len(sets),
        "k": k,
        "by": by,
        "mean_similarity": round(float(sims.mean()), 4),
        "min_similarity": round(float(sims.min()), 4),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return stats


def embed_records(
    records: Sequence[dict], images: Sequence[str], by: str, encoder: str, model: str | None
) -> np.ndarray:
    """One vector per record: its first question and answer (`encoder`), or its image (`model`)."""
    if by == "text":
        texts = [
            " ".join(m["content"].replace(IMAGE_PLACEHOLDER, "").strip() for m in r["messages"][:2])
            for r in records
        ]
        return embed_texts(texts, encoder)
    if by == "image":
        if not model:
            raise ValueError("--by image needs --model: a vlkit contrastive model or run folder")
        import vlkit

        return vlkit.load(model).embed_images(images)
    raise ValueError(f"by={by!r}: 'text' or 'image'")


def write_sets(
    out: Path, records: Sequence[dict], images: Sequence[str], idx: np.ndarray, sims: np.ndarray
) -> list[dict]:
    """incontext.json and chat.jsonl: record q's set is its neighbours idx[q] (similarities sims[q])."""
    sets = []
    with (out / "chat.jsonl").open("w", encoding="utf-8") as f:
        for q, (row, sim) in enumerate(zip(idx, sims)):
            sets.append(
                {
                    "id": f"icl-{records[q]['id']}",
                    "query": records[q]["id"],
                    "examples": [records[j]["id"] for j in row],
                    "similarity": [round(float(s), 4) for s in sim],
                }
            )
            chats = [records[j] for j in (*row, q)]
            f.write(
                json.dumps(
                    {
                        "id": sets[-1]["id"],
                        "images": [images[j] for j in [*row, q]],
                        "messages": [m for c in chats for m in c["messages"]],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    (out / "incontext.json").write_text(json.dumps(sets, indent=1), encoding="utf-8")
    return sets
