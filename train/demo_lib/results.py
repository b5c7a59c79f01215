"""The record of an end-to-end run (train/demo.py): metrics.json's layout built from the phases' summaries and the
final evaluations, and the table it prints. The model card (publish/card.py) and docs/results.md
(benchmarks/report.py) read the same file.

    metrics = encoder_metrics(summaries, final, raw, reference, precision, dev_pairs)
    print(results_table(metrics))
"""

from __future__ import annotations

import os

REFERENCE = "all-MiniLM-L6-v2"


def encoder_metrics(summaries: list[dict], final: dict, raw: dict, reference: dict, precision, dev_pairs: int) -> dict:
    """metrics.json from the three phases' train_summary.json (`summaries`), the published model's evaluation
    (`final`), the raw backbone's (`raw`) and all-MiniLM-L6-v2's (`reference`, every metric it shares with
    `final` goes under baselines), in `precision` (a precision.Decision); STS-B dev on `dev_pairs` pairs."""
    from gemma_embed.eval.metrics import label

    first, second, third = summaries
    return {
        "raw_stsb_test_spearman_cosine": raw["stsb_test_spearman_cosine"],
        "start_stsb_dev_spearman_cosine": first["sts_before"],
        "phase1_stsb_dev": first["sts_after"],
        "phase2_stsb_dev": second["sts_after"],
        "phase3_stsb_dev": third["sts_after"],
        "stsb_test_spearman_cosine": final["stsb_test_spearman_cosine"],
        "stsb_dev_pairs": dev_pairs,
        "train_seconds": sum(s["train_seconds"] for s in summaries),
        "hardware": f"{precision.cpu or 'CPU'}, {os.cpu_count()} cores, {precision.name}",
        "precision": precision.to_dict(),
        "stages": {
            "raw": raw,
            "phase1": {"stsb_dev_spearman_cosine": first["sts_after"]},
            "phase2": {"stsb_dev_spearman_cosine": second["sts_after"]},
            "final": {**final, "stsb_dev_spearman_cosine": third["sts_after"]},
        },
        "baselines": {f"{REFERENCE}, {label(k)}": v for k, v in reference.items() if k in final},
        "notes": [
            "raw: the Gemma 3 270M backbone as pretrained (causal attention), hidden states mean-pooled, no head.",
            f"Training started from STS-B dev {first['sts_before']:.2f}: the configured attention mode with a "
            "freshly initialised head.",
            f"STS-B dev is the training loop's evaluation after each phase, on {dev_pairs} evenly spaced pairs of "
            f"the 1,500 (eval_max_pairs); STS-B test{', WikiQA' if 'wikiqa_mrr@10' in final else ''} and the geometry "
            f"are the published folder loaded by sentence-transformers, on the full sets; all in {precision.line()}.",
            "inversion: held-out queries written back from their vectors without a decoder, from the nearest bundled "
            "query by word edits judged by the encoder (gemma_embed/eval/inversion.py, bank_inversion), the same "
            f"way for {REFERENCE}.",
        ],
    }


def results_table(metrics: dict) -> str:
    """STS-B dev and test along the run, then every metric of the final model beside all-MiniLM-L6-v2's."""
    from gemma_embed.eval.metrics import label

    stages, dev_pairs = metrics["stages"], metrics["stsb_dev_pairs"]
    rows = [("raw 270M (causal, mean-pooled)", None, stages["raw"]["stsb_test_spearman_cosine"]),
            ("start (config attention, new head)", metrics["start_stsb_dev_spearman_cosine"], None),
            ("after phase 1", metrics["phase1_stsb_dev"], None),
            ("after phase 2", metrics["phase2_stsb_dev"], None),
            ("after phase 3 (published)", metrics["phase3_stsb_dev"], metrics["stsb_test_spearman_cosine"])]
    reference = {k.split(", ", 1)[1]: v for k, v in metrics["baselines"].items()}
    rows.append((f"{REFERENCE} (reference)", None, reference.get(label("stsb_test_spearman_cosine"))))
    lines = [f"{'model':<38}{'STS-B dev':>10}{'STS-B test':>11}   (dev: {dev_pairs} pairs)"]
    lines += [f"{name:<38}{_cell(d):>10}{_cell(t):>11}" for name, d, t in rows]
    final = stages["final"]
    lines += ["", f"{'final model, every metric':<70}{'ours':>8}{'MiniLM':>8}"]
    for key in sorted(final):
        lines.append(f"{label(key)[:70]:<70}{_cell(final[key]):>8}{_cell(reference.get(label(key))):>8}")
    return "\n".join(lines)


def _cell(value) -> str:
    return "" if value is None else f"{value:.2f}"
