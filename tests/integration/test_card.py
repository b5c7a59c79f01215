"""The model card is generated from a run's files: every number in it comes from metrics.json or the phase
summaries."""

from pathlib import Path

import yaml

from gemma_embed.publish.card import write_card


def test_card_from_the_smoke_chain(chain):
    root, _, outs = chain
    metrics = {
        "stsb_test_spearman": 71.234, "stsb_dev_spearman": 74.5678, "train_seconds": 123.0,
        "stages": {"raw": {"stsb_dev_spearman": 50.5}, "phase1": {"stsb_dev_spearman": 60.25},
                   "final": {"stsb_test_spearman": 71.234, "stsb_dev_spearman": 74.5678, "uniformity": -3.5}},
        "baselines": {"all-MiniLM-L6-v2, STS-B test": 82.03},
        "notes": ["a note from the run"],
    }
    card = write_card(outs[3], [outs[1], outs[2], outs[3]], metrics, "org/gemma-embed-test", "bash scripts/demo.sh",
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
