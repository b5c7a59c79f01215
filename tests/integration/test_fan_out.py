"""train/fan_out.py, the bulk reformulation command, run as users run it on the smoke decoder (tiny LM, raw tiny
encoder, the tiny backbone as the fluency model): its output, a kill and a resume, 2 processes against 1, bad lines,
and the keep rule applied again."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch import accelerate_launch

NUMBERS = ("t", "cos_point", "cos_seed", "cos_document", "nll", "seed_cos_document", "seed_nll")


def _env(root):
    return {**os.environ, "GEMMA_EMBED_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error"}


def _fan_out(queries, trained, out, *extra, env=None):
    root = queries[0]
    args = ["train/fan_out.py", "--decoder", str(trained), "--pairs", "bundled", "--out", str(out), "--lm", "tiny",
            "--batch_pairs", "4", "--steps", "3", *extra]
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**_env(root), **(env or {})}, capture_output=True,
                          text=True, timeout=600)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_records(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in NUMBERS} == {k: v for k, v in y.items() if k not in NUMBERS}
        for k in NUMBERS:
            assert (x[k] is None) == (y[k] is None) and (x[k] is None or abs(x[k] - y[k]) <= 1e-4), (k, x, y)


@pytest.fixture(scope="module")
def reference(queries, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("fanout") / "one"
    run = _fan_out(queries, trained, out, "--mode", "rerank", "--candidates")
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


def test_the_bulk_command_writes_one_judged_record_per_step_and_the_quality_table(reference):
    out, run = reference
    records = _records(out / "reformulations.jsonl")
    assert len(records) == 12 * 3 and [r["step"] for r in records[:3]] == [1, 2, 3]  # 12 bundled pairs x 3 steps
    assert [r["t"] for r in records[:3]] == pytest.approx([0.25, 0.5, 0.75])
    r = records[0]
    assert r["id"] == "bundled-0" and r["text"] and 1 <= r["rank"] <= 12 and 1 <= r["seed_rank"] <= 12
    assert -1 <= r["cos_point"] <= 1 and r["nll"] > 0 and isinstance(r["duplicate"], bool)
    assert isinstance(r["in_training"], bool) and isinstance(r["kept"], bool)
    assert r["candidates"] and r["cos_point"] == max(c["cos_point"] for c in r["candidates"])  # weight 0: the closest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 12 and summary["reformulations"] == 36 and summary["reformulations_per_second"] > 0
    assert summary["kept"] == sum(r["kept"] for r in records) == len(_records(out / "kept.jsonl"))
    assert sum(summary["dropped"].values()) >= 36 - summary["kept"]  # every dropped step has a reason
    assert "| rerank |" in run.stdout and "reformulations / s" in run.stdout and "Dropped" in run.stdout


def test_the_keep_rule_runs_again_without_decoding_and_every_reason_is_counted(queries, trained, reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    loose = subprocess.run([sys.executable, "train/fan_out.py", "--out", str(out), "--summarise", "--min_cosine", "-1",
                            "--top_k", "12", "--nll_quantile", "1"], cwd=REPO, env=_env(queries[0]),
                           capture_output=True, text=True, timeout=300)
    assert loose.returncode == 0, loose.stderr[-2000:]
    records = _records(out / "reformulations.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    # with the cosine and rank tests passed by all, a step is dropped only as a duplicate or as less fluent than the
    # least fluent seed query (the quantile 1 of their NLL)
    limit = summary["nll_limit"]
    assert [r["kept"] for r in records] == [not r["duplicate"] and r["nll"] is not None and r["nll"] <= limit
                                            for r in records]
    assert set(summary["dropped"]) <= {"duplicate", "not fluent"}
    strict = subprocess.run([sys.executable, "train/fan_out.py", "--out", str(out), "--summarise", "--min_cosine", "1.01"],
                            cwd=REPO, env=_env(queries[0]), capture_output=True, text=True, timeout=300)
    assert strict.returncode == 0 and json.loads((out / "summary.json").read_text())["kept"] == 0
    assert json.loads((out / "summary.json").read_text())["dropped"]["far from its point"] == 36
    # re-chosen from the recorded candidates at a fluency weight: each step now the fluency-weighted best
    repick = subprocess.run([sys.executable, "train/fan_out.py", "--out", str(out), "--summarise", "--repick", "1"],
                            cwd=REPO, env=_env(queries[0]), capture_output=True, text=True, timeout=300)
    assert repick.returncode == 0, repick.stderr[-2000:]
    for r in _records(out / "repick-1" / "reformulations.jsonl"):
        best = max(r["candidates"], key=lambda c: c["cos_point"] - c["nll"])
        assert r["text"] == best["text"]


@pytest.mark.precision
@pytest.mark.reliability
def test_a_kill_mid_write_loses_only_that_batch_and_the_resumed_run_equals_the_uninterrupted(queries, trained,
                                                                                             reference, tmp_path):
    out = tmp_path / "killed"
    killed = _fan_out(queries, trained, out, "--mode", "rerank", "--candidates", env={"GEMMA_EMBED_KILL_IN_FLUSH": "1"})
    assert killed.returncode == -9
    shard = (out / "shards" / "shard-000.jsonl").read_bytes()
    assert not shard.endswith(b"\n")  # batch 1 was cut mid-line; batch 0 is whole
    whole = shard[: shard.rindex(b"\n") + 1].decode().splitlines()
    assert len([json.loads(line) for line in whole if json.loads(line)["batch"] == 0]) == 4 * 3
    again = _fan_out(queries, trained, out, "--mode", "rerank", "--candidates")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dropped" in again.stdout  # the half-written batch
    _assert_same_records(_records(out / "reformulations.jsonl"), _records(reference[0] / "reformulations.jsonl"))
    # a rerun with other settings is refused, naming them, and writes nothing
    before = (out / "reformulations.jsonl").read_bytes()
    other = _fan_out(queries, trained, out, "--mode", "greedy")
    assert other.returncode == 2 and "mode 'rerank' -> 'greedy'" in other.stderr
    assert (out / "reformulations.jsonl").read_bytes() == before


@pytest.mark.precision
def test_two_processes_write_the_same_records_as_one(queries, trained, reference, tmp_path):
    out = tmp_path / "two"
    args = ["--decoder", str(trained), "--pairs", "bundled", "--out", str(out), "--lm", "tiny", "--batch_pairs", "4",
            "--steps", "3", "--mode", "rerank", "--candidates", "--device", "cpu"]
    run = accelerate_launch("train/fan_out.py", *args, processes=2, env={"GEMMA_EMBED_CACHE": str(queries[0] / "cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((out / "shards").glob("shard-*.jsonl"))) == 2
    _assert_same_records(_records(out / "reformulations.jsonl"), _records(reference[0] / "reformulations.jsonl"))


def test_correct_mode_never_ends_below_the_decoders_greedy_query(queries, trained, tmp_path):
    greedy = _fan_out(queries, trained, tmp_path / "greedy", "--mode", "greedy", "--limit", "4")
    correct = _fan_out(queries, trained, tmp_path / "correct", "--mode", "correct", "--rounds", "2", "--limit", "4",
                       "--corrector", "guided=2")
    assert greedy.returncode == 0 and correct.returncode == 0, correct.stderr[-3000:]
    for g, c in zip(_records(tmp_path / "greedy" / "reformulations.jsonl"),
                    _records(tmp_path / "correct" / "reformulations.jsonl")):
        assert (g["id"], g["step"]) == (c["id"], c["step"]) and c["cos_point"] >= g["cos_point"] - 1e-3


@pytest.mark.reliability
def test_a_bad_line_is_named_or_skipped_and_counted(queries, trained, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_bytes(b"id\tquery\tdocument\n1\tcheap flights\tfares to rome\n2\tbad \xff bytes\tx\n"
                      b"3\tonly two\n4\thow tall\tmount everest is 8,849 m\n")
    bad = _fan_out(queries, trained, tmp_path / "bad", "--pairs", str(pairs))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        f"error: {pairs}, line 3: not UTF-8 (byte 6) (--skip_bad skips such lines)")
    skipped = _fan_out(queries, trained, tmp_path / "skip", "--pairs", str(pairs), "--skip_bad", "--mode", "greedy")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "skipped 2 bad lines" in skipped.stdout
    assert [r["id"] for r in _records(tmp_path / "skip" / "reformulations.jsonl")] == ["1"] * 3 + ["4"] * 3
