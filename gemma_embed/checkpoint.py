"""Training checkpoints: what `--resume` needs to continue exactly where a run stopped.

A checkpoint is a folder `checkpoints/step-N/` holding the trainable weights (LoRA adapters and head), the
optimizer and scheduler states, every process's RNG states (its own device's only), and the position in the data
(N steps done). It is
written under a temporary name and renamed when complete, so a crash mid-write leaves the previous one intact.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from gemma_embed import faults

STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state(device: torch.device | None = None) -> dict:
    """This process's random states: Python, NumPy, torch's CPU generator and, on a CUDA device, that device's
    generator only (another process owns each other device, and another run may see a different number of them)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def device_rng(saved, device_index: int | None):
    """The CUDA generator state to restore on this process's device from a checkpoint's `cuda` entry: a tensor
    (this process's own device) or, in checkpoints written before that, a list over every visible device, of which
    this process's own device index is taken. None: nothing to restore (no CUDA device now, or none saved)."""
    if saved is None or device_index is None:
        return None
    if isinstance(saved, torch.Tensor):
        return saved
    return saved[device_index] if device_index < len(saved) else None


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    index = (device.index or 0) if device is not None and device.type == "cuda" else None
    cuda = device_rng(state.get("cuda"), index)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _complete(folder: str | Path) -> list[Path]:
    """The finished checkpoints in `folder`, oldest first (a `.tmp-step-N` being written is not one)."""
    steps = [(int(m.group(1)), p) for p in Path(folder).glob("step-*") if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(steps)]


def latest(folder: str | Path) -> Path | None:
    done = _complete(folder)
    return done[-1] if done else None


class CheckpointWriteError(RuntimeError):
    pass


def save(accelerator, folder: str | Path, step: int, model, optimizer, scheduler, keep: int) -> Path:
    """Write checkpoints/step-N atomically. Only the main process writes; the other processes' RNG states reach
    it through a gather. A failed write (disk full, no permission) removes the partial folder, keeps every earlier
    checkpoint, and stops the run with a message saying so."""
    from accelerate.utils import gather_object

    folder = Path(folder)
    final = folder / f"step-{step}"
    tmp = folder / f".tmp-step-{step}"
    rng_states = gather_object([rng_state(accelerator.device)])
    error = None
    if accelerator.is_main_process:
        try:
            state = _training_state(accelerator, step, model, optimizer, scheduler)
            _write(folder, tmp, final, state, rng_states, keep)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            last = latest(folder)
            error = (f"could not write checkpoint {final} ({e}); the last good checkpoint is "
                     f"{last if last else 'none'}. Free space or fix permissions, then run again with --resume")
    errors = gather_object([error])
    if any(errors):
        raise CheckpointWriteError(next(e for e in errors if e))
    return final


def _training_state(accelerator, step: int, model, optimizer, scheduler) -> dict:
    """What state.pt holds: the steps done, the trainable weights, the optimizer and scheduler states and the
    number of processes that wrote it."""
    return {
        "step": step,
        "trainable": trainable_state(accelerator.unwrap_model(model)),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "num_processes": accelerator.num_processes,
    }


def _write(folder: Path, tmp: Path, final: Path, state: dict, rng_states: list, keep: int) -> None:
    """Write `state` and every process's RNG states into `tmp`, rename it to `final`, then remove all but the
    `keep` newest checkpoints in `folder`."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rank, rng in enumerate(rng_states):
        _atomic_torch_save(rng, tmp / f"rng-{rank}.pt")
    _atomic_torch_save(state, tmp / "state.pt")
    _fsync_dir(tmp)
    faults.point("IN_CHECKPOINT", state["step"])  # the crash tests die here, before the rename
    os.replace(tmp, final)
    _fsync_dir(folder)
    for old in _complete(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load(accelerator, path: Path, model, optimizer, scheduler) -> dict:
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if state["num_processes"] != accelerator.num_processes:
        raise RuntimeError(
            f"{path}: written by {state['num_processes']} processes, resumed with {accelerator.num_processes}; "
            "resume with the same number of processes"
        )
    unwrapped = accelerator.unwrap_model(model)
    params = dict(unwrapped.named_parameters())
    missing = set(state["trainable"]) - set(params)
    if missing:
        raise RuntimeError(f"{path}: checkpoint has weights the model lacks: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(torch.load(path / f"rng-{accelerator.process_index}.pt", weights_only=False), accelerator.device)
    return state


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
