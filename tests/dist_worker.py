"""Run under `torchrun --nproc_per_node N tests/dist_worker.py CONFIG OUT` (or plainly, N = 1).

Computes the contrastive loss and gradients of one global batch, split across the processes
the way the training loop splits it, and saves them from rank 0 (after DDP averaged them).
"""

import sys

import torch

from vlkit.config import load_config
from vlkit.data import build_dataset, iter_captions
from vlkit.models.build import build_model
from vlkit.train.batches import Batcher
from vlkit.train.loop import exit_distributed_process, make_accelerator
from vlkit.train.objectives import ContrastiveObjective


def main(config_path: str, out_path: str) -> None:
    cfg = load_config(config_path)
    accelerator = make_accelerator()
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, texts=iter_captions(dataset, 500))
    objective = ContrastiveObjective(model, seed=cfg.train.seed)
    wrapped = accelerator.prepare(model)
    batcher = Batcher(
        dataset, cfg.train.batch_size, cfg.train.seed, accelerator.process_index, accelerator.num_processes
    )
    batch = objective.collate(batcher.samples(0))
    loss = objective.loss(wrapped, batch)
    accelerator.backward(loss)
    mean_loss = accelerator.reduce(loss.detach(), "mean")
    if accelerator.is_main_process:
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": mean_loss, "grads": grads, "world": accelerator.num_processes}, out_path)


main(sys.argv[1], sys.argv[2])
exit_distributed_process()  # as `vlkit train` ends a torchrun process
