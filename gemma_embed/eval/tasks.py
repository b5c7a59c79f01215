"""The evaluation tasks, each a function of an embedder (texts -> (n, d) tensor) and its data:

  STS         sentence pairs with gold scores -> cosine Spearman and Pearson (gemma_embed/scores.py)
  retrieval   queries, corpus and relevance judgements -> nDCG@10, MRR@10, recall@100, MAP@100, ...
  wikiqa      each question with its candidate sentences (WikiQA layout) -> MAP, MRR@10, nDCG@10
  geometry    alignment on positive pairs and uniformity on random texts (Wang and Isola, 2020)

STS, retrieval and WikiQA are sentence-transformers' own evaluators (EmbeddingSimilarityEvaluator,
InformationRetrievalEvaluator, RerankingEvaluator) run on the embedder, their figures x 100 under their own metric
names, so that they compare with any model's; only the geometry is ours.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from gemma_embed.data.readers import DataError
from gemma_embed.encoder import Embed
from gemma_embed.scores import evaluate_with, read_sts


# ------------------------------------------------------------------------------------------------------ retrieval
def _read_tsv_texts(path: Path) -> dict[str, str]:
    out = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DataError(f"{path}, line {line_no}: expected id<TAB>text")
            out[parts[0]] = " ".join(parts[1:])
    return out


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """TREC (`qid 0 docid rel`) or TSV (`qid<TAB>docid<TAB>rel`, an optional header)."""
    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) == 4:
                qid, _, did, rel = parts
            elif len(parts) == 3:
                qid, did, rel = parts
            else:
                raise DataError(f"{path}, line {line_no}: expected 'qid 0 docid rel' or 'qid docid rel'")
            try:
                if float(rel) > 0:
                    qrels[qid][did] = float(rel)
            except ValueError:
                if line_no > 1:
                    raise DataError(f"{path}, line {line_no}: relevance {rel!r} is not a number") from None
    return qrels


def retrieval(embed: Embed, queries: Path, corpus: Path, qrels: Path, name: str = "retrieval") -> dict:
    """InformationRetrievalEvaluator by cosine over the whole corpus (relevance > 0 counts as relevant: its nDCG is
    binary): `{name}_cosine_ndcg@10`, `_mrr@10`, `_recall@100`, `_precision@100`, `_accuracy@10`, `_map@100`."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    rels = read_qrels(qrels)
    evaluator = InformationRetrievalEvaluator(
        _read_tsv_texts(queries), _read_tsv_texts(corpus), {qid: set(docs) for qid, docs in rels.items()},
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[10], precision_recall_at_k=[100], map_at_k=[100],
        score_functions={"cosine": cos_sim}, main_score_function="cosine", name=name, write_csv=False)
    return evaluate_with(evaluator, embed)


def read_wikiqa(folder: str | Path) -> list[tuple[str, list[str], list[int]]]:
    """WikiQA in castorini's layout: a.toks (question), b.toks (candidate), id.txt, sim.txt (1 = correct)."""
    folder = Path(folder)
    files = [folder / n for n in ("a.toks", "b.toks", "id.txt", "sim.txt")]
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: WikiQA file not found")
    cols = [f.read_text(encoding="utf-8").splitlines() for f in files]
    if len({len(c) for c in cols}) != 1:
        raise DataError(f"{folder}: a.toks, b.toks, id.txt and sim.txt differ in length")
    groups: dict[str, tuple[str, list[str], list[int]]] = {}
    for question, answer, qid, label in zip(*cols):
        groups.setdefault(qid, (question, [], []))
        groups[qid][1].append(answer)
        groups[qid][2].append(int(label))
    return [g for g in groups.values() if any(g[2])]


def wikiqa(embed: Embed, folder: str | Path, name: str = "wikiqa", max_questions: int = 0) -> dict:
    """RerankingEvaluator by cosine, each question's candidates re-ranked: `{name}_map`, `{name}_mrr@10`,
    `{name}_ndcg@10` (questions whose candidates are all correct are skipped, as the evaluator does); the first
    `max_questions` (0: all)."""
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator

    samples = [{"query": question, "positive": [a for a, ok in zip(answers, labels) if ok],
                "negative": [a for a, ok in zip(answers, labels) if not ok]}
               for question, answers, labels in read_wikiqa(folder)[:max_questions or None]]
    evaluator = RerankingEvaluator(samples, at_k=10, name=name, write_csv=False)
    return evaluate_with(evaluator, embed)


# ------------------------------------------------------------------------------------------------------- geometry
def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||f(x) - f(y)||^alpha over positive pairs of unit vectors (lower is better)."""
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of unit vectors (lower is better; -4 is the limit
    for t=2 on a high-dimensional sphere)."""
    x = F.normalize(x.float(), dim=-1)
    return float(torch.pdist(x).pow(2).mul(-t).exp().mean().log())


def geometry(embed: Embed, sts_path: str | Path, texts: list[str]) -> dict:
    s1, s2, gold = read_sts(sts_path)
    positives = [(a, b) for a, b, g in zip(s1, s2, gold) if g >= 4.0]
    return {"alignment": alignment(embed([a for a, _ in positives]), embed([b for _, b in positives])),
            "uniformity": uniformity(embed(texts))}
