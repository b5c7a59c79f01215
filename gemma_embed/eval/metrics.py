"""The one table of metric names: what evaluation returns, what metrics.json and train_summary.json hold, and what
the model card and the plots print, all under these keys and labels.

    METRICS["stsb_test_spearman_cosine"].label   -> "STS-B test, Spearman"
    sts_key("examples/data/sts-dev.csv")         -> "stsb_dev_spearman_cosine"

STS, retrieval and WikiQA keys are sentence-transformers' evaluators' own names (`{set}_spearman_cosine`,
`{set}_cosine_ndcg@10`, `{set}_mrr@10`, ...; eval/tasks.py), their values x 100. `upgrade` reads records written
before the evaluators were used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool = True


METRICS = {m.key: m for m in [
    Metric("stsb_dev_spearman_cosine", "STS-B dev, Spearman"),
    Metric("stsb_test_spearman_cosine", "STS-B test, Spearman"),
    Metric("sts_spearman", "STS Spearman on the phase's eval_sts file"),  # the training loop's metrics.jsonl
    Metric("stsb_dev_pearson_cosine", "STS-B dev, Pearson"),
    Metric("stsb_test_pearson_cosine", "STS-B test, Pearson"),
    Metric("wikiqa_mrr@10", "WikiQA test, MRR@10"),
    Metric("wikiqa_map", "WikiQA test, MAP"),
    Metric("wikiqa_ndcg@10", "WikiQA test, nDCG@10"),
    Metric("retrieval_cosine_ndcg@10", "retrieval, nDCG@10"),
    Metric("retrieval_cosine_mrr@10", "retrieval, MRR@10"),
    Metric("retrieval_cosine_recall@100", "retrieval, recall@100"),
    Metric("retrieval_cosine_precision@100", "retrieval, precision@100"),
    Metric("retrieval_cosine_accuracy@10", "retrieval, accuracy@10"),
    Metric("retrieval_cosine_map@100", "retrieval, MAP@100"),
    # records written before sentence-transformers' evaluators (our own code: MRR over every candidate)
    Metric("wikiqa_mrr", "WikiQA test, MRR (every candidate; older runs)"),
    Metric("alignment", "alignment (lower is better)", higher_is_better=False),
    Metric("uniformity", "uniformity (lower is better)", higher_is_better=False),
    Metric("probe_precision", "invertibility probe, word precision"),
    Metric("probe_recall", "invertibility probe, word recall"),
    Metric("probe_f1", "invertibility probe, word F1"),
    # the query decoder (eval/inversion.py), x 100 but the cosines
    Metric("exact_match", "exact match"),
    Metric("token_f1", "token F1"),
    Metric("bleu", "BLEU"),
    Metric("roundtrip_cosine", "round-trip cosine"),
    Metric("floor_cosine", "cosine of random pairs (floor)"),
    Metric("heldout_token_f1", "held-out greedy token F1 (training loop)"),
    Metric("distinct", "distinct generated queries, share"),
    Metric("novel", "generated queries not in the training data, share"),
    Metric("closer_to_document", "generated queries closer to the document than the seed, share"),
    Metric("closer_distinct", "distinct steps closer to the document than the seed, share"),
    Metric("novel_steps", "steps not in the training data, share"),
    Metric("step_cosine", "cosine of a step's query to its point, mean"),
    Metric("gap", "conditioning gap, nats per token (loss with another query's vector minus with its own)"),
    Metric("seconds_per_query", "correction, seconds per query"),
    Metric("encodes_per_query", "correction, texts embedded per query"),
]}

# STS files known by name; any other STS file is evaluated as sts_<file stem>
STS_FILES = {"sts-dev": "stsb_dev", "sts-test": "stsb_test"}


def sts_name(path: str | Path) -> str:
    """The evaluator's name for an STS file: the prefix of its metrics."""
    stem = Path(path).stem
    return STS_FILES.get(stem, f"sts_{stem.replace('-', '_')}")


def sts_key(path: str | Path) -> str:
    """The metric name of cosine Spearman on an STS file."""
    return f"{sts_name(path)}_spearman_cosine"


def upgrade(record):
    """A metrics record (dicts and lists, as json.load gives them) with the keys older runs wrote renamed to the
    evaluators' names where the figure is the same: an STS file's `..._spearman` (cosine Spearman x 100, as
    EmbeddingSimilarityEvaluator computes it) is `..._spearman_cosine`, also at a prefix (`@d`)."""
    if isinstance(record, list):
        return [upgrade(r) for r in record]
    if not isinstance(record, dict):
        return record
    out = {}
    for key, value in record.items():
        base, at, dims = key.partition("@")
        if base.endswith("_spearman") and base.startswith(("stsb_", "raw_stsb_", "start_stsb_", "sts_")) \
                and base != "sts_spearman":
            key = f"{base}_cosine{at}{dims}"
        out[key] = upgrade(value)
    return out


def label(key: str) -> str:
    """The printed label of a metric (`name@d`: at the first d dimensions; `invert_<set>_<metric>_<nearest|
    corrected>`: eval/inversion.py's bank inversion); a name outside the table prints as itself."""
    if key in METRICS:
        return METRICS[key].label
    base, at, dims = key.rpartition("@")
    key, suffix = (base, f" at {dims} dims") if at and dims.isdigit() else (key, "")
    if key.startswith("invert_"):
        for metric in ("exact_match", "token_f1", "bleu", "roundtrip_cosine"):
            for stage, said in (("nearest", "nearest bank query"), ("corrected", "after correction")):
                end = f"_{metric}_{stage}"
                if key.endswith(end):
                    return f"inversion, {key[len('invert_'):-len(end)]}, {said}: {METRICS[metric].label}{suffix}"
    return (METRICS[key].label if key in METRICS else key) + suffix
