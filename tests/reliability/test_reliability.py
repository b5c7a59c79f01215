"""Faults injected on purpose: kill -9 during training and during a checkpoint write, a failed write, a NaN loss,
and a matrix of bad inputs. `pytest -m reliability` runs exactly these (and the many-process tests)."""

import hashlib
import json
import pickle
import random
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from launch import load_script, run_smoke_phase

pytestmark = pytest.mark.reliability


def same_weights(a: Path, b: Path) -> None:
    for rel in ("model.safetensors", "2_Dense/model.safetensors"):
        x, y = load_file(str(a / rel)), load_file(str(b / rel))
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), f"{rel}: {key}"


def tree_digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


# --------------------------------------------------------------------------------------------------------- crashes
@pytest.mark.precision
@pytest.mark.parametrize("phase", [1, 2, 3])
def test_kill_at_a_random_step_then_resume_is_bit_identical(chain, phase):
    """Bit for bit, in either precision: the resumed run repeats the same operations on the same shapes."""
    root, env, outs = chain
    kill_at = random.Random().randint(3, 11)
    out = root / f"killed-{phase}-{kill_at}"
    inputs = dict(init_from=outs.get(phase - 1), data=root / "queries.db" if phase == 3 else None)
    killed = run_smoke_phase(phase, out, {**env, "GEMMA_EMBED_KILL_AT_STEP": str(kill_at)}, "--save_every", "2",
                             **inputs)
    assert killed.returncode != 0, f"kill at step {kill_at} did not stop the run"
    assert not (out / "model.safetensors").exists()
    saved = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    assert saved and saved[-1] == (kill_at // 2) * 2, saved
    refused = run_smoke_phase(phase, out, env, "--save_every", "2", **inputs)
    assert refused.returncode != 0 and "pass --resume" in refused.stderr  # checkpoints are not silently discarded
    resumed = run_smoke_phase(phase, out, env, "--save_every", "2", "--resume", **inputs)
    assert resumed.returncode == 0, f"kill at {kill_at}: {resumed.stderr[-3000:]}"
    same_weights(outs[phase], out)
    # every step after the checkpoint ran exactly once in the resumed run, and the losses match the clean run
    logged = lambda folder: {r["step"]: r["loss"] for r in map(json.loads, (folder / "logs/metrics.jsonl").read_text().splitlines()) if "loss" in r}  # noqa: E501,E731
    clean, again = logged(outs[phase]), logged(out)
    assert all(again[s] == clean[s] for s in clean if s > saved[-1]), (kill_at, clean, again)


@pytest.mark.precision
def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(chain):
    root, env, outs = chain
    out = root / "killed-in-checkpoint"
    killed = run_smoke_phase(1, out, {**env, "GEMMA_EMBED_KILL_IN_CHECKPOINT": "6"}, "--save_every", "3")
    assert killed.returncode != 0
    assert (out / "checkpoints/step-3/state.pt").is_file() and not (out / "checkpoints/step-6").exists()
    assert (out / "checkpoints/.tmp-step-6").is_dir()  # the half-written one, never taken for a checkpoint
    torch.load(out / "checkpoints/step-3/state.pt", weights_only=False)  # the previous one still loads
    resumed = run_smoke_phase(1, out, env, "--save_every", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    same_weights(outs[1], out)


# --------------------------------------------------------------------------------------- failed writes, NaN loss
def _phase1_args(tiny_backbone, out, *extra):
    return ["--config", str(REPO / "train/configs/smoke/phase1.yaml"), "--backbone", tiny_backbone,
            "--output_dir", str(out), "--eval_sts", "", "--max_steps", "6", "--save_every", "2", *extra]


def test_disk_full_during_a_checkpoint_stops_and_keeps_the_last_good_one(tiny_backbone, tmp_path, monkeypatch):
    from gemma_embed import checkpoint

    phase1 = load_script("phase1")

    real = checkpoint._atomic_torch_save

    def full_disk(obj, path):
        if "step-4" in str(path):
            raise OSError(28, "No space left on device")
        return real(obj, path)

    monkeypatch.setattr(checkpoint, "_atomic_torch_save", full_disk)
    out = tmp_path / "run"
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"No space left on device.*last good checkpoint is .*step-2"):
        phase1.main(_phase1_args(tiny_backbone, out))
    assert (out / "checkpoints/step-2/state.pt").is_file()
    assert not list((out / "checkpoints").glob("*step-4*")) and not (out / "config.json").exists()


def test_failed_publish_keeps_the_training_and_resume_publishes(tiny_backbone, tmp_path, monkeypatch):
    from gemma_embed import loop

    phase1 = load_script("phase1")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(loop, "write_published_folder", no_space)
        with pytest.raises(RuntimeError, match="run the same command with --resume"):
            phase1.main(_phase1_args(tiny_backbone, out))
    assert (out / "checkpoints/step-6/state.pt").is_file()
    phase1.main(_phase1_args(tiny_backbone, out, "--resume"))
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nan_loss(tiny_backbone, tmp_path, monkeypatch, policy):
    from gemma_embed import contrastive, loop

    phase1 = load_script("phase1")
    calls = {"n": 0}
    real = contrastive.contrastive_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(contrastive, "contrastive_loss", poisoned)
    out = tmp_path / "run"
    args = _phase1_args(tiny_backbone, out, "--nonfinite_loss", policy)
    if policy == "stop":
        with pytest.raises(loop.NonFiniteLoss, match=r"step 3, global batch 2 .*text.txt"):
            phase1.main(args)
        assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-2"]
        assert not (out / "model.safetensors").exists()
    else:
        phase1.main(args)
        metrics = [json.loads(l) for l in (out / "logs/metrics.jsonl").read_text().splitlines()]
        assert {"step": 3, "skipped_batch": 2} in metrics
        assert all(torch.isfinite(t).all() for t in load_file(str(out / "model.safetensors")).values())


# ------------------------------------------------------------------------------------------------------ bad inputs
class RunsCode:
    """Unpickling this calls os.system: a .pt that tries to run code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.marker}",))


def _bad_inputs(tmp: Path) -> dict:
    """name -> (phase, data path, extra args, expected message fragment)."""
    cases = {}
    (tmp / "empty.txt").write_bytes(b"")
    cases["empty text.txt"] = (1, tmp / "empty.txt", [], "empty.txt: the file is empty")
    (tmp / "blank.txt").write_text("\n  \n\n")
    cases["only blank lines"] = (1, tmp / "blank.txt", [], "blank.txt: no sentences")
    (tmp / "latin1.txt").write_bytes("fine\ncaf\xe9 au lait\n".encode("latin-1"))
    cases["non-UTF-8 bytes"] = (1, tmp / "latin1.txt", [], "latin1.txt, line 2: not UTF-8")
    (tmp / "huge.txt").write_text("ok\n" + "x" * 200_000 + "\n")
    cases["a line over every limit"] = (1, tmp / "huge.txt", [], "huge.txt, line 2: 200,000 characters")
    (tmp / "nocol.csv").write_text("anchor,negative\na,b\n")
    cases["triplets missing a column"] = (2, tmp / "nocol.csv", [], "nocol.csv, line 1: missing column(s) ['positive']")
    (tmp / "ragged.csv").write_text("anchor,positive,negative\na,b,c\nd,e\n")
    cases["ragged row"] = (2, tmp / "ragged.csv", [], "ragged.csv, line 3: 2 fields, but the header has 3")
    header = "a_ids,a_mask,p_ids,p_mask,n_ids,n_mask\n"
    (tmp / "vocab.csv").write_text(header + '"[2, 5]","[1, 1]","[2, 99999]","[1, 1]",,\n')
    cases["id outside the vocabulary"] = (2, tmp / "vocab.csv", [], "vocab.csv, line 2, column p_ids: token id 99999")
    (tmp / "masklen.csv").write_text(header + '"[2, 5, 6]","[1, 1]","[2, 7]","[1, 1]",,\n')
    cases["mask length differs"] = (2, tmp / "masklen.csv", [], "masklen.csv, line 2, column a_mask: 2 values for 3 ids")
    (tmp / "mask2.csv").write_text(header + '"[2, 5]","[1, 2]","[2, 7]","[1, 1]",,\n')
    cases["mask not 0/1"] = (2, tmp / "mask2.csv", [], "mask2.csv, line 2, column a_mask: mask values must be 0 or 1")
    con = sqlite3.connect(tmp / "other.db")
    con.execute("CREATE TABLE searches (q TEXT)")
    con.commit()
    con.close()
    cases["queries.db without the table"] = (3, tmp / "other.db", [], "no table 'queries'; the file has tables ['searches']")
    cases["queries.db without the column"] = (3, tmp / "other.db", ["--table", "searches"],
                                              "table 'searches' has no column 'query'; its columns are ['q']")
    (tmp / "notsqlite.db").write_text("query\nbest shoes\n")
    cases["not SQLite at all"] = (3, tmp / "notsqlite.db", [], "notsqlite.db: not an SQLite database")
    torch.save({"ids": torch.zeros(2, 3)}, tmp / "wrong.pt")
    cases[".pt with other contents"] = (3, tmp / "wrong.pt", [], "expected a dict with 'input_ids' and 'attention_mask'")
    with open(tmp / "evil.pt", "wb") as f:
        pickle.dump(RunsCode(tmp / "CODE_RAN"), f)
    cases[".pt that runs code"] = (3, tmp / "evil.pt", [], "not a tensor file that loads safely (weights_only=True)")
    return cases


BAD_INPUT_NAMES = [
    "empty text.txt", "only blank lines", "non-UTF-8 bytes", "a line over every limit", "triplets missing a column",
    "ragged row", "id outside the vocabulary", "mask length differs", "mask not 0/1", "queries.db without the table",
    "queries.db without the column", "not SQLite at all", ".pt with other contents", ".pt that runs code",
]


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_bad_input_is_refused_up_front_naming_the_place(name, tiny_backbone, tmp_path, monkeypatch):
    from gemma_embed import loop
    from gemma_embed.data.readers import DataError

    phase1, phase2, phase3 = (load_script(f"phase{n}") for n in (1, 2, 3))

    phase, data, extra, expected = _bad_inputs(tmp_path)[name]
    loaded = []
    monkeypatch.setattr(loop.checkpoint, "save", lambda *a, **k: loaded.append("checkpoint"))
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "keep.txt").write_text("a finished checkpoint lives here")
    out = tmp_path / "out"
    args = ["--config", str(REPO / f"train/configs/smoke/phase{phase}.yaml"), "--output_dir", str(out),
            "--data", str(data), "--backbone", tiny_backbone, "--init_from", "", *extra]
    before = tree_digest(previous)
    with pytest.raises(DataError) as err:
        {1: phase1, 2: phase2, 3: phase3}[phase].main(args)
    assert expected in str(err.value)
    assert str(data.name) in str(err.value)
    assert not loaded and not (out / "config.json").exists() and not (out / "checkpoints").exists()
    assert tree_digest(previous) == before
    assert not (tmp_path / "CODE_RAN").exists()


@pytest.mark.parametrize(
    "extra, expected",
    [(["--learning_rate", "1e-4"], "unknown option"), (["--batch_size", "0"], "'batch_size' must be a positive integer"),
     (["--temperature", "-1"], "'temperature' must be > 0"), (["--mixed_precision", "fp16"], "overflows")],
)
def test_bad_config_is_refused(extra, expected, tiny_backbone, tmp_path):
    from gemma_embed.config import ConfigError

    phase1 = load_script("phase1")
    with pytest.raises(ConfigError, match=expected):
        phase1.main(_phase1_args(tiny_backbone, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


def test_finished_model_is_never_overwritten(tiny_backbone, tmp_path):
    from gemma_embed.config import ConfigError

    phase1 = load_script("phase1")
    out = tmp_path / "done"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a published model"):
        phase1.main(_phase1_args(tiny_backbone, out))
    assert (out / "config.json").read_text() == "{}"


# --------------------------------------------------------------------------------------------------- many processes
def test_only_the_main_process_writes(chain, tmp_path):
    from launch import accelerate_launch

    root, env, outs = chain
    out, log = tmp_path / "two", tmp_path / "writes"
    run = accelerate_launch(
        "tests/helpers/audit_writes.py", str(out), str(log), str(REPO / "train/phase1.py"),
        "--config", "train/configs/smoke/phase1.yaml", "--output_dir", str(out), "--save_every", "3",
        "--device", "cpu", processes=2, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    main = Path(f"{log}.0").read_text()
    assert "checkpoints/.tmp-step-3" in main and ".publish-tmp" in main  # the main process wrote both
    assert (out / "checkpoints/step-12/rng-1.pt").is_file()  # the other process's RNG, written by the main one
    assert (out / "model.safetensors").is_file()
    assert not Path(f"{log}.1").exists(), Path(f"{log}.1").read_text()
