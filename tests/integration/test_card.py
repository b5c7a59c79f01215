"""The model card is generated from a run's files: every number in it comes from metrics.json or the phase
summaries."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gemma_embed.publish.card import write_card


def test_card_from_the_smoke_chain(chain, tmp_path):
    root, _, outs = chain
    model = tmp_path / "model"  # a copy: the phase folder keeps the card its phase wrote
    shutil.copytree(outs[3], model, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    metrics = {
        "stsb_test_spearman_cosine": 71.234, "stsb_dev_spearman_cosine": 74.5678, "train_seconds": 123.0,
        "stages": {"raw": {"stsb_dev_spearman_cosine": 50.5}, "phase1": {"stsb_dev_spearman_cosine": 60.25},
                   "final": {"stsb_test_spearman_cosine": 71.234, "stsb_dev_spearman_cosine": 74.5678, "uniformity": -3.5}},
        "baselines": {"all-MiniLM-L6-v2, STS-B test": 82.03},
        "notes": ["a note from the run"],
    }
    card = write_card(model, [outs[1], outs[2], outs[3]], metrics, "org/gemma-embed-test", "bash scripts/demo.sh",
                      ["stanfordnlp/snli"], ["a source"], ["a limitation"]).read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "sentence-transformers" and front["pipeline_tag"] == "sentence-similarity"
    assert front["license"] == "gemma" and front["datasets"] == ["stanfordnlp/snli"]
    assert front["base_model"] == "tiny"
    results = front["model-index"][0]["results"]
    assert [r["metrics"][0]["value"] for r in results] == [71.23, 74.57]
    assert "| STS-B test, Spearman | - | - | - | 71.23 |" in card
    assert "| STS-B dev, Spearman | 50.50 | 60.25 | - | 74.57 |" in card
    assert "| all-MiniLM-L6-v2, STS-B test | 82.03 |" in card
    assert "a note from the run" in card and "a limitation" in card and "a source" in card
    for n in (1, 2, 3):
        assert f"**Phase {n}**" in card
    assert "12 steps on 256 rows" in card and "$" not in card.split("```")[0].replace("$ ", "")


def test_card_shows_paths_inside_the_repository_relative():
    from gemma_embed.publish.card import _shown

    assert _shown(str(Path.cwd() / "runs/demo/phase1")) == "runs/demo/phase1"
    assert _shown("/elsewhere/runs/phase1") == "/elsewhere/runs/phase1"
    assert _shown("examples/data/text.txt") == "examples/data/text.txt" and _shown(64) == 64


def test_every_phase_folder_carries_its_card_with_hardware_and_precision(chain):
    _, _, outs = chain
    for n, out in outs.items():
        card = (out / "README.md").read_text()
        summary = json.loads((out / "train_summary.json").read_text())
        front = yaml.safe_load(card.split("---")[1])
        assert front["base_model"] == "tiny" and front["library_name"] == "sentence-transformers"
        for k in range(1, n + 1):
            assert f"**Phase {k}**" in card  # the lineage: every earlier phase's settings and summary
        assert summary["precision"]["name"] in card and summary["precision"]["reason"] in card
        assert f"on cpu ({summary['device_name']}, {summary['cpu_threads']} threads)" in card
        assert "| STS-B dev, Spearman |" in card and f"{summary['sts_after']:.2f}" in card
        assert "$" not in card.split("```")[0].replace("$ ", "")
        assert f"train/phase{n}.py --config train/configs/smoke/phase{n}.yaml" in card  # the command, as run


def test_push_writes_the_card_a_folder_lacks(chain, tmp_path):
    from gemma_embed.publish.push import push_folder

    _, _, outs = chain
    folder = tmp_path / "phase3"
    shutil.copytree(outs[3], folder, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (folder / "README.md").unlink()
    listed = push_folder(folder, "org/gemma-embed-phase3", dry_run=True)
    assert "README.md" in listed
    card = (folder / "README.md").read_text()
    assert "# gemma-embed-phase3" in card and "**Phase 3**" in card
    (folder / "README.md").unlink()
    (folder / "train_summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="no model card"):
        push_folder(folder, "org/x", dry_run=True)
