"""The one training loop: AdamW, warmup + cosine, clipping, accumulation, bf16, eval, checkpoints.

Runs as one process or under `torchrun` / `accelerate launch` (accelerate wraps the model in
DDP, or `train.distributed: fsdp` shards it, `vlkit.train.sharding`; each process takes its slice
of every global batch). Everything a run writes goes to
`train.out_dir`: `config.yaml`, `metrics.jsonl`, `checkpoints/`, `plots/`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm

from vlkit.config import Config, check_ranges, save_config, stage_configs
from vlkit.data import build_dataset
from vlkit.jsonl import read_jsonl
from vlkit.models.build import build_model, initial_parts
from vlkit.models.folders import WEIGHTS, load_weights, write_stages
from vlkit.models.kinds import model_kind, per_kind, texts_for
from vlkit.train import sharding
from vlkit.train.batches import Batcher
from vlkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from vlkit.train.detection import DetectionObjective
from vlkit.train.fusion import ClassificationObjective, FusionObjective
from vlkit.train.generative import SHAPE_MULTIPLE, GenerativeObjective
from vlkit.train.objectives import ContrastiveObjective
from vlkit.train.precision import autocast, use_bf16, use_fixed_shapes
from vlkit.train.segmentation import SegmentationObjective

log = logging.getLogger(__name__)


def lr_lambda(cfg: Config) -> Callable[[int], float]:
    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings' scalars and the temperature."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # torch's fused kernel: one pass over each weight instead of one per operation (the staged
    # VLM's weights, its untied 30k-row head most: 24 ms a step -> 4 on 2 cores); FSDP's sharded
    # weights take the default
    fused = not any(isinstance(p, DTensor) for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=cfg.train.betas, fused=fused)


def make_accelerator(find_unused: bool = False) -> Accelerator:
    """accelerate picks the backend; without an accelerator it must be told `cpu=True`, or a
    `torchrun` launch silently runs N independent single-process trainings instead of gloo DDP.
    find_unused: DDP looks for trainable parameters the forward did not use (a generative model's:
    a CLIP tower's pooled-output norm when the VLM reads its grid), or its second step fails waiting
    for their gradients. Not for losses that read a parameter outside the forward (CLIP's logit
    scale): DDP would then mark it ready twice."""
    # bf16 is applied with torch.autocast in the loop rather than accelerate's mixed_precision, whose
    # process-wide state refuses a second training with another setting in the same process.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused)
    return Accelerator(cpu=not torch.accelerator.is_available(), kwargs_handlers=[ddp])


def close_distributed() -> None:
    """Ends this process's part of a distributed run: a barrier, then the process group destroyed
    and, where nothing else holds it any more (DDP runs), collected, which joins its gloo threads.
    An FSDP run's group outlives it (see `exit_distributed_process`, which a process's end calls)."""
    if not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    gc.collect()  # the DDP wrapper, in reference cycles, still holds the group


def exit_distributed_process() -> None:
    """Ends a process that took part in a `torchrun` launch with `os._exit(0)`, output flushed.

    A gloo thread retires each finished collective after the fact, taking the GIL to release its
    tensors; if Python is shutting down by then, the process aborts ("terminate called without an
    active exception", SIGABRT) after a run that succeeded, and torchrun reports it failed. Only
    destroying the group joins those threads, and an FSDP run's group stays referenced by torch's
    DTensor metadata past `destroy_process_group`, so the process ends before Python's shutdown.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    close_distributed()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def tokenizer_texts(cfg: Config, dataset) -> list[str]:
    """What a from-scratch tokenizer is trained on (the kind's: captions, or every text of a
    generative model's data plus the fixed prompts and chat roles), and the same of
    `data.tokenizer_sources` (a staged recipe's later stages' data)."""
    texts = texts_for(cfg, dataset)
    if cfg.data.tokenizer_sources:
        more = replace(cfg.data, sources=cfg.data.tokenizer_sources, tokenizer_sources=[])
        texts += texts_for(cfg, build_dataset(more))
    return texts


def contrastive_objective(cfg: Config, model: torch.nn.Module) -> ContrastiveObjective:
    return ContrastiveObjective(model, seed=cfg.train.seed)


def generative_objective(cfg: Config, model: torch.nn.Module) -> GenerativeObjective:
    """Next-token loss on assistant tokens; frozen vision features cached (`vlm.feature_cache`)."""
    cache = None
    if cfg.vlm.feature_cache and cfg.vlm.freeze_vision:
        from vlkit.models.feature_cache import FeatureCache, encoder_fingerprint

        layer = cfg.vlm.vision_feature_layer  # features of another layer are other features
        name = cfg.model.image_encoder + ("" if layer == -1 else f"-layer{layer}")
        key = encoder_fingerprint(model.vision, name)
        shape = (model.vision_features, model.vision.out_dim)
        cache = FeatureCache(Path(cfg.vlm.feature_cache), key, shape)
    return GenerativeObjective(model, seed=cfg.train.seed, feature_cache=cache)


def detection_objective(cfg: Config, model: torch.nn.Module) -> DetectionObjective:
    return DetectionObjective(model, cfg.detector, seed=cfg.train.seed)


def segmentation_objective(cfg: Config, model: torch.nn.Module) -> SegmentationObjective:
    return SegmentationObjective(model, cfg.segmenter, seed=cfg.train.seed)


def fusion_objective(cfg: Config, model: torch.nn.Module) -> FusionObjective | ClassificationObjective:
    """Pre-training (ITM + MLM, + FLAVA's contrastive loss), or fine-tuning the classifier over the
    fused [CLS] (`model.objective: classify`)."""
    if cfg.model.objective == "classify":
        return ClassificationObjective(model)
    return FusionObjective(model, seed=cfg.train.seed)


def nothing_to_train(cfg: Config, model: torch.nn.Module) -> None:
    """A training-free model is built, not trained: its command fills it from anchors / class names."""
    raise ValueError(
        f"kind: {cfg.kind!r} has nothing to train (frozen pretrained encoders joined without "
        "training); build one with `vlkit asif` (anchors from captioned data) or `vlkit conse`"
    )


Objective = (
    ContrastiveObjective
    | GenerativeObjective
    | DetectionObjective
    | SegmentationObjective
    | FusionObjective
    | ClassificationObjective
)
# model kind → its training objective (`vlkit.models.kinds` has the models floor's table)
OBJECTIVES: dict[str, Callable[[Config, torch.nn.Module], Objective]] = per_kind(
    "objectives",
    {
        "contrastive": contrastive_objective,
        "generative": generative_objective,
        "detector": detection_objective,
        "segmenter": segmentation_objective,
        "training-free": nothing_to_train,
        "fusion": fusion_objective,
    },
)


def make_objective(cfg: Config, model: torch.nn.Module) -> Objective:
    model_kind(cfg.kind)  # an unknown kind named with the valid ones
    return OBJECTIVES[cfg.kind](cfg, model)


@dataclass
class Run:
    """Everything one training run holds; built by `prepare`, advanced by `train_step`."""

    cfg: Config
    accelerator: Accelerator
    model: torch.nn.Module  # the bare model: checkpoints, evaluation, parameters read outside forward
    wrapped: torch.nn.Module  # the same model as accelerate prepared it (DDP across processes)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    objective: Objective
    batcher: Batcher
    start: int  # the step this process starts from (0, or the resumed checkpoint's)
    sharded: bool = False  # FSDP: `model` holds this process's shards, `host` the whole on process 0
    host: torch.nn.Module | None = None  # process 0's unsharded copy, filled by `gathered` to save / evaluate
    bf16: bool = False  # steps run under bf16 autocast (`train.bf16`, "auto" resolved for this device)


def check_shardable(cfg: Config) -> None:
    """`train.distributed: fsdp` shards a generative model, whose loss is one forward call; other
    kinds' losses call their towers' methods outside `forward`, where FSDP has not gathered them."""
    if cfg.kind != "generative":
        raise ValueError(f"train.distributed: fsdp trains kind: generative only, not {cfg.kind!r}; use ddp")
    if cfg.vlm.feature_cache and cfg.vlm.freeze_vision:
        raise ValueError(
            "train.distributed: fsdp cannot fill vlm.feature_cache (it runs the vision tower outside "
            "the model's forward, where FSDP has not gathered it); set vlm.feature_cache=''"
        )
    if cfg.vlm.data_vocabulary:
        raise ValueError(
            "train.distributed: fsdp with vlm.data_vocabulary is not supported (its head indexes "
            "rows of a weight FSDP shards); use ddp"
        )


def prepare(cfg: Config) -> Run:
    """Builds data, model, optimizer and schedule, resuming from the run's latest checkpoint."""
    check_ranges(cfg)  # configs built in code skip load_config's check
    if not model_kind(cfg.kind).trainable:  # refused before the data and encoders load
        nothing_to_train(cfg, None)
    if cfg.train.distributed == "fsdp":
        check_shardable(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = make_accelerator(find_unused=cfg.kind == "generative")
    dataset = build_dataset(cfg.data)
    resume_from = latest_checkpoint(cfg.train.out_dir)
    if resume_from is not None:  # the checkpoint's tokenizer and tower configs, not new ones
        model = build_model(cfg, saved=resume_from)
    else:
        texts = tokenizer_texts(cfg, dataset)
        # The parts are loaded right before building: the new parts' initialisation goes on from
        # the RNG state loading leaves (see build_vlm), as before the loading moved here.
        model = build_model(cfg, texts=texts, **initial_parts(cfg))
    sharded = cfg.train.distributed == "fsdp" and accelerator.num_processes > 1  # 1 process: nothing to shard
    host = None
    if sharded:  # weights load before sharding, the optimizer is built on the shards
        if resume_from is not None:
            load_weights(model, resume_from / WEIGHTS)
        host = sharding.skeleton(model) if accelerator.is_main_process else None
        sharding.shard(model)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start, skipped = 0, 0
    if resume_from is not None:
        load_optimizer = (lambda s: sharding.load_optimizer_state(model, optimizer, s)) if sharded else None
        state = load_checkpoint(resume_from, None if sharded else model, optimizer, scheduler, load_optimizer)
        start, skipped = state["step"], state["counters"]["skipped"]
        log.info("resumed from %s at step %d", resume_from, start)
    bf16 = use_bf16(cfg.train.bf16, accelerator.device.type)
    objective = make_objective(cfg, model)
    if cfg.kind == "generative" and use_fixed_shapes(cfg.vlm.fixed_shapes, bf16, accelerator.device.type):
        objective.shape_multiple = SHAPE_MULTIPLE
    # FSDP's model is already distributed, and accelerate's CPU path would wrap it in DDP too
    wrapped, optimizer = (model, optimizer) if sharded else accelerator.prepare(model, optimizer)
    t = cfg.train
    batcher = Batcher(dataset, t.batch_size, t.seed, accelerator.process_index, accelerator.num_processes)
    batcher.skipped = skipped
    return Run(
        cfg, accelerator, model, wrapped, optimizer, scheduler, objective, batcher, start, sharded, host, bf16
    )


def train_step(run: Run, step: int) -> tuple[float, int, float]:
    """One optimizer step (over `grad_accum` micro-batches) → (this process's loss, images seen, lr used)."""
    t, acc = run.cfg.train, run.accelerator
    run.wrapped.train()
    loss_sum, images = 0.0, 0
    for micro in range(t.grad_accum):
        batch = run.objective.collate(run.batcher.samples(step * t.grad_accum + micro))
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        # an objective may run a batch as several passes whose gradients add up to the batch's
        parts = run.objective.parts(batch) if hasattr(run.objective, "parts") else [batch]
        for k, part in enumerate(parts):
            # gradients are synchronised across processes only in the last pass of the last micro-batch
            last = micro == t.grad_accum - 1 and k == len(parts) - 1
            no_sync = contextlib.nullcontext() if last else acc.no_sync(run.wrapped)
            with no_sync, autocast(acc.device.type, run.bf16):
                loss = run.objective.loss(run.wrapped, part) / t.grad_accum
                acc.backward(loss)
            loss_sum += loss.item()
        images += run.objective.batch_size(batch) * acc.num_processes
    if t.grad_clip:
        acc.clip_grad_norm_(run.model.parameters(), t.grad_clip)
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    return loss_sum, images, lr


def train(
    cfg: Config,
    *,
    evaluate: Callable[[torch.nn.Module, Config], dict[str, float]] | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> Path:
    """Trains (resuming from the run's latest complete checkpoint if any); returns the run folder.

    evaluate: called on the bare model every `train.eval_every` steps and at the end.
    stop_at_step: end this process early after that step (as a crash would), e.g. for tests.
    """
    t, out = cfg.train, Path(cfg.train.out_dir)
    run = prepare(cfg)
    acc, main = run.accelerator, run.accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        _truncate_log(out / "metrics.jsonl", after_step=run.start)
    bar = tqdm(total=t.steps, initial=run.start, disable=not (progress and main), desc="train", unit="step")
    seen, busy = 0, 0.0  # images and seconds of training since the last log line (eval, saves excluded)
    end = min(t.steps, stop_at_step) if stop_at_step is not None else t.steps
    for step in range(run.start, end):
        clock = time.perf_counter()
        loss, images, lr = train_step(run, step)
        seen, busy = seen + images, busy + time.perf_counter() - clock
        done = step + 1
        bar.update(1)
        if done % t.log_every == 0 or done == t.steps:
            loss = acc.reduce(torch.tensor(loss, device=acc.device), "mean").item()  # collective: all ranks
            if main:
                record = {"step": done, "loss": loss, "lr": lr}
                record |= run.objective.log_extras() | {"images_per_s": seen / busy}
                record |= {"skipped": run.batcher.skipped, "processes": acc.num_processes}
                _append_log(out / "metrics.jsonl", record)
                bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{seen / busy:.0f}")
            seen, busy = 0, 0.0
        evaluating = evaluate and ((t.eval_every and done % t.eval_every == 0) or done == t.steps)
        saving = (t.save_every and done % t.save_every == 0) or done == t.steps
        if evaluating or saving:
            _evaluate_and_save(run, done, evaluate if evaluating else None, saving, bar)
    bar.close()
    if run.batcher.skipped:
        log.warning(
            "%d unreadable samples were skipped in total (see the warnings above)", run.batcher.skipped
        )
    if main and end == t.steps:
        from vlkit.plots import plot_metrics_log

        plot_metrics_log(out / "metrics.jsonl", out / "plots")
    return out


def train_stages(
    cfg: Config, *, evaluate: Callable[[torch.nn.Module, Config], dict[str, float]] | None = None, **kwargs
) -> Path:
    """Trains a recipe's stages in order (each resumes like `train`); a recipe without stages is
    one `train`. Returns the last stage's run folder."""
    stages = stage_configs(cfg) or [("", cfg)]
    if cfg.stages and int(os.environ.get("RANK", "0")) == 0:
        write_stages(cfg.train.out_dir, [name for name, _ in stages])
    for name, stage_cfg in stages:
        if name:
            log.info("stage %s → %s", name, stage_cfg.train.out_dir)
        out = train(stage_cfg, evaluate=evaluate, **kwargs)
    close_distributed()
    return out


def gathered(run: Run, optimizer: bool) -> tuple[torch.nn.Module | None, dict | None]:
    """Collective: the whole model and (if asked) the optimizer's state on process 0, (None, None)
    elsewhere. A sharded run gathers them into `run.host` (`sharding.release` frees it)."""
    main = run.accelerator.is_main_process
    if run.sharded:
        state = sharding.gather(run.model, run.optimizer if optimizer else None, run.host)
        return run.host, state
    return (run.model if main else None), (run.optimizer.state_dict() if main and optimizer else None)


def _evaluate_and_save(run: Run, done: int, evaluate: Callable | None, saving: bool, bar) -> None:
    """Process 0 evaluates and saves the whole model; every process takes part in gathering it."""
    cfg, out = run.cfg, Path(run.cfg.train.out_dir)
    model, optimizer_state = gathered(run, optimizer=saving)
    if model is not None and evaluate:
        scores = evaluate(model, cfg)
        _append_log(out / "metrics.jsonl", {"step": done} | {f"eval/{k}": v for k, v in scores.items()})
        bar.write(f"step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if model is not None and saving:
        counters = {"skipped": run.batcher.skipped}
        save_checkpoint(out, done, model, cfg, optimizer_state, run.scheduler, counters)
    if run.host is not None:
        sharding.release(run.host)
    run.accelerator.wait_for_everyone()


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, after_step: int) -> None:
    """On resume, drop log lines a crashed run wrote after the checkpoint it resumes from (and a
    last line the crash cut short; a bad line before it is an error naming file:line)."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path, torn_tail=True) if r.get("step", 0) <= after_step]
    path.write_text("".join(json.dumps(record) + "\n" for record in keep))
