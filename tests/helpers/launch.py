"""Run the scripts of train/ as users do: under `accelerate launch` on CPU processes, or imported in-process (for
tests that monkeypatch the library under them)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_SCRIPTS: dict = {}


def accelerate_launch(script: str, *args: str, processes: int = 1, env: dict | None = None, timeout: int = 600):
    from gemma_embed.runtime import launch_command

    cmd = launch_command(REPO / script, *args, processes=processes)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def load_script(name: str, folder: str = "train"):
    """<folder>/<name>.py as a module (the scripts of train/ and benchmarks/ are not packages: users launch them)."""
    if (folder, name) not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"{folder}_script_{name}", REPO / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import would: a dataclass defined in the script looks itself up there
        spec.loader.exec_module(module)
        _SCRIPTS[folder, name] = module
    return _SCRIPTS[folder, name]


def run_smoke_phase(n: int, out: Path, env: dict, *extra: str, init_from: Path | None = None, data: Path | None = None):
    """Launch train/phaseN.py with its smoke config under `accelerate launch`."""
    args = ["--config", f"train/configs/smoke/phase{n}.yaml", "--output_dir", str(out), *extra]
    if init_from:
        args += ["--init_from", str(init_from)]
    if data:
        args += ["--data", str(data)]
    return accelerate_launch(f"train/phase{n}.py", *args, env=env)
