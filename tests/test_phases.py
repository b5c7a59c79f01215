"""The smoke chain: the three phase scripts under `accelerate launch` on a tiny random Gemma 3 and a few hundred
bundled real rows, each writing a published folder; then an exact resume after a kill -9."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from launch import REPO, accelerate_launch

pytestmark = pytest.mark.slow


def run_phase(n: int, out: Path, env: dict, *extra: str, init_from: Path | None = None, data: Path | None = None):
    args = ["--config", f"train/configs/smoke/phase{n}.yaml", "--output_dir", str(out), *extra]
    if init_from:
        args += ["--init_from", str(init_from)]
    if data:
        args += ["--data", str(data)]
    return accelerate_launch(f"train/phase{n}.py", *args, env=env)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    import sys

    sys.path.insert(0, str(REPO / "examples"))
    from make_queries_db import make_queries_db

    root = tmp_path_factory.mktemp("smoke")
    env = {"GEMMA_EMBED_CACHE": str(root / "cache")}
    db = make_queries_db(REPO / "examples/data/queries.tsv", root / "queries.db")
    outs = {}
    for n in (1, 2, 3):
        outs[n] = root / f"phase{n}"
        run = run_phase(n, outs[n], env, init_from=outs.get(n - 1), data=db if n == 3 else None)
        assert run.returncode == 0, f"phase {n}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return root, env, outs


def test_each_phase_writes_a_published_folder(chain):
    from sentence_transformers import SentenceTransformer

    _, _, outs = chain
    for n, out in outs.items():
        summary = json.loads((out / "train_summary.json").read_text())
        assert summary["steps"] == 12 and summary["rows"] == 256
        assert summary["sts_before"] is not None and summary["sts_after"] is not None
        metrics = [json.loads(l) for l in (out / "logs/metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics if "loss" in m] == [2, 4, 6, 8, 10, 12]
        assert (out / "train_config.yaml").is_file() and (out / "checkpoints/step-6/state.pt").is_file()
        assert list((out / "logs").rglob("events.out.tfevents*")), "no TensorBoard events"
        vecs = SentenceTransformer(str(out), device="cpu").encode(["best running shoes", "a cat"])
        assert vecs.shape == (2, 256)
    lineage = json.loads((outs[3] / "previous_phases.json").read_text())
    assert [p["phase"] for p in lineage] == ["Phase1Config", "Phase2Config"]
    assert lineage[1]["init_from"] == str(outs[1])


def test_phases_change_the_model(chain):
    _, _, outs = chain
    weights = [load_file(str(outs[n] / "model.safetensors")) for n in (1, 2, 3)]
    name = next(k for k in weights[0] if "q_proj" in k)
    assert not torch.equal(weights[0][name], weights[1][name]) and not torch.equal(weights[1][name], weights[2][name])


def test_resume_after_kill_is_bit_identical(chain):
    root, env, outs = chain
    out = root / "killed"
    killed = run_phase(1, out, {**env, "GEMMA_EMBED_KILL_AT_STEP": "9"})
    assert killed.returncode != 0
    assert (out / "checkpoints/step-6").is_dir() and not (out / "model.safetensors").exists()
    refused = run_phase(1, out, env)  # without --resume the checkpoints are not silently overwritten
    assert refused.returncode != 0 and "pass --resume" in refused.stderr
    resumed = run_phase(1, out, env, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for rel in ("model.safetensors", "2_Dense/model.safetensors"):
        a, b = load_file(str(outs[1] / rel)), load_file(str(out / rel))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{rel}: {key}"
    first = [json.loads(l) for l in (outs[1] / "logs/metrics.jsonl").read_text().splitlines()]
    again = [json.loads(l) for l in (out / "logs/metrics.jsonl").read_text().splitlines()]
    loss_at = lambda rows, s: [r["loss"] for r in rows if r.get("step") == s and "loss" in r][-1]  # noqa: E731
    assert loss_at(again, 12) == loss_at(first, 12)
