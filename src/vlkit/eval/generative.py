"""Generative tasks: VQA, captioning (and scenes' caption coverage), SNLI-VE and NLVR2 as short
answers, grounding and segmentation.

A generative model is anything with
    answer(images: list, questions: list[str]) -> list[str]      short answers, one per image
    caption(images: list, prompt: str | None = None) -> list[str]
(vlkit's own VLMs and `vlkit.models.hf_models.HFGenerativeModel` for transformers
image-text-to-text models), optionally `segment(images, phrases) -> list[bool[H, W]]` and
`ground(images, phrases) -> list[(x1, y1, x2, y2)]`. Images are passed as uint8[H, W, 3] arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from vlkit import metrics
from vlkit.eval.embedded import as_arrays
from vlkit.eval.loaders import Benchmark
from vlkit.eval.result import TaskResult, hateful_memes_result

SNLI_VE_QUESTION = 'Does the image show that "{}"? Answer entailment, neutral or contradiction.'
NLVR2_QUESTION = 'Left and right image: is it true that "{}"? Answer true or false.'
HATEFUL_QUESTION = 'Is this meme with the text "{}" hateful? Answer yes or no.'
_YES_NO_TO_BOOL = {"yes": "true", "no": "false"}


def _batched(
    fn: Callable[[list, list], list],
    examples: list[dict],
    args: Callable[[dict], tuple],
    batch_size: int,
    desc: str,
    progress: bool,
) -> list:
    """fn(images, others) over `examples` in batches; args(example) → (image, other)."""
    out: list = []
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        chunk = [args(e) for e in examples[start : start + batch_size]]
        images = as_arrays([c[0] for c in chunk])
        result = list(fn(images, [c[1] for c in chunk]))
        if len(result) != len(chunk):
            raise ValueError(f"{desc}: the model returned {len(result)} outputs for a batch of {len(chunk)}")
        out += result
    return out


def vqa(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    """Official VQA v2 accuracy, overall and per question type and answer type, beside the
    question-only prior and the answer shares; where the examples carry a held-out wording of
    each question (`reworded`: scenes), the accuracy on those too (`paraphrase_accuracy`)."""
    ex = bench.examples
    answers = _batched(model.answer, ex, lambda e: (e["image"], e["question"]), batch_size, "vqa", progress)
    acc = [metrics.vqa_accuracy(a, e["answers"]) for a, e in zip(answers, ex)]
    types = [e.get("question_type", "") for e in ex]
    # the blind baseline, per question template where the data gives one (scenes), else per question
    keys = [e.get("question_template") or e["question"] for e in ex]
    prior = metrics.question_only_prior(keys, [e["answers"] for e in ex])
    breakdowns = {
        f"vqa_accuracy by {field}": _mean_by([e.get(field, "") for e in ex], acc)
        for field in ("question_type", "answer_type")
    }
    # per type, and over every question ("all")
    breakdowns["question-only prior by question_type"] = _mean_by(types, prior) | {
        "all": float(np.mean(prior))
    }
    breakdowns["answer share by question_type"] = _answer_shares(types, answers)
    scores = {"vqa_accuracy": float(np.mean(acc))}
    preds = [
        {
            "id": e["id"],
            "question": e["question"],
            "answer": a,
            "normalized": metrics.vqa_normalize(a),
            "truth": Counter(e["answers"]).most_common(1)[0][0],
            "accuracy": s,
        }
        for e, a, s in zip(ex, answers, acc)
    ]
    if ex and all("reworded" in e for e in ex):
        ask = lambda e: (e["image"], e["reworded"])  # noqa: E731
        reworded = _batched(model.answer, ex, ask, batch_size, "vqa reworded", progress)
        reworded_acc = [metrics.vqa_accuracy(a, e["answers"]) for a, e in zip(reworded, ex)]
        scores["paraphrase_accuracy"] = float(np.mean(reworded_acc))
        breakdowns["paraphrase_accuracy by question_type"] = _mean_by(types, reworded_acc)
        if all("reworded_wording" in e for e in ex):  # which hand-written wording is misread
            wordings = [e["reworded_wording"] for e in ex]
            breakdowns["paraphrase_accuracy by wording"] = _mean_by(wordings, reworded_acc)
        for p, e, a, s in zip(preds, ex, reworded, reworded_acc):  # beside the template's, to compare
            p |= {"reworded": e["reworded"], "reworded_answer": a, "reworded_accuracy": s}
    return TaskResult("vqa", bench.name, scores, breakdowns, preds, split=bench.split, samples=len(ex))


def _captions(model, ex: list[dict], batch_size: int, progress: bool, prompt: str | None) -> list[str]:
    """The model's caption of every example's image, in batches."""
    return _batched(
        lambda ims, _: model.caption(ims, prompt),
        ex,
        lambda e: (e["image"], None),
        batch_size,
        "caption",
        progress,
    )


def caption(
    model, bench: Benchmark, batch_size: int = 8, progress: bool = False, prompt: str | None = None
) -> TaskResult:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr against every reference caption (pycocoevalcap)."""
    ex = bench.examples
    captions = _captions(model, ex, batch_size, progress, prompt)
    preds = {e["id"]: c for e, c in zip(ex, captions)}
    scores = metrics.caption_scores(preds, {e["id"]: list(e["captions"]) for e in ex})
    records = [{"id": e["id"], "caption": c, "references": e["captions"]} for e, c in zip(ex, captions)]
    return TaskResult("caption", bench.name, scores, {}, records, split=bench.split, samples=len(ex))


def caption_coverage(
    model, bench: Benchmark, batch_size: int = 8, progress: bool = False, prompt: str | None = None
) -> TaskResult:
    """Does each caption name every object of its image by colour and shape? (examples carry
    `objects`: [(colour, shape)]; scored by `metrics.caption_coverage`)."""
    ex = bench.examples
    captions = _captions(model, ex, batch_size, progress, prompt)
    scores = metrics.caption_coverage(captions, [e["objects"] for e in ex])
    records = [
        {"id": e["id"], "caption": c, "objects": [" ".join(o) for o in e["objects"]]}
        for e, c in zip(ex, captions)
    ]
    return TaskResult("caption-coverage", bench.name, scores, {}, records, split=bench.split, samples=len(ex))


def snli_ve(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    ex = bench.examples
    q = lambda e: (e["image"], SNLI_VE_QUESTION.format(e["hypothesis"]))  # noqa: E731
    answers = _batched(model.answer, ex, q, batch_size, "snli-ve", progress)
    return _exact(bench, "snli-ve", "snli_ve_accuracy", answers, [e["label"] for e in ex])


def nlvr2(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    """The left and right images side by side as one image (single-image models), true / false."""
    ex = bench.examples
    q = lambda e: (_side_by_side(e["images"]), NLVR2_QUESTION.format(e["sentence"]))  # noqa: E731
    answers = _batched(model.answer, ex, q, batch_size, "nlvr2", progress)
    answers = [_YES_NO_TO_BOOL.get(a.strip().lower(), a) for a in answers]
    return _exact(bench, "nlvr2", "nlvr2_accuracy", answers, [e["label"] for e in ex])


def hateful_memes(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    """yes → score 1, anything else 0: AUROC of a hard decision (models without scores)."""
    q = lambda e: (e["image"], HATEFUL_QUESTION.format(e["text"]))  # noqa: E731
    answers = _batched(model.answer, bench.examples, q, batch_size, "hateful-memes", progress)
    score = np.array([1.0 if a.strip().lower().startswith("yes") else -1.0 for a in answers])
    return hateful_memes_result(bench, score)


def segmentation(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    ex = bench.examples
    masks = _batched(
        model.segment, ex, lambda e: (e["image"], e["phrase"]), batch_size, "segmentation", progress
    )
    ious = [metrics.mean_iou([m], [e["mask"]]) for m, e in zip(masks, ex)]
    preds = [{"id": e["id"], "phrase": e["phrase"], "iou": i} for e, i in zip(ex, ious)]
    return TaskResult(
        "segmentation",
        bench.name,
        {"mIoU": metrics.mean_iou(masks, [e["mask"] for e in ex])},
        {},
        preds,
        samples=len(ex),
    )


def grounding(model, bench: Benchmark, batch_size: int = 8, progress: bool = False) -> TaskResult:
    ex = bench.examples
    boxes = _batched(model.ground, ex, lambda e: (e["image"], e["phrase"]), batch_size, "grounding", progress)
    preds = [
        {"id": e["id"], "phrase": e["phrase"], "box": e["box"], "predicted": list(b)}
        for e, b in zip(ex, boxes)
    ]
    scores = {"grounding_acc@0.5": metrics.grounding_accuracy(boxes, [e["box"] for e in ex])}
    return TaskResult("grounding", bench.name, scores, {}, preds, split=bench.split, samples=len(ex))


def _exact(bench: Benchmark, task: str, key: str, answers: list[str], labels: list[str]) -> TaskResult:
    correct = [a.strip().lower() == g for a, g in zip(answers, labels)]
    preds = [
        {"id": e["id"], "answer": a, "label": g, "correct": c}
        for e, a, g, c in zip(bench.examples, answers, labels, correct)
    ]
    by_label = _mean_by(labels, [float(c) for c in correct])
    return TaskResult(
        task,
        bench.name,
        {key: metrics.exact_match(answers, labels)},
        {f"{key} by label": by_label},
        preds,
        split=bench.split,
        samples=len(labels),
    )


def _answer_shares(groups: Sequence[str], answers: Sequence[str], top: int = 4) -> dict[str, float]:
    """ "type: answer" → share of that type's predictions, the `top` most common per type: a model
    that says "no" to every existence question shows as "existence: no" 1.0."""
    by_group: dict[str, Counter] = {}
    for g, a in zip(groups, answers):
        by_group.setdefault(g or "unknown", Counter())[metrics.vqa_normalize(a)] += 1
    return {
        f"{g}: {a}": n / sum(c.values()) for g, c in sorted(by_group.items()) for a, n in c.most_common(top)
    }


def _mean_by(groups: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for g, v in zip(groups, values):
        sums.setdefault(g or "unknown", []).append(v)
    return {g: float(np.mean(v)) for g, v in sorted(sums.items())}


def _side_by_side(images: Sequence) -> np.ndarray:
    left, right = as_arrays(list(images))
    h = max(left.shape[0], right.shape[0])
    pad = lambda im: np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)))  # noqa: E731
    return np.concatenate([pad(left), pad(right)], axis=1)
