"""A user's mistake in a script's input ends in one line on stderr (`error: ...`, naming the file and the line)
and exit status 2, not a traceback."""

import subprocess
import sys

from conftest import REPO


def test_bad_input_gets_one_line_and_status_2(tmp_path):
    bad = tmp_path / "queries.tsv"
    bad.write_bytes(b"query\tsource\n\xff broken\tx\n")
    run = subprocess.run([sys.executable, "examples/make_queries_db.py", str(bad), str(tmp_path / "q.db")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: {bad}, line 2: not UTF-8 (byte 0: b'\\xff')"]
    assert "Traceback" not in run.stderr and not (tmp_path / "q.db").exists()


def test_under_accelerate_launch_the_last_line_is_ours(tmp_path):
    """The README launches training with `accelerate launch --quiet`: a config error leaves our one line last, not
    the launcher's traceback."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--cpu", "--num_processes", "1",
           "train/phase1.py", "--config", str(tmp_path / "missing.yaml")]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.yaml'}: config file not found"
    assert "CalledProcessError" not in run.stderr and "Traceback" not in run.stderr
