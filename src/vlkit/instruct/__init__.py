"""Instruction data generation: images with symbolic annotations -> visual instruction sets.

    from vlkit import instruct
    instruct.generate_llava("scenes", "data/scenes-instruct", teacher="template:", count=1000)
    instruct.generate_llava("coco/", "out/", teacher="openai:smollm2-135m@http://127.0.0.1:8000/v1", concurrency=8)
    instruct.generate_minigpt4("photos/", "out/", describer=vlkit.load("runs/vlm"), teacher="local:smollm2-135m")
    instruct.generate_multiinstruct("scenes", "data/multi", count=500)
    instruct.generate_incontext("data/scenes-instruct/llava.json", "data/icl", k=3)

Modules, in pipeline order: context (symbolic input) -> prompts / template (what teachers are
asked or write) -> teachers (spec strings, cache, retries) -> runner (ordered, resumable,
concurrent) -> check (parse, validate, truth, dedup) -> output (LLaVA JSON, chat JSONL, stats,
card); one module per generator: llava, minigpt4, multiinstruct, incontext.
"""

from vlkit.instruct.incontext import generate_incontext
from vlkit.instruct.llava import generate_llava
from vlkit.instruct.minigpt4 import generate_minigpt4
from vlkit.instruct.multiinstruct import TASKS, generate_multiinstruct
from vlkit.instruct.prompts import KINDS
from vlkit.instruct.teachers import Settings

__all__ = [
    "KINDS",
    "TASKS",
    "Settings",
    "generate_incontext",
    "generate_llava",
    "generate_minigpt4",
    "generate_multiinstruct",
]
