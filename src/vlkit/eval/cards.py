"""The Hugging Face model card `model-index` block, merged into README.md next to a checkpoint.

    ---
    model-index:
    - name: my-model
      results:
      - task: {type: zero-shot-image-classification, name: Zero-shot classification}
        dataset: {name: scenes, type: scenes, split: test}
        metrics:
        - {type: accuracy, value: 0.81, name: top1}
    ---

An existing README keeps its prose and other front-matter keys; results of the same task and
dataset (and split) are replaced, others kept.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vlkit.eval.result import TaskResult

# vlkit task → (Hub task type, readable name)
HUB_TASKS = {
    "zero-shot": ("zero-shot-image-classification", "Zero-shot image classification"),
    "retrieval": ("image-text-retrieval", "Image-text retrieval"),
    "winoground": ("image-text-matching", "Winoground"),
    "vqa": ("visual-question-answering", "Visual question answering"),
    "caption": ("image-to-text", "Image captioning"),
    "caption-coverage": ("image-to-text", "Caption coverage (objects named by colour and shape)"),
    "grounding": ("zero-shot-object-detection", "Referring expression grounding"),
    "segmentation": ("image-segmentation", "Referring segmentation"),
    "hateful-memes": ("image-classification", "Hateful Memes"),
    "snli-ve": ("visual-question-answering", "Visual entailment"),
    "nlvr2": ("visual-question-answering", "NLVR2"),
    "detection": ("zero-shot-object-detection", "Open-vocabulary object detection"),
}
METRIC_TYPES = {
    "mAP": "mean_average_precision",
    "top": "accuracy",
    "vqa_accuracy": "accuracy",
    "hm_auroc": "roc_auc",
    "BLEU": "bleu",
}


def _metric_type(name: str) -> str:
    for prefix, kind in METRIC_TYPES.items():
        if name.startswith(prefix):
            return kind
    return name.lower().replace("@", "_at_")


def model_index_results(results: list[TaskResult]) -> list[dict]:
    out = []
    for r in results:
        task_type, task_name = HUB_TASKS[r.task]
        out.append(
            {
                "task": {"type": task_type, "name": task_name},
                "dataset": {"name": r.benchmark, "type": r.benchmark, "split": r.split},
                "metrics": [
                    {"type": _metric_type(k), "value": round(float(v), 6), "name": k}
                    for k, v in r.metrics.items()
                ],
            }
        )
    return out


def write_model_card(folder: str | Path, model_name: str, results: list[TaskResult]) -> Path:
    """Writes or merges README.md's front matter in `folder`; returns the README path."""
    path = Path(folder) / "README.md"
    front, body = {}, ""
    if path.is_file():
        front, body = split_front_matter(path.read_text(), str(path))
    new = model_index_results(results)
    index = front.get("model-index") or [{"name": model_name, "results": []}]
    entry = index[0]
    entry.setdefault("name", model_name)

    def key(res: dict) -> tuple:
        return (res["task"]["type"], res["dataset"]["name"], res["dataset"].get("split"))

    replaced = {key(r) for r in new}
    entry["results"] = [r for r in entry.get("results") or [] if key(r) not in replaced] + new
    front["model-index"] = index
    if not body:
        body = f"\n# {model_name}\n\nEvaluated with `vlkit eval`; scores are in the metadata above.\n"
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + body)
    return path


def split_front_matter(text: str, where: str) -> tuple[dict, str]:
    """(front-matter dict, the rest of the text) of a markdown file."""
    if not text.startswith("---\n"):
        return {}, text if text.startswith("\n") else "\n" + text
    end = text.find("\n---", 4)
    if end < 0:
        raise ValueError(f"{where}: front matter opened with '---' is never closed")
    try:
        front = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: front matter is not valid YAML ({err})") from err
    if not isinstance(front, dict):
        raise ValueError(f"{where}: front matter must be a mapping, got {type(front).__name__}")
    rest = text[end + 4 :]
    return front, rest[1:] if rest.startswith("\n") else rest
