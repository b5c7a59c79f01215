"""Every shell command of the README, run as written, in README order, on a copy of this checkout after the two
set-up commands, from a shell that has only the system's PATH: the README's `. .venv/bin/activate` is what finds
python and accelerate. GEMMA_EMBED_TRY=1 (which the README names) runs each at a try's size. runs/demo holds tiny
published folders in place of the demo's; the two set-up commands are what comes before (CI runs scripts/test.sh,
tests/integration/test_demo.py the demo). Where a command as written cannot succeed here (no Hub login for the gated
1B, no ../shared/data), its last line must be our one-line error, and the README's CPU variant of the training block
(`--backbone gemma3-270m` on phase 1 and the decoder) must then run."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from tiny_demo import tiny_demo

pytestmark = pytest.mark.slow

SETUP = ("bash scripts/demo.sh", "bash scripts/test.sh")
# a command as written that stops here with our one-line error: (a part of the command, a part of that line)
STOPS_HERE = [("train/phase1.py --config train/configs/phase1.yaml", "gated"),
              ("train/phase2.py --config train/configs/phase2.yaml", "runs/gemma-embed/phase1"),
              ("train/phase3.py --config train/configs/phase3.yaml", "runs/gemma-embed/phase2"),
              ("train/decoder.py --config train/configs/decoder.yaml", "gated"),
              ("train/push.py runs/gemma-embed/phase3", "runs/gemma-embed/phase3"),
              ("build_bundle.py --full", "shared/data")]
CPU = {"train/phase1.py": " --backbone gemma3-270m", "train/decoder.py --config train/configs/decoder.yaml":
       " --backbone gemma3-270m"}  # the README's "On a CPU add --backbone gemma3-270m to phase 1 and the decoder"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for code in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in code.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def checkout_copy(root: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) under root/clone, with .venv linked in."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    clone = root / "clone"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    os.symlink(Path(sys.executable).parents[1], clone / ".venv")
    return clone


def shell(line: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_HUB_OFFLINE": "1", "GEMMA_EMBED_TRY": "1",
           "GEMMA_EMBED_CACHE": os.environ.get("GEMMA_EMBED_CACHE", str(Path.home() / ".cache/gemma_embed"))}
    return subprocess.run(["bash", "-c", f". .venv/bin/activate && {line}"], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip() and "\r" not in line]
    return lines[-1][:160] if lines else ""


def wait_for(log: Path, done: str, seconds: int = 1800) -> str:
    """The log of a command the README starts in the background, once it says `done` (or fails)."""
    end = time.time() + seconds
    while time.time() < end:
        text = log.read_text(errors="replace") if log.is_file() else ""
        if done in text or "error:" in text or "Traceback" in text:
            return text
        time.sleep(5)
    raise AssertionError(f"{log}: not done after {seconds} s:\n{text[-3000:]}")


def test_every_readme_command_runs_as_written(tmp_path, make_model, tiny_backbone, tokenizer):
    commands = readme_commands()
    assert set(SETUP) <= set(commands) and len(commands) > 15
    clone = checkout_copy(tmp_path)
    tiny_demo(clone, make_model, tiny_backbone, tokenizer, corrector=False)  # the README trains it
    home = tmp_path / "home"
    home.mkdir()
    ran, stopped = [], []
    for line in commands:
        if line in SETUP:
            continue
        start = time.time()
        done = shell(line, clone, home)
        print(f"{time.time() - start:6.0f} s  {line}\n          -> {last_line(done)}", flush=True)
        printed = done.stdout + done.stderr
        assert "Traceback" not in printed, f"{line}\n{printed[-4000:]}"
        stop = next((why for part, why in STOPS_HERE if part in line), None)
        if stop:
            last = done.stderr.strip().splitlines()[-1]
            assert done.returncode != 0 and last.startswith("error:") and stop in last, f"{line}\n{printed[-3000:]}"
            stopped.append(line)
            continue
        assert done.returncode == 0, f"{line}\n{printed[-4000:]}"
        if line.startswith("nohup ") and line.endswith("&"):
            log = clone / line.split(">")[1].split()[0]
            text = wait_for(log, "== done")
            assert "== done" in text and "Traceback" not in text, text[-4000:]
            print(f"{time.time() - start:6.0f} s  (until its log said == done) -> "
                  f"{[t for t in text.splitlines() if t.strip()][-1][:160]}", flush=True)
        ran.append(line)
    assert len(stopped) == len(STOPS_HERE), stopped
    # the training block again as the README says to run it on a CPU
    block = [line for line in commands if "train/configs/phase" in line or "configs/decoder.yaml" in line
             or "train/push.py" in line]
    for line in block:
        line += next((extra for part, extra in CPU.items() if part in line), "")
        start = time.time()
        done = shell(line, clone, home)
        print(f"{time.time() - start:6.0f} s  {line}\n          -> {last_line(done)}", flush=True)
        assert done.returncode == 0, f"{line}\n{(done.stdout + done.stderr)[-4000:]}"
    assert (clone / "runs/gemma-embed/decoder/model.safetensors").is_file()
    assert (clone / "runs/fanout/summary.json").is_file() and (clone / "runs/smoke/decoder/model.safetensors").is_file()
    assert (clone / "runs/inversion/long/trained_beam.json").is_file()
