"""The one training loop: AdamW, warmup + cosine, clipping, accumulation, bf16, eval, checkpoints.

Runs as one process or under `torchrun` / `accelerate launch` (accelerate wraps the model in
DDP; each process takes its slice of every global batch). Everything a run writes goes to
`train.out_dir`: `config.yaml`, `metrics.jsonl`, `checkpoints/`, `plots/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from vlkit.config import Config, save_config
from vlkit.data import build_dataset, iter_captions
from vlkit.models.build import build_model
from vlkit.train.batches import Batcher
from vlkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from vlkit.train.objectives import ContrastiveObjective

log = logging.getLogger(__name__)
TOKENIZER_SAMPLES = 2_000  # samples whose captions train a from-scratch tokenizer (scenes: 10k captions)


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
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=cfg.train.betas)


def make_accelerator() -> Accelerator:
    """accelerate picks the backend; without an accelerator it must be told `cpu=True`, or a
    `torchrun` launch silently runs N independent single-process trainings instead of gloo DDP."""
    # bf16 is applied with torch.autocast in the loop rather than accelerate's mixed_precision, whose
    # process-wide state refuses a second training with another setting in the same process.
    return Accelerator(cpu=not torch.accelerator.is_available())


def train(
    cfg: Config,
    *,
    evaluate: Callable[[torch.nn.Module, Config], dict[str, float]] | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> Path:
    """Trains (resuming from the run's latest complete checkpoint if any); returns the run folder.

    evaluate: called on the unwrapped model every `train.eval_every` steps and at the end.
    stop_at_step: end this process early after that step (as a crash would), e.g. for tests.
    """
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    accelerator = make_accelerator()
    out = Path(t.out_dir)
    main = accelerator.is_main_process
    dataset = build_dataset(cfg.data)
    resume_from = latest_checkpoint(out)
    if resume_from is not None:
        model = build_model(cfg, saved=resume_from)
    else:
        model = build_model(cfg, texts=iter_captions(dataset, TOKENIZER_SAMPLES))
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start, counters = 0, {"skipped": 0}
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scheduler)
        start, counters = state["step"], state["counters"]
        log.info("resumed from %s at step %d", resume_from, start)
    objective = ContrastiveObjective(model, seed=cfg.train.seed)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    batcher = Batcher(dataset, t.batch_size, t.seed, accelerator.process_index, accelerator.num_processes)
    batcher.skipped = counters["skipped"]

    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        _truncate_log(out / "metrics.jsonl", after_step=start)
    bar = tqdm(total=t.steps, initial=start, disable=not (progress and main), desc="train", unit="step")
    seen, clock = 0, time.perf_counter()
    end = min(t.steps, stop_at_step) if stop_at_step is not None else t.steps
    for step in range(start, end):
        wrapped.train()
        loss_sum = 0.0
        for micro in range(t.grad_accum):
            batch = objective.collate(batcher.samples(step * t.grad_accum + micro))
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            sync = micro == t.grad_accum - 1
            no_sync = contextlib.nullcontext() if sync else accelerator.no_sync(wrapped)
            bf16 = torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=t.bf16)
            with no_sync, bf16:
                loss = objective.loss(wrapped, batch) / t.grad_accum
                accelerator.backward(loss)
            loss_sum += loss.item()
            seen += objective.batch_size(batch) * accelerator.num_processes
        if t.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        done = step + 1
        bar.update(1)
        if done % t.log_every == 0 or done == t.steps:
            loss_sum = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), "mean").item()
        if main and (done % t.log_every == 0 or done == t.steps):
            rate = seen / (time.perf_counter() - clock)
            record = {"step": done, "loss": loss_sum, "lr": scheduler.get_last_lr()[0]}
            record |= {"logit_scale": model.logit_scale.exp().item(), "images_per_s": rate}
            record |= {"skipped": batcher.skipped, "processes": accelerator.num_processes}
            _append_log(out / "metrics.jsonl", record)
            bar.set_postfix(loss=f"{loss_sum:.3f}", img_s=f"{rate:.0f}")
            seen, clock = 0, time.perf_counter()
        if evaluate and main and ((t.eval_every and done % t.eval_every == 0) or done == t.steps):
            scores = evaluate(model, cfg)
            _append_log(out / "metrics.jsonl", {"step": done} | {f"eval/{k}": v for k, v in scores.items()})
            bar.write(f"step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if (t.save_every and done % t.save_every == 0) or done == t.steps:
            counters["skipped"] = batcher.skipped
            if main:
                save_checkpoint(out, done, model, cfg, optimizer, scheduler, counters)
            accelerator.wait_for_everyone()
    bar.close()
    if batcher.skipped:
        log.warning("%d unreadable samples were skipped in total (see the warnings above)", batcher.skipped)
    if main and end == t.steps:
        from vlkit.plots import plot_metrics_log

        plot_metrics_log(out / "metrics.jsonl", out / "plots")
    return out


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, after_step: int) -> None:
    """On resume, drop log lines a crashed run wrote after the checkpoint it resumes from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= after_step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut short by the crash
            continue
    path.write_text("".join(line + "\n" for line in keep))
