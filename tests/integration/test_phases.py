"""The smoke chain: the three phase scripts under `accelerate launch` on a tiny random Gemma 3 and a few hundred
bundled real rows, each writing a published folder. (Crash and resume: tests/test_reliability.py.)"""

import json

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


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
    # a phase's starting score is the previous phase's final one on the same file, reused rather than recomputed
    for n in (2, 3):
        before = json.loads((outs[n] / "train_summary.json").read_text())["sts_before"]
        assert before == json.loads((outs[n - 1] / "train_summary.json").read_text())["sts_after"]
        first = json.loads((outs[n] / "logs/metrics.jsonl").read_text().splitlines()[0])
        assert first == {"step": 0, "sts_spearman": before, "from_previous_phase": True}
    lineage = json.loads((outs[3] / "previous_phases.json").read_text())
    assert [p["phase"] for p in lineage] == ["Phase1Config", "Phase2Config"]
    assert lineage[1]["init_from"] == str(outs[1])


def test_phases_change_the_model(chain):
    _, _, outs = chain
    weights = [load_file(str(outs[n] / "model.safetensors")) for n in (1, 2, 3)]
    name = next(k for k in weights[0] if "q_proj" in k)
    assert not torch.equal(weights[0][name], weights[1][name]) and not torch.equal(weights[1][name], weights[2][name])
