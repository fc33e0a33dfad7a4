"""Generate visual instruction data: LLaVA, MiniGPT-4, MultiInstruct, in-context sets.

Turn images with symbolic annotations into instruction data (LLaVA JSON + chat JSONL, stats.json,
CARD.md). Runs resume where they stopped; teacher replies are cached in <out>/cache.sqlite.
Sources are data names: scenes (with --count), a COCO instances/captions file or folder (captions
and boxes), a LLaVA JSON or chat JSONL (assistant turns), a folder with captions.jsonl (optional
boxes), or any other data source (photos, fashion-mnist, a saved HF dataset, shards: captions).
Teachers: template: (exact, no LLM) | local:NAME (registry LM or folder) | openai:MODEL@BASE_URL
(key from --api-key-env).

Examples:
    vlkit instruct llava --source scenes --count 1000 --out data/scenes-instruct
    vlkit serve --lm smollm2-135m --port 8000 &
    vlkit instruct llava --source coco/ --teacher openai:smollm2-135m@http://127.0.0.1:8000/v1 --concurrency 8 --out out/
    vlkit instruct minigpt4 --source photos/ --describer runs/vlm --teacher local:smollm2-135m --out out/
    vlkit instruct multiinstruct --source scenes --count 500 --out data/multi
    vlkit instruct incontext --input data/scenes-instruct/llava.json --k 3 --out data/icl
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from vlkit.commands import Arg, RayAddress


@dataclass(frozen=True)
class TeacherCalls:
    """How a teacher LLM is called.

    Args:
        api_key_env: environment variable holding the API key
        concurrency: teacher calls in flight
        max_tokens: longest teacher reply, in tokens
        temperature: teacher sampling temperature
        rate: max teacher calls per minute (0: no limit)
        retries: retries on timeouts, 429 and 5xx (backoff doubles)
        timeout: seconds per teacher call
        cache: SQLite file of teacher replies (default: <out>/cache.sqlite)
        ray: make the teacher calls on Ray actors, each holding the teacher once: alone, a Ray
            started here; with ADDRESS, that cluster's (cache, resume and records as without)
        ray_workers: teacher actors with --ray (default: one per CPU of the cluster)
    """

    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 1
    max_tokens: int = 512
    temperature: float = 0.0
    rate: float = 0.0
    retries: int = 4
    timeout: float = 120.0
    cache: str | None = None
    ray: RayAddress = None
    ray_workers: int | None = None

    def generator_kwargs(self) -> dict:
        """The keyword arguments the LLM-teacher generators (llava, minigpt4) take."""
        from vlkit.decoding import Decoding
        from vlkit.instruct import Settings

        settings = Settings(
            Decoding.from_openai(self.max_tokens, self.temperature),
            timeout=self.timeout,
            retries=self.retries,
            rate_per_minute=self.rate,
        )
        return dict(
            concurrency=self.concurrency, settings=settings, api_key_env=self.api_key_env, cache=self.cache
        )

    def on_ray(self) -> AbstractContextManager:
        """Connected to Ray for the run with --ray; nothing to do without."""
        if not self.ray:
            return nullcontext()
        from vlkit.scale.cluster import connected

        return connected(self.ray)

    def teacher(self, spec: str):
        """The teacher spec, or with --ray (inside `on_ray`) the teacher on Ray actors."""
        if not self.ray:
            return spec
        from vlkit.scale.cluster import pool_size
        from vlkit.scale.teaching import RayTeacher

        return RayTeacher(spec, self.api_key_env, pool_size(self.ray_workers), self.concurrency)


CALLS = TeacherCalls()


@dataclass(frozen=True)
class Source:
    """The images an instruction set is made from, and where it is written.

    Args:
        source: a data name (scenes needs --count; the list: vlkit instruct --help)
        out: output folder (rerun to resume)
        count: images to use (needed for scenes)
        seed: scenes world seed
    """

    source: str
    out: str
    count: int | None = None
    seed: int = 0

    def generator_kwargs(self) -> dict:
        return dict(count=self.count, seed=self.seed)


def llava(
    *,
    data: Source,
    teacher: str = "template:",
    kinds: str = "conversation,detail,reasoning",
    calls: TeacherCalls = CALLS,
    progress: bool = True,
) -> None:
    """Conversation, detailed description, complex reasoning.

    Args:
        teacher: template: | local:NAME | openai:MODEL@BASE_URL
        kinds: comma-separated kinds
    """
    from vlkit import instruct

    kwargs = data.generator_kwargs() | calls.generator_kwargs()
    with calls.on_ray():
        stats = instruct.generate_llava(
            data.source, data.out, calls.teacher(teacher), kinds.split(","), progress=progress, **kwargs
        )
    _report(stats, data.out)


def minigpt4(
    *,
    data: Source,
    teacher: str,
    describer: str,
    calls: TeacherCalls = CALLS,
    progress: bool = True,
) -> None:
    """A VLM describes each image, a teacher cleans the text.

    Args:
        teacher: local:NAME | openai:MODEL@BASE_URL
        describer: generative VLM folder (vlkit.load)
    """
    import vlkit
    from vlkit import instruct

    kwargs = data.generator_kwargs() | calls.generator_kwargs()
    model, name = vlkit.load(describer), str(Path(describer).resolve())
    with calls.on_ray():
        stats = instruct.generate_minigpt4(
            data.source,
            data.out,
            model,
            calls.teacher(teacher),
            describer_name=name,
            progress=progress,
            **kwargs,
        )
    _report(stats, data.out)


def multiinstruct(
    *,
    data: Source,
    tasks: str | None = None,
    progress: bool = True,
) -> None:
    """Task templates: VQA, captioning, grounding, ...

    Args:
        tasks: comma-separated tasks (default: all)
    """
    from vlkit import instruct

    chosen = tasks.split(",") if tasks else instruct.TASKS
    stats = instruct.generate_multiinstruct(
        data.source, data.out, chosen, progress=progress, **data.generator_kwargs()
    )
    _report(stats, data.out)


def incontext(
    *,
    input_json: Annotated[str, Arg(("--input",))],
    out: str,
    k: int = 3,
    by: Literal["text", "image"] = "text",
    encoder: str = "minilm-l6",
    model: str | None = None,
    limit: int | None = None,
) -> None:
    """Group similar records into sets of k examples + a query.

    Args:
        input_json: a LLaVA JSON (e.g. <out>/llava.json)
        out: output folder
        k: in-context examples per set
        by: embed texts (--encoder) or images (--model)
        encoder: registry text encoder
        model: vlkit contrastive model for --by image
        limit: at most N records
    """
    from vlkit import instruct

    _report(instruct.generate_incontext(input_json, out, k, by, encoder, model, limit), out)


def _report(stats: dict, out: str) -> None:
    print(json.dumps({k: v for k, v in stats.items() if k not in ("per_kind", "runs")}, indent=1))
    print(f"output: {out}")
