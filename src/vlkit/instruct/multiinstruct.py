"""MultiInstruct-style tasks: existing annotations turned into instructions by templates.

One unified format for every task: an instruction with placeholders, filled with the task's
input, region information and options:

    human: "<image>\\n{instruction}"   (the instruction holds {text}, {region}, {options})
    gpt:   the target (a word, a caption, a region "[x1, y1, x2, y2]", or an option)

Regions are boxes in [0, 1] written with two decimals. Complex tasks are also decomposed as in
MultiInstruct: visual grounding -> grounded caption selection and visual grounding selection.
Works on any context: scenes (exact), COCO, LLaVA JSON, captions folders (tasks that need
what a source lacks, e.g. boxes or questions, are skipped for it).
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vlkit.data.contexts import Context, ContextObject, save_image
from vlkit.instruct.llava import Finisher, finish_run
from vlkit.instruct.runner import open_run, run_tasks

# At least five phrasings per task; placeholders: {text} (question / caption / name), {region}, {options}.
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "vqa": (
        "Answer the question about the image. Question: {text}",
        "{text} Answer with a word or a short phrase.",
        "Look at the image and answer: {text}",
        "Question: {text} Give a short answer based on the image.",
        "Use the image to answer this question briefly. {text}",
    ),
    "captioning": (
        "Write a short caption for the image.",
        "Describe the image in one sentence.",
        "Generate a brief caption that summarizes the image.",
        "What does the image show? Answer in one sentence.",
        "Give a one-line description of the picture.",
    ),
    "image_text_matching": (
        'Does the text "{text}" describe the image? Options: {options}',
        'Caption: "{text}". Is this caption a correct description of the image? Options: {options}',
        'Decide whether the image matches the sentence "{text}". Options: {options}',
        'Is "{text}" true of this picture? Options: {options}',
        'Check the description "{text}" against the image. Options: {options}',
    ),
    "classification": (
        "What is the object in the region {region}? Options: {options}",
        "Classify the object inside {region}. Choose from: {options}",
        "Which category does the object at {region} belong to? Options: {options}",
        "Select the label of the object in the box {region}. Options: {options}",
        "Name the object found in region {region}, choosing one of: {options}",
    ),
    "grounded_captioning": (
        "Describe the object in the region {region}.",
        "Write a short caption for the region {region} of the image.",
        "What is in the area {region}? Answer with a short phrase.",
        "Give a brief description of the content of region {region}.",
        "Caption the part of the image inside the box {region}.",
    ),
    "visual_grounding": (
        'Find the region of the image that contains "{text}". Answer with a box [x1, y1, x2, y2].',
        'Where is "{text}" in the image? Give its bounding box.',
        'Locate "{text}" and answer with its region [x1, y1, x2, y2] in [0, 1].',
        'Output the bounding box of "{text}".',
        'Point out "{text}" in the picture with a box.',
    ),
    "grounded_caption_selection": (
        "Which description matches the object in the region {region}? Options: {options}",
        "Select the caption that describes the region {region}. Options: {options}",
        "Choose the phrase that best fits the box {region}. Options: {options}",
        "The region {region} shows which of these? Options: {options}",
        "Pick the correct description of the area {region}. Options: {options}",
    ),
    "visual_grounding_selection": (
        'Which region contains "{text}"? Options: {options}',
        'Select the box that shows "{text}". Options: {options}',
        'Where is "{text}"? Choose one of the regions: {options}',
        'Choose the region that matches "{text}". Options: {options}',
        'Among these boxes, which one holds "{text}"? Options: {options}',
    ),
}
TASKS = tuple(INSTRUCTIONS)


def region(box) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def options(items: list[str]) -> str:
    return " ".join(f"({chr(65 + i)}) {x}" for i, x in enumerate(items))


def _name(o: ContextObject) -> str:
    return f"{o.color} {o.shape}" if o.shape else o.category


def _choices(rng: random.Random, answer: str, others: list[str], k: int = 4) -> list[str]:
    pool = sorted(set(others) - {answer})
    picked = rng.sample(pool, min(k - 1, len(pool))) + [answer]
    rng.shuffle(picked)
    return picked


def _vqa(ctx, rng, other):
    qa = _scene_qa(ctx) if ctx.exact else []
    if not qa:
        return None
    q, a = rng.choice(qa)
    return {"text": q}, a


def _captioning(ctx, rng, other):
    return ({}, rng.choice(ctx.captions)) if ctx.captions else None


def _matching(ctx, rng, other):
    if not ctx.captions:
        return None
    match = (
        rng.random() < 0.5 or other is None or not other.captions or set(other.captions) & set(ctx.captions)
    )
    caption = rng.choice(ctx.captions if match else other.captions)
    return {"text": caption, "options": options(["yes", "no"])}, "yes" if match else "no"


def _objects(ctx: Context) -> list[ContextObject]:
    # Only objects a name picks out alone: grounding "circle" among two circles has no single answer.
    names = [_name(o) for o in ctx.objects]
    return [o for o in ctx.objects if names.count(_name(o)) == 1]


def _classification(ctx, rng, other):
    objs = _objects(ctx)
    if not objs:
        return None
    o = rng.choice(objs)
    if ctx.exact:
        from vlkit.data.scenes import COLOR_NAMES, SHAPES

        vocab = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPES]
    else:
        vocab = [_name(p) for p in (other.objects if other else [])] + [_name(p) for p in ctx.objects]
    names = {_name(p) for p in ctx.objects}
    choices = _choices(rng, _name(o), [v for v in vocab if v not in names])
    return ({"region": region(o.box), "options": options(choices)}, _name(o)) if len(choices) > 1 else None


def _grounded_captioning(ctx, rng, other):
    objs = _objects(ctx)
    if not objs:
        return None
    o = rng.choice(objs)
    return {"region": region(o.box)}, (f"a {o.size} {o.color} {o.shape}" if o.shape else o.category)


def _visual_grounding(ctx, rng, other):
    objs = _objects(ctx)
    if not objs:
        return None
    o = rng.choice(objs)
    return {"text": _name(o)}, region(o.box)


def _caption_selection(ctx, rng, other):
    objs = _objects(ctx)
    if len(objs) < 2:
        return None
    o = rng.choice(objs)
    choices = _choices(rng, _name(o), [_name(p) for p in objs])
    return {"region": region(o.box), "options": options(choices)}, _name(o)


def _grounding_selection(ctx, rng, other):
    objs = _objects(ctx)
    if len(objs) < 2:
        return None
    o = rng.choice(objs)
    choices = _choices(rng, region(o.box), [region(p.box) for p in objs])
    return {"text": _name(o), "options": options(choices)}, region(o.box)


def _scene_qa(ctx: Context) -> list[tuple[str, str]]:
    """Short-answer questions from the truth (scenes): counts, colours, shapes, existence."""
    from vlkit.data.scenes import SHAPES

    objs = ctx.objects
    qa = [("How many shapes are there?", str(len(objs)))]
    qa += [(f"How many {s}s are there?", str(sum(o.shape == s for o in objs))) for s in SHAPES]
    qa += [
        (f"What color is the {o.shape}?", o.color) for o in objs if sum(p.shape == o.shape for p in objs) == 1
    ]
    qa += [
        (f"What shape is the {o.color} object?", o.shape)
        for o in objs
        if sum(p.color == o.color for p in objs) == 1
    ]
    return qa


NEEDS = {
    "vqa": "exact attributes (scenes)",
    "captioning": "captions",
    "image_text_matching": "captions",
    "classification": "an object with a box and other labels as options",
    "grounded_captioning": "an object with a box",
    "visual_grounding": "an object with a box",
    "grounded_caption_selection": "two objects with boxes and distinct names",
    "visual_grounding_selection": "two objects with boxes and distinct names",
}
MAKERS: dict[str, Callable] = {
    "vqa": _vqa,
    "captioning": _captioning,
    "image_text_matching": _matching,
    "classification": _classification,
    "grounded_captioning": _grounded_captioning,
    "visual_grounding": _visual_grounding,
    "grounded_caption_selection": _caption_selection,
    "visual_grounding_selection": _grounding_selection,
}


def make(ctx: Context, task: str, other: Context | None) -> dict | None:
    """One record of `task` in the unified format, or None when the context cannot support it."""
    rng = random.Random(zlib.crc32(f"{ctx.id}/{task}".encode()))
    made = MAKERS[task](ctx, rng, other)
    if made is None:
        return None
    fields, target = made
    template = rng.choice(INSTRUCTIONS[task])
    instruction = template.format(
        text=fields.get("text", ""), region=fields.get("region", ""), options=fields.get("options", "")
    )
    instruction = re.sub(r"\s+", " ", instruction).strip()
    turns = [{"from": "human", "value": f"<image>\n{instruction}"}, {"from": "gpt", "value": target}]
    return {
        "image": ctx.image,
        "kind": task,
        "teacher": "template:",
        "instruction": template,
        **fields,
        "target": target,
        "conversations": turns,
    }


@dataclass
class Job:
    ctx: Context
    task: str
    other: Context | None

    def meta(self) -> dict:
        return {"kind": self.task, "image": self.ctx.image, "teacher": "template:"}


def generate_multiinstruct(
    source: str | Iterable[Context],
    out_dir: str | Path,
    tasks: Iterable[str] = TASKS,
    count: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """One record per (image, task) the source supports; same output files as generate_llava."""
    tasks = list(tasks)
    for t in tasks:
        if t not in INSTRUCTIONS:
            raise ValueError(f"task {t!r}: valid tasks are {', '.join(TASKS)}")
    run, contexts = open_run(source, out_dir, count, seed)
    out = run.out
    skipped: list[str] = []

    def jobs() -> Iterator[tuple[str, Job]]:
        previous = None
        for ctx in contexts:
            for task in tasks:
                yield f"{ctx.id}-{task}", Job(ctx, task, previous)
            previous = ctx

    def work(job: Job) -> dict | None:
        record = make(job.ctx, job.task, job.other)
        if record is not None:
            save_image(job.ctx, out)
        return record

    def finish(task_id: str, job: Job, record: dict | None) -> dict:
        if record is None:
            skipped.append(task_id)
            from vlkit.instruct.check import Rejected

            raise Rejected(f"not applicable: {job.task} needs {NEEDS[job.task]}")
        return checks(task_id, job, record)

    checks = Finisher(run.records)
    run_tasks(run, jobs(), work, finish, 1, progress, count * len(tasks) if count else None)
    return finish_run(run, f"MultiInstruct-style tasks ({', '.join(tasks)})")
