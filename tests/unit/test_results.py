"""The record of an end-to-end run (train/demo_lib/results.py): metrics.json built from the phases' summaries
and the final evaluations, every shared metric of the reference model under baselines, and the printed table."""

from types import SimpleNamespace

from demo_lib.results import encoder_metrics, results_table


def _summary(before, after, seconds):
    return {"sts_before": before, "sts_after": after, "train_seconds": seconds}


def test_metrics_and_table_carry_every_stage_and_the_reference_beside_the_model():
    precision = SimpleNamespace(cpu="AMD EPYC", name="bf16 autocast", to_dict=lambda: {"precision": "bf16"},
                                line=lambda: "bf16 autocast (native)")
    final = {"stsb_test_spearman_cosine": 78.3, "stsb_test_spearman_cosine@128": 77.9, "invert_h.tsv_token_f1_corrected": 55.0}
    reference = {"stsb_test_spearman_cosine": 82.0, "invert_h.tsv_token_f1_corrected": 56.3, "probe_f1": 39.3}
    metrics = encoder_metrics([_summary(71.9, 71.8, 20), _summary(71.8, 85.5, 700), _summary(85.5, 85.6, 60)],
                              final, {"stsb_test_spearman_cosine": 37.8}, reference, precision, 300)
    assert metrics["train_seconds"] == 780 and metrics["stsb_test_spearman_cosine"] == 78.3
    assert metrics["stages"]["final"]["stsb_dev_spearman_cosine"] == 85.6 and metrics["phase2_stsb_dev"] == 85.5
    # the reference's metrics that the model also has, labelled; its others left out
    assert metrics["baselines"] == {"all-MiniLM-L6-v2, STS-B test, Spearman": 82.0,
                                    "all-MiniLM-L6-v2, inversion, h.tsv, after correction: token F1": 56.3}
    assert metrics["hardware"].startswith("AMD EPYC") and metrics["hardware"].endswith("bf16 autocast")
    table = results_table(metrics)
    assert "all-MiniLM-L6-v2 (reference)" in table and "(dev: 300 pairs)" in table
    row = next(l for l in table.splitlines() if l.startswith("after phase 3 (published)"))
    assert row.split()[-2:] == ["85.60", "78.30"]
    row = next(l for l in table.splitlines() if l.startswith("inversion, h.tsv, after correction: token F1"))
    assert row.split()[-2:] == ["55.00", "56.30"]
    row = next(l for l in table.splitlines() if l.startswith("STS-B test, Spearman at 128 dims"))
    assert row.split()[-1] == "77.90"  # no reference value at 128 dims
