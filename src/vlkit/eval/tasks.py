"""The evaluation tasks by name: `vlkit eval --task` choices and the harness's table keys.

A leaf that imports nothing of vlkit, so building the CLI parser stays cheap.
"""

from typing import Literal, get_args

Task = Literal[
    "zero-shot", "retrieval", "winoground", "vqa", "caption", "caption-coverage", "grounding",
    "segmentation", "hateful-memes", "snli-ve", "nlvr2", "detection",
]  # fmt: skip
TASKS: tuple[str, ...] = get_args(Task)
