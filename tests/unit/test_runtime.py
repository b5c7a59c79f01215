"""Where a run executes: the device choice and the launches refused rather than silently changed, checkpoints'
device RNG, and main-process-only work (several processes are in tests/reliability/test_distributed.py)."""

import threading
import time

import pytest
import torch

from gemma_embed import checkpoint
from gemma_embed.config import ConfigError
from gemma_embed.runtime import check_cpu_launch, choose_device, cpu_threads, wait_for


@pytest.mark.parametrize("requested,processes,cuda,expected", [
    ("auto", 1, True, "cuda"), ("auto", 4, True, "cuda"), ("auto", 1, False, "cpu"), ("cpu", 2, False, "cpu"),
    ("cpu", 2, True, "cpu"), ("cuda", 2, True, "cuda"),
])
def test_device_choice(requested, processes, cuda, expected):
    assert choose_device(requested, processes, cuda) == expected


def test_several_processes_without_cuda_need_an_explicit_cpu_choice():
    with pytest.raises(ConfigError, match=r"accelerate launch --multi_gpu --num_processes 4 .* --device cpu"):
        choose_device("auto", 4, False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        choose_device("cuda", 1, False)
    with pytest.raises(ConfigError, match="must be one of"):
        choose_device("gpu", 1, True)


def test_accelerate_launch_cpu_with_several_processes_is_refused_with_the_right_command():
    argv = ["python", "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "train/phase1.py"]
    with pytest.raises(ConfigError, match="accelerate launch --multi_gpu --num_processes 2 .* --device cpu"):
        check_cpu_launch(argv, world_size=1)
    with pytest.raises(ConfigError, match="not the 3 asked for"):
        check_cpu_launch(["accelerate", "launch", "--cpu", "--num_processes=3", "x.py"], world_size=1)
    check_cpu_launch(argv, world_size=2)  # torchrun did start them
    check_cpu_launch(["accelerate", "launch", "--cpu", "--num_processes", "1", "x.py"], world_size=1)
    check_cpu_launch(None, world_size=1)


def test_wait_for_polls_without_a_collective():
    box = []
    threading.Timer(0.3, lambda: box.append("done")).start()
    began = time.time()
    assert wait_for(lambda: box[0] if box else None, "test", poll=0.05) == "done"
    assert time.time() - began >= 0.25


def test_checkpoints_hold_and_restore_only_this_process_device_rng(monkeypatch):
    state = checkpoint.rng_state(torch.device("cpu"))
    assert "cuda" not in state  # a CPU process has no device generator to save
    own = torch.arange(16, dtype=torch.uint8)
    assert checkpoint.device_rng(own, 0) is own  # the new format: this process's device only
    eight = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]  # written by an old run seeing 8 GPUs
    assert checkpoint.device_rng(eight, 1) is eight[1]  # resumed on fewer: this process's own device's state
    assert checkpoint.device_rng(eight[:2], 5) is None  # an index the old run did not have: nothing to restore
    assert checkpoint.device_rng(eight, None) is None and checkpoint.device_rng(None, 0) is None

    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: restored.append((s, device)))
    device = torch.device("cuda", 1)
    checkpoint.set_rng_state({**state, "cuda": eight}, device)
    assert restored == [(eight[1], device)]
    restored.clear()
    checkpoint.set_rng_state({**state, "cuda": eight}, torch.device("cpu"))  # resumed on CPU: no device state
    assert restored == []


def test_accelerates_one_thread_default_is_raised_to_the_processes_share_of_the_cpus():
    """`accelerate launch train/...` without --cpu gives each CPU process one thread (OMP_NUM_THREADS=1); the
    user's own choice (--cpu, --num_cpu_threads_per_process, OMP_NUM_THREADS) is left alone."""
    import os

    available = len(os.sched_getaffinity(0))
    launcher = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "train/decoder.py", "--config", "x.yaml"]
    assert cpu_threads({"argv": launcher, "env": {}}, 1) == available
    assert cpu_threads({"argv": launcher, "env": {}}, 2) == max(1, available // 2)
    assert cpu_threads({"argv": launcher[:3] + ["--cpu"] + launcher[3:], "env": {}}, 1) is None
    assert cpu_threads({"argv": launcher[:3] + ["--num_cpu_threads_per_process", "1"] + launcher[3:], "env": {}}, 1) is None
    assert cpu_threads({"argv": launcher, "env": {"OMP_NUM_THREADS": "1"}}, 1) is None
    assert cpu_threads({"argv": ["bash"], "env": {}}, 1) is None and cpu_threads(None, 1) is None
