"""Run under `torchrun --nproc_per_node N tests/train_worker.py CONFIG [STOP_AT_STEP]` (or plainly).

The training loop as `vlkit train CONFIG` runs it, optionally ended after STOP_AT_STEP as a crash
would end it (`train(stop_at_step=...)`): a test resumes the run folder with another launch.
With RECORD_SAMPLES=FOLDER, each process appends [micro-step, position, sample key] per sample
it trains on to FOLDER/rank<r>-of-<n>.jsonl.
"""

import json
import os
import sys
from pathlib import Path

from vlkit.config import load_config
from vlkit.train.batches import Batcher
from vlkit.train.loop import exit_distributed_process, train

if os.environ.get("RECORD_SAMPLES"):
    folder, read = Path(os.environ["RECORD_SAMPLES"]), Batcher.samples

    def recorded(self, micro_step):
        samples = read(self, micro_step)
        with open(folder / f"rank{self.rank}-of-{self.world}.jsonl", "a") as f:
            f.writelines(json.dumps([micro_step, p, sample["key"]]) + "\n" for p, sample in samples)
        return samples

    Batcher.samples = recorded

cfg = load_config(sys.argv[1])
stop_at_step = int(sys.argv[2]) if len(sys.argv) > 2 else None
train(cfg, stop_at_step=stop_at_step, progress=False)
exit_distributed_process()  # as `vlkit train` ends a torchrun process
