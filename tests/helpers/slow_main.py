"""Run by tests/reliability/test_distributed.py under `accelerate launch` with 2 CPU processes: the main process works
for WORK seconds while the other waits, under a process-group timeout of TIMEOUT seconds, then both meet in a
collective. argv: mode (barrier: the other waits in a collective; main_only: it waits on a file), TIMEOUT, WORK,
a folder for the markers."""

import sys
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist

from gemma_embed.runtime import MainOnly, leave_process_group, make_accelerator

mode, timeout, work, folder = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cfg = SimpleNamespace(device="cpu", mixed_precision="no", dist_timeout_minutes=timeout / 60)
accelerator, _ = make_accelerator(cfg)


def slow():
    time.sleep(work)
    return 42


if mode == "barrier":
    result = slow() if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
else:
    result = MainOnly(accelerator, folder)("slow", slow)
total = torch.tensor([float(result)])
dist.all_reduce(total)
if accelerator.is_main_process:
    print(f"result {int(total.item()) // 2} on both", flush=True)
leave_process_group()  # as the training loop ends: no gloo teardown at interpreter exit
