"""Several CPU processes (gloo) through `accelerate launch`, as users outgrowing one machine run them: the same loss
and gradients as one process on the same global batch, whatever each process's rows hold (with and without
GradCache, one-way and symmetric loss); main-process-only work that outlasts the process-group timeout; and the
launches that would silently run elsewhere than asked, refused."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from launch import accelerate_launch
from tolerance import PRECISION, assert_scalars_close, assert_tensors_close

pytestmark = pytest.mark.reliability  # many processes


@pytest.fixture(scope="module")
def one_process(tiny_backbone, tmp_path_factory):
    """The one-process result for a (symmetric flag, layout), computed once each."""
    results = {}

    def get(symmetric: str, layout: str):
        if (symmetric, layout) not in results:
            out = tmp_path_factory.mktemp("dist") / "one.pt"
            run = accelerate_launch("tests/helpers/dist_equivalence.py", tiny_backbone, str(out), "0", symmetric,
                                    layout, processes=1)
            assert run.returncode == 0, run.stderr[-3000:]
            results[symmetric, layout] = torch.load(out)
        return results[symmetric, layout]

    return get


@pytest.mark.precision
@pytest.mark.parametrize("chunk,symmetric,layout", [
    (0, "0", "mixed"), (2, "0", "mixed"), (0, "1", "mixed"), (2, "1", "mixed"),
    # one process holds every hard negative, the other none: the streams (and collectives) are the same anyway
    (0, "0", "split"), (2, "0", "split"), (0, "1", "split"),
    # the Matryoshka loss: every prefix's loss on the gathered batch
    (0, "0", "matryoshka"), (2, "1", "matryoshka"),
    # the word loss: every row's, gathered, the word head's gradients reduced like the adapters'
    (0, "1", "words"), (2, "0", "words"),
])
def test_two_processes_equal_one(one_process, tiny_backbone, tmp_path, chunk, symmetric, layout):
    out = tmp_path / "two.pt"
    run = accelerate_launch("tests/helpers/dist_equivalence.py", tiny_backbone, str(out), str(chunk), symmetric,
                            layout, processes=2, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out)
    one = one_process(symmetric, layout)
    assert one["processes"] == 1 and two["processes"] == 2
    if layout == "split":
        assert all(two["negatives"][:4]) and not any(two["negatives"][4:])
    assert two["precision"] == one["precision"] == PRECISION.precision  # the runs computed in the suite's precision
    assert_scalars_close(two["loss"], one["loss"])
    assert two["grads"].keys() == one["grads"].keys()
    for name, grad in one["grads"].items():
        assert grad.abs().max() > 0, name
        assert_tensors_close(two["grads"][name], grad, msg=name)


def test_the_symmetric_flag_reaches_the_loss(one_process):
    assert not torch.isclose(one_process("1", "mixed")["loss"], one_process("0", "mixed")["loss"])


def _half_with_negatives(path, rows=64):
    """A triplets.csv whose first half has a hard negative and second half none (the reader accepts it empty)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["anchor", "positive", "negative"])
        for i in range(rows):
            w.writerow([f"a man plays guitar number {i}", f"someone plays music {i}",
                        f"a cat sleeps on mat {i}" if i < rows // 2 else ""])
    return path


@pytest.mark.precision
def test_phase2_with_negatives_on_some_rows_finishes_on_two_processes_and_equals_one(tiny_backbone, tmp_path):
    data = _half_with_negatives(tmp_path / "half.csv")
    args = ["--config", "train/configs/smoke/phase2.yaml", "--init_from", "", "--backbone", tiny_backbone,
            "--data", str(data), "--batch_size", "4", "--max_steps", "8", "--save_every", "0", "--eval_sts", "",
            "--max_rows", "0", "--lr", "1e-3",
            # dropout draws from each process's own generator, so only a run without it can equal one process
            "--model", "{view_dropout: 0.0, lora_dropout: 0.0}"]
    runs, losses = {}, {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        extra = ["--device", "cpu"] if n > 1 else []
        run = accelerate_launch("train/phase2.py", *args, *extra, "--output_dir", str(out), processes=n, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads((out / "train_summary.json").read_text())["num_processes"] == n
        runs[n] = load_file(str(out / "model.safetensors"))
        losses[n] = [r["loss"] for r in map(json.loads, (out / "logs/metrics.jsonl").read_text().splitlines())
                     if "loss" in r]
    assert len(losses[1]) >= 4
    for step, (two, one) in enumerate(zip(losses[2], losses[1])):  # the same batches, step by step
        assert_scalars_close(two, one, msg=f"loss {step}")
    for key, value in runs[1].items():
        assert_tensors_close(runs[2][key], value, msg=key)


@pytest.mark.parametrize("mode,holds", [("barrier", False), ("main_only", True)])
def test_main_process_work_longer_than_the_timeout(mode, holds, tmp_path):
    """The control: a barrier around 6 s of main-process work fails with a 2 s timeout; waiting on the file
    system (MainOnly) holds."""
    run = accelerate_launch("tests/helpers/slow_main.py", mode, "2", "6", str(tmp_path), processes=2, timeout=120)
    if holds:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "result 42 on both" in run.stdout
    else:
        assert run.returncode != 0 and "imed out" in run.stderr + run.stdout, run.stderr[-3000:]


def test_phase3_store_build_and_evaluation_outlast_a_tiny_timeout(chain, tmp_path):
    """Phase 3 on 2 processes with a 3 s process-group timeout, while the main process spends 8 s building the token
    store and 8 s in each evaluation: the others wait on the file system, and the run finishes."""
    root, env, outs = chain
    args = ["--config", "train/configs/smoke/phase3.yaml", "--init_from", str(outs[2]), "--data",
            str(root / "queries.db"), "--store", str(tmp_path / "store"), "--max_steps", "4", "--eval_every", "2",
            "--save_every", "0", "--device", "cpu", "--dist_timeout_minutes", "0.05", "--output_dir",
            str(tmp_path / "out")]
    slow = {**env, "GEMMA_EMBED_PAUSE_STORE_BUILD": "8", "GEMMA_EMBED_PAUSE_EVAL": "8"}
    run = accelerate_launch("train/phase3.py", *args, processes=2, env=slow, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out/train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["sts_after"] is not None
    evals = [json.loads(l) for l in (tmp_path / "out/logs/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if "eval_seconds" in r] == [2, 4]
    assert not list((tmp_path / "out").glob(".sync/*"))  # the markers are cleaned up


@pytest.mark.parametrize("launch,expected", [
    (["--cpu", "--num_processes", "2"], "accelerate launch --multi_gpu --num_processes 2"),
    (["--multi_gpu", "--num_processes", "2"], "--device cpu"),
])
def test_launches_that_would_run_elsewhere_than_asked_are_refused(launch, expected, tiny_backbone, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", str(REPO / "train/phase1.py"), "--config", "train/configs/smoke/phase1.yaml",
           "--backbone", tiny_backbone, "--output_dir", str(out), "--max_steps", "2", "--eval_sts", ""]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode != 0 and expected in run.stderr, run.stderr[-3000:]
    assert not (out / "model.safetensors").exists()
