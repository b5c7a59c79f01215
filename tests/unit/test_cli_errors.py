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


def test_the_full_scale_configs_read_the_written_sample_and_stop_at_the_gated_backbone_in_one_line(tmp_path):
    """examples/write_sample_data.py writes data/ as the full-scale configs read it; without a Hub login, phase 1
    of train/configs/phase1.yaml (google/gemma-3-1b-pt, gated) stops in one line that says how to log in."""
    import os
    import sqlite3

    write = subprocess.run([sys.executable, str(REPO / "examples/write_sample_data.py")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert write.returncode == 0, write.stderr
    data = tmp_path / "data"
    assert (data / "text.txt").read_text() == (REPO / "examples/data/text.txt").read_text()
    assert (data / "triplets.csv").read_text() == (REPO / "examples/data/triplets.csv").read_text()
    queries = sqlite3.connect(data / "queries.db").execute("SELECT count(*) FROM queries").fetchone()[0]
    held = len((data / "heldout_queries.tsv").read_text().splitlines()) - 1
    assert queries > 10_000 and 0 < held < queries / 20
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--cpu", "--num_processes", "1",
           str(REPO / "train/phase1.py"), "--config", str(REPO / "train/configs/phase1.yaml"),
           "--output_dir", str(tmp_path / "phase1")]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode != 0 and last.startswith("error: backbone google/gemma-3-1b-pt: gated"), run.stderr[-2000:]
    assert "hf auth login" in last and "Traceback" not in run.stderr


def test_the_long_inversion_run_needs_the_demos_encoder_and_says_so(tmp_path):
    """scripts/long_inversion.sh, from a checkout without a finished demo: one line saying what to run first."""
    import shutil

    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts/long_inversion.sh", tmp_path / "scripts")
    run = subprocess.run(["bash", "scripts/long_inversion.sh"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: runs/demo/model is missing: run the demo first (bash scripts/demo.sh)"
