"""Run a script under `accelerate launch` on CPU processes, as users do."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def accelerate_launch(script: str, *args: str, processes: int = 1, env: dict | None = None, timeout: int = 600):
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    # on CPU, accelerate's multi-process launcher (torchrun underneath) runs gloo processes
    dist = ["--multi_gpu", "--num_processes", str(processes)] if processes > 1 else ["--cpu", "--num_processes", "1"]
    cmd = launcher + dist + ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                             str(REPO / script), *args]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
