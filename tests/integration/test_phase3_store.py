"""Phase 3 with a token store, launched as users do: the store is built, batches are length-bucketed, and a second
run reuses the store."""

import json
import os

import pytest

from conftest import sqlite_queries


@pytest.mark.slow
def test_phase3_trains_from_a_store(tmp_path, tiny_backbone):
    """train/phase3.py with `store`: builds the store, trains on length-bucketed batches, reuses the store after."""
    from launch import accelerate_launch

    db = sqlite_queries(tmp_path / "q.db", [f"{w} {v}" for w in ("a cat", "the dog", "best shoes", "cheap") for v in
                                 ("now", "today", "for sale near me", "in the city", "on the river", "x")] * 3)
    args = ["--config", "train/configs/smoke/phase3.yaml", "--init_from", "", "--backbone", tiny_backbone,
            "--data", str(db), "--store", str(tmp_path / "store"), "--max_rows", "0", "--batch_size", "8",
            "--max_steps", "3", "--save_every", "0", "--eval_sts", ""]
    run = accelerate_launch("train/phase3.py", *args, "--output_dir", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out/train_summary.json").read_text())
    assert summary["rows"] == 72 and summary["last_loss"] is not None
    assert sorted(os.listdir(tmp_path / "store")) == ["ids.bin", "meta.json", "offsets.npy"]
    built = (tmp_path / "store/ids.bin").stat().st_mtime_ns
    run = accelerate_launch("train/phase3.py", *args, "--output_dir", str(tmp_path / "again"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "store/ids.bin").stat().st_mtime_ns == built  # reused
