"""Where a run executes and how its processes keep in step: the device (refused rather than silently changed), the
precision, the process-group timeout, the line every run starts with, and work that only the main process does.

Several processes must call the same collectives in the same order. Work that only the main process does (building
phase 3's token store, evaluating, publishing) would leave the others waiting in a collective, where the process
group's timeout can kill a run that is merely slow; so the others wait on the file system instead (`wait_for`,
`main_only`), and after the last step they do not wait at all.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch

from gemma_embed.config import ConfigError
from gemma_embed.precision import Decision, resolve

DEVICES = ("auto", "cuda", "cpu")


def choose_device(requested: str, processes: int, cuda_available: bool) -> str:
    """"cuda" or "cpu" for `requested` ("auto", "cuda" or "cpu"); refuses what would silently run elsewhere than
    the user meant: CUDA asked for but missing, or several processes with no CUDA and no explicit CPU choice."""
    if requested not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}, got {requested!r}")
    if requested == "cuda" and not cuda_available:
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA device (torch.cuda.is_available() is "
                          "False): check the driver and CUDA_VISIBLE_DEVICES, or train on the CPU with --device cpu")
    if requested == "cpu" or (requested == "auto" and not cuda_available and processes == 1):
        return "cpu"
    if requested == "auto" and not cuda_available:
        raise ConfigError(
            f"{processes} processes were launched but torch sees no CUDA device, so they would train on the CPU. If "
            "that is what you want, say so: accelerate launch --multi_gpu --num_processes "
            f"{processes} train/phaseN.py ... --device cpu (the processes then form one gloo group). Otherwise check "
            "the CUDA driver and CUDA_VISIBLE_DEVICES")
    return "cuda"


def check_cpu_launch(launcher_argv: list[str] | None, world_size: int) -> None:
    """`accelerate launch --cpu --num_processes N` starts one process whatever N says: refuse it, with the command
    that starts N CPU processes. `launcher_argv` is the parent process's command line (None if unknown)."""
    if world_size > 1 or not launcher_argv or "--cpu" not in launcher_argv:
        return
    wanted = 1
    for i, arg in enumerate(launcher_argv):
        if arg.startswith("--num_processes="):
            wanted = int(arg.split("=", 1)[1])
        elif arg == "--num_processes" and i + 1 < len(launcher_argv) and launcher_argv[i + 1].isdigit():
            wanted = int(launcher_argv[i + 1])
    if wanted > 1:
        raise ConfigError(
            f"accelerate launch --cpu runs a single process, not the {wanted} asked for with --num_processes. For "
            f"{wanted} CPU processes: accelerate launch --multi_gpu --num_processes {wanted} train/phaseN.py ... "
            "--device cpu")


def cpu_threads(launcher: dict | None, local_processes: int) -> int | None:
    """The threads each CPU process should use when `accelerate launch` chose for the user: without `--cpu` (or
    `--num_cpu_threads_per_process`, or OMP_NUM_THREADS in the launcher's environment) it gives each process one
    thread, half of a 2-core machine. `launcher`: the parent process's {"argv", "env"} (None if unknown); None:
    leave the threads as they are."""
    if not launcher or not any("accelerate" in a for a in launcher["argv"][:3]):
        return None
    argv, env = launcher["argv"], launcher["env"]
    if "--cpu" in argv or any(a.startswith("--num_cpu_threads_per_process") for a in argv) or "OMP_NUM_THREADS" in env:
        return None
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, available // max(1, local_processes))


def _launcher() -> dict | None:
    try:
        import psutil

        parent = psutil.Process(os.getppid())
        return {"argv": parent.cmdline(), "env": parent.environ()}
    except Exception:  # noqa: BLE001 - no parent to read: nothing to check
        return None


def make_accelerator(cfg, **kwargs):
    """The Accelerator for a run: its device, precision and process-group timeout from the config. Prints the line
    every run starts with (device, processes, precision) and returns the accelerator and the precision decision."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(cfg.device, world, torch.cuda.is_available())
    launcher = _launcher()
    check_cpu_launch(launcher and launcher["argv"], world)
    threads = cpu_threads(launcher, int(os.environ.get("LOCAL_WORLD_SIZE", world))) if device == "cpu" else None
    if threads and threads > torch.get_num_threads():
        torch.set_num_threads(threads)
    precision = resolve(cfg.mixed_precision, device)
    accelerator = Accelerator(
        cpu=device == "cpu",  # several CPU processes then form one gloo group, not separate runs
        mixed_precision=precision.precision,
        kwargs_handlers=[
            InitProcessGroupKwargs(timeout=timedelta(minutes=cfg.dist_timeout_minutes)),
            # Gemma 3's buffers (rotary frequencies) are constants; broadcasting them would make every forward a
            # collective, and processes may run different numbers of forwards (GradCache chunks, empty streams)
            DistributedDataParallelKwargs(broadcast_buffers=False),
        ],
        **kwargs,
    )
    if accelerator.is_main_process:
        print(describe(accelerator, precision), flush=True)
    return accelerator, precision


def describe(accelerator, precision: Decision) -> str:
    device = accelerator.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (precision.cpu or "CPU")
    group = f", {accelerator.num_processes} processes ({accelerator.distributed_type.value.lower()})" if (
        accelerator.num_processes > 1) else ", 1 process"
    return f"device: {device.type} ({where}){group}; {precision.line()}"


def run_facts(accelerator, precision: Decision) -> dict:
    """What train_summary.json records of where a phase ran."""
    device = accelerator.device
    return {"device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else precision.cpu,
            "cpu_threads": torch.get_num_threads(), "precision": precision.to_dict()}


# ------------------------------------------------------------------------------------------- main-only work
def wait_for(ready: Callable[[], object], what: str, poll: float = 1.0, report_every: float = 60.0):
    """Poll `ready()` until it returns something other than None, and return that; no collective, so no timeout.
    (If the main process fails instead, the launcher stops this one.)"""
    began = last = time.time()
    while (value := ready()) is None:
        if time.time() - last >= report_every:
            print(f"waiting for the main process: {what} ({time.time() - began:.0f} s)", flush=True)
            last = time.time()
        time.sleep(poll)
    return value


class MainOnly:
    """Run a piece of work on the main process while the others wait on a marker file in `folder` instead of in a
    collective; every process gets the work's (JSON) result. The markers of one run share a token broadcast at
    creation, so an earlier run's markers are never mistaken for this one's."""

    def __init__(self, accelerator, folder: Path):
        from accelerate.utils import broadcast_object_list

        self.accelerator, self.folder = accelerator, Path(folder) / ".sync"
        token = [uuid.uuid4().hex if accelerator.is_main_process else None]
        self.token = broadcast_object_list(token)[0] if accelerator.num_processes > 1 else token[0]
        if accelerator.is_main_process and accelerator.num_processes > 1:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, work: Callable[[], object]):
        if self.accelerator.num_processes == 1:
            return work()
        marker = self.folder / f"{self.token}-{name}.json"
        if self.accelerator.is_main_process:
            result = work()
            tmp = marker.with_suffix(".part")
            tmp.write_text(json.dumps({"result": result}))
            os.replace(tmp, marker)
            return result
        return wait_for(lambda: json.loads(marker.read_text()) if marker.exists() else None, name)["result"]

    def clean(self) -> None:
        if self.accelerator.is_main_process and self.folder.is_dir():
            for marker in self.folder.glob(f"{self.token}-*"):
                marker.unlink(missing_ok=True)
            if not any(self.folder.iterdir()):
                self.folder.rmdir()


def leave_process_group() -> None:
    """End a process of a multi-process run once its work is written: flush and exit at once, without tearing the
    process group down from Python destructors. Torch's ProcessGroupGloo destructor joins its worker threads while
    the freed DDP reducer holds the GIL, and a worker that is destroying a finished all_gather needs the GIL to drop
    its tensors: a deadlock seen at the end of 2-process CPU runs (py-spy: ~ProcessGroupGloo -> thread::join on the
    main thread, ~AsyncAllgatherWork -> gil_scoped_acquire on the worker). Leaving the group to interpreter
    finalization instead is worse: a gloo worker that drops its tensors then aborts the process ("terminate called
    without an active exception", SIGABRT), and so is accelerate's end_training(), which destroys the group while the
    main process may still be publishing (the same SIGABRT, seen in CI at the end of a 2-process phase 2). So the
    loop finishes its trackers itself and never destroys the group; by now the checkpoints, the published folder and
    the logs are closed."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch_command(script: str | Path, *args: str, processes: int = 1) -> list[str]:
    """The `accelerate launch` command for a training script on CPU processes: one process (`--cpu`), or several
    through accelerate's multi-process launcher (`--multi_gpu ... --device cpu` is the script's to pass); the
    precision is the config's (`mixed_precision: auto`), so accelerate's own flag stays "no". `--quiet`: a failed
    run ends with the script's own last line (its one-line error), not the launcher's traceback."""
    dist = ["--multi_gpu", "--num_processes", str(processes)] if processes > 1 else ["--cpu", "--num_processes", "1"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--quiet", *dist, "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(script), *args]


def script_main(main: Callable[[], object]) -> None:
    """Run a script's main(): a mistake in the user's config or input (ConfigError, DataError: their messages name
    the file and the field or line) ends in one line on stderr, `error: ...`, and exit status 2; anything else is
    a bug of ours and keeps its traceback. A process of a multi-process run then leaves through
    leave_process_group."""
    from gemma_embed.data.readers import DataError

    try:
        main()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and (
            torch.distributed.get_world_size() > 1):
        leave_process_group()

