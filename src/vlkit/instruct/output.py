"""Final files of a run: LLaVA JSON, chat-messages JSONL, stats.json and a short CARD.md.

    llava.json   [{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}]
    chat.jsonl   {"id", "images": [path], "messages": [{"role": "user"|"assistant", "content"}]}

Both are what vlkit's generative training reads. Images are relative to the output folder
(scenes, rendered next to the JSON) or absolute. Stats are recomputed from the append-only
record files, so a resumed run reports the whole set.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from vlkit.data.conversations import llava_messages
from vlkit.instruct.runner import read_log

RUN_LOG = "runs.jsonl"


def to_chat(record: dict) -> dict:
    messages = llava_messages(record["conversations"], f"record {record['id']!r}")
    return {"id": record["id"], "images": [record["image"]], "messages": messages}


def _lengths(values: list[int]) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "min": int(a.min()),
        "p50": float(np.median(a)),
        "mean": round(float(a.mean()), 1),
        "p95": float(np.percentile(a, 95)),
        "max": int(a.max()),
    }


def reason_class(reason: str) -> str:
    """'count: 'two shapes', truth 3' -> 'count'; keeps the stats table short."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()[:60]


def stats(out: Path, records: list[dict], rejected: list[dict]) -> dict:
    group = "kind"
    per_kind: dict[str, dict] = {}
    for r in records:
        k = per_kind.setdefault(
            r.get(group, "?"),
            {"records": 0, "rejected": 0, "turns": [], "answer_words": [], "question_words": []},
        )
        k["records"] += 1
        k["turns"].append(len(r["conversations"]) // 2)
        k["answer_words"] += [len(t["value"].split()) for t in r["conversations"] if t["from"] == "gpt"]
        k["question_words"] += [
            len(t["value"].replace("<image>", "").split()) for t in r["conversations"] if t["from"] == "human"
        ]
    for r in rejected:
        per_kind.setdefault(
            r.get(group, "?"),
            {"records": 0, "rejected": 0, "turns": [], "answer_words": [], "question_words": []},
        )["rejected"] += 1
    for k in per_kind.values():
        for field in ("turns", "answer_words", "question_words"):
            k[field] = _lengths(k[field])
    consistency: dict[str, dict] = {}
    for r in records:
        if r.get("checked"):
            consistency.setdefault(r["teacher"], {"checked": 0, "errors": 0})["checked"] += 1
    for r in rejected:
        if r.get("reason", "").startswith("inconsistent"):
            c = consistency.setdefault(r.get("teacher", "?"), {"checked": 0, "errors": 0})
            c["checked"] += 1
            c["errors"] += 1
    for c in consistency.values():
        c["error_rate"] = round(c["errors"] / c["checked"], 4) if c["checked"] else 0.0
    runs = read_log(out / RUN_LOG)
    totals = Counter()
    for run in runs:
        totals.update({k: v for k, v in run.items() if isinstance(v, int)})
    return {
        "records": len(records),
        "rejected": len(rejected),
        "per_kind": per_kind,
        "rejection_reasons": dict(Counter(reason_class(r.get("reason", "")) for r in rejected).most_common()),
        "consistency": consistency,
        "teachers": dict(Counter(r.get("teacher", "?") for r in records)),
        "teacher_calls": totals.get("calls", 0),
        "cache_hits": totals.get("cache_hits", 0),
        "retries": totals.get("retries", 0),
        "runs": runs,
    }


def write_outputs(out: Path, records: list[dict], rejected: list[dict], title: str) -> dict:
    """Writes llava.json, chat.jsonl, stats.json and CARD.md; returns the stats."""
    llava = [{"id": r["id"], "image": r["image"], "conversations": r["conversations"]} for r in records]
    (out / "llava.json").write_text(json.dumps(llava, ensure_ascii=False, indent=1), encoding="utf-8")
    with (out / "chat.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(to_chat(r), ensure_ascii=False) + "\n")
    s = stats(out, records, rejected)
    (out / "stats.json").write_text(json.dumps(s, indent=1), encoding="utf-8")
    (out / "CARD.md").write_text(card(s, title), encoding="utf-8")
    return s


def card(s: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"{s['records']} records, {s['rejected']} rejected. Teachers: "
        + ", ".join(f"`{t}` ({n})" for t, n in s["teachers"].items())
        + ".",
        "",
        "| kind / task | records | rejected | turns (mean) | answer words (p50 / max) |",
        "|---|---|---|---|---|",
    ]
    for kind, k in sorted(s["per_kind"].items()):
        aw = k["answer_words"]
        lines.append(
            f"| {kind} | {k['records']} | {k['rejected']} | {k['turns'].get('mean', '-')} | {aw.get('p50', '-')} / {aw.get('max', '-')} |"
        )
    if s["rejection_reasons"]:
        lines += [
            "",
            "Rejection reasons: " + ", ".join(f"{r} ({n})" for r, n in s["rejection_reasons"].items()) + ".",
        ]
    if s["consistency"]:
        lines += [
            "",
            "Answers checked against the scenes truth (counts, colours): "
            + ", ".join(
                f"`{t}` {c['errors']}/{c['checked']} wrong ({100 * c['error_rate']:.1f}%)"
                for t, c in s["consistency"].items()
            )
            + ".",
        ]
    lines += [
        "",
        f"Teacher calls {s['teacher_calls']}, cache hits {s['cache_hits']}, retries {s['retries']}.",
        "",
        "Files: `llava.json` (LLaVA format), `chat.jsonl` (chat messages), `stats.json`, "
        "`records.jsonl` / `rejected.jsonl` (append-only, with reasons), `cache.sqlite` (teacher replies).",
        "",
    ]
    return "\n".join(lines)
