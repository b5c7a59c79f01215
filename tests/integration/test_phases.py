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


def test_each_phase_reports_the_score_of_the_model_it_published(chain):
    """sts_after is the published folder's own score: loaded through sentence-transformers (another code path than
    the training loop's encode) and scored on the same 200 pairs, in the precision the run used; a score of
    the unmerged model, of another file or of other pairs would differ."""
    from sentence_transformers import SentenceTransformer

    from gemma_embed.scores import sts_spearman
    from gemma_embed.precision import resolve
    from conftest import REPO

    _, _, outs = chain
    decision = resolve("auto", "cpu")
    for n, out in outs.items():
        summary = json.loads((out / "train_summary.json").read_text())
        model = SentenceTransformer(str(out), device="cpu")

        def embed(texts):
            with decision.autocast("cpu"):
                return torch.as_tensor(model.encode(texts, batch_size=64)).float()

        score = sts_spearman(embed, REPO / "examples/data/sts-dev.csv", 200)
        assert score == pytest.approx(summary["sts_after"], abs=0.5 if decision.precision == "bf16" else 1e-3), n


def test_phases_change_the_model(chain):
    _, _, outs = chain
    weights = [load_file(str(outs[n] / "model.safetensors")) for n in (1, 2, 3)]
    name = next(k for k in weights[0] if "q_proj" in k)
    assert not torch.equal(weights[0][name], weights[1][name]) and not torch.equal(weights[1][name], weights[2][name])


def test_the_word_head_trains_in_phase_2_and_is_not_published(chain):
    """Smoke phase 2 weighs the word loss: its checkpoints hold the word head (resume restores it: the resume test
    compares the losses), its published folder the same tensors as phase 1's, and phase 3 starts without one."""
    import yaml

    _, _, outs = chain
    assert yaml.safe_load((outs[2] / "train_config.yaml").read_text())["word_loss_weight"] > 0
    state = torch.load(outs[2] / "checkpoints/step-12/state.pt", weights_only=False)
    assert any(k.startswith("word_head.") for k in state["trainable"])
    keys = [set(load_file(str(outs[n] / "model.safetensors"))) for n in (1, 2, 3)]
    assert keys[0] == keys[1] == keys[2] and not any("word_head" in k for k in keys[1])


def test_a_run_starts_by_saying_where_it_runs_and_in_what_precision(chain):
    from gemma_embed.precision import resolve

    _, _, outs = chain
    summary = json.loads((outs[1] / "train_summary.json").read_text())
    decision = resolve()  # the smoke configs ask for auto: what this machine (or GEMMA_EMBED_PRECISION) decides
    assert summary["device"] == "cpu" and summary["precision"]["precision"] == decision.precision
    assert summary["precision"]["reason"].split(":")[0] == decision.reason.split(":")[0]
    assert summary["device_name"] == decision.cpu


def test_demo_configs_take_their_precision_from_the_hardware():
    from gemma_embed.config import Phase1Config, Phase2Config, Phase3Config, load_config

    for n, cls in ((1, Phase1Config), (2, Phase2Config), (3, Phase3Config)):
        for folder in ("train/configs", "train/configs/demo", "train/configs/long"):
            cfg, _ = load_config(cls, ["--config", f"{folder}/phase{n}.yaml"])
            assert cfg.mixed_precision == "auto", (folder, n)


def test_the_first_line_says_device_processes_and_the_precision_decision(tiny_backbone, tmp_path):
    from launch import accelerate_launch

    from gemma_embed.precision import resolve

    run = accelerate_launch("train/phase1.py", "--config", "train/configs/smoke/phase1.yaml", "--backbone",
                            tiny_backbone, "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--eval_sts", "",
                            "--mixed_precision", "auto", env={"GEMMA_EMBED_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    decision = resolve("auto")  # the rule's part of the reason; the measured ratio beside it varies run to run
    line = next(line for line in run.stdout.splitlines() if line.startswith("device: "))
    assert line.startswith(f"device: cpu ({decision.cpu}), 1 process; precision: {decision.name} "
                           f"({decision.reason.split(':')[0]}")
    summary = json.loads((tmp_path / "out/train_summary.json").read_text())
    assert summary["precision"]["precision"] == decision.precision and summary["precision"]["name"] in line
