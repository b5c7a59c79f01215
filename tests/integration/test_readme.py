"""The README's code, run exactly as written, as a script or notebook runs it: no terminal to answer a prompt.
The Python blocks run against tiny published folders at the paths they name (runs/demo/model, runs/demo/decoder,
runs/demo/corrector). Its shell commands: test_readme_commands.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tiny_demo import tiny_demo

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", README, re.S)
NOT_OURS_TO_PRINT = ("Do you wish to run the custom code", "You are using a model of type")


def run(code: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(code, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600)


def environment(tmp_path: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)  # python and accelerate, as the README's .venv provides them
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
            "GEMMA_EMBED_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}


def test_the_python_blocks_run_as_written_and_print_nothing_of_ours(tmp_path, make_model, tiny_backbone, tokenizer):
    tiny_demo(tmp_path, make_model, tiny_backbone, tokenizer)

    blocks = [code for kind, code in BLOCKS if kind == "python"]
    assert len(blocks) >= 3 and all("runs/demo/" in code for code in blocks)
    for code in blocks:
        done = run([sys.executable, "-c", code], tmp_path, environment(tmp_path))
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
        printed = done.stdout + done.stderr
        assert not [line for line in NOT_OURS_TO_PRINT if line in printed], f"{code}\n{printed[-3000:]}"
