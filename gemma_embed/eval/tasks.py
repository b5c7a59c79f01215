"""The evaluation tasks, each a function of an embedder (texts -> (n, d) tensor) and its data:

  STS         sentence pairs with gold scores -> cosine Spearman x 100 (STS Benchmark layout, or s1<TAB>s2<TAB>score)
  retrieval   queries, corpus and relevance judgements -> nDCG@10, MRR@10, recall@100
  wikiqa      each question with its candidate sentences (WikiQA layout) -> MRR and MAP
  geometry    alignment on positive pairs and uniformity on random texts (Wang and Isola, 2020)
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from gemma_embed.data.readers import DataError
from gemma_embed.encoder import Embed
from gemma_embed.scores import read_sts


# ------------------------------------------------------------------------------------------------------ retrieval
def ranking_metrics(scores: torch.Tensor, relevant: list[dict[int, float]], k: int = 10, recall_k: int = 100) -> dict:
    """scores: (queries, candidates). relevant[i]: {candidate index: graded relevance > 0}.
    Returns nDCG@k, MRR@k, recall@recall_k and MAP (over the full ranking), each averaged over queries."""
    order = scores.argsort(dim=1, descending=True).tolist()
    ndcg = mrr = recall = ap = 0.0
    for ranked, rel in zip(order, relevant):
        gains = [rel.get(c, 0.0) for c in ranked]
        dcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(gains[:k]))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
        ndcg += dcg / idcg if idcg else 0.0
        first = next((r for r, g in enumerate(gains) if g > 0), None)
        mrr += 1.0 / (first + 1) if first is not None and first < k else 0.0
        recall += sum(1 for g in gains[:recall_k] if g > 0) / max(1, len(rel))
        hits, precisions = 0, []
        for r, g in enumerate(gains):
            if g > 0:
                hits += 1
                precisions.append(hits / (r + 1))
        ap += sum(precisions) / max(1, len(rel))
    n = len(relevant)
    return {f"ndcg@{k}": 100 * ndcg / n, f"mrr@{k}": 100 * mrr / n, f"recall@{recall_k}": 100 * recall / n,
            "map": 100 * ap / n}


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


def retrieval(embed: Embed, queries: Path, corpus: Path, qrels: Path) -> dict:
    q, d, rels = _read_tsv_texts(queries), _read_tsv_texts(corpus), read_qrels(qrels)
    qids = [i for i in q if i in rels]
    dids = list(d)
    index = {did: i for i, did in enumerate(dids)}
    scores = embed([q[i] for i in qids]).float() @ embed([d[i] for i in dids]).float().T
    relevant = [{index[did]: rel for did, rel in rels[qid].items() if did in index} for qid in qids]
    out = ranking_metrics(scores, relevant)
    out.pop("map")
    return out


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


def wikiqa(embed: Embed, folder: str | Path) -> dict:
    questions = read_wikiqa(folder)
    q_emb = embed([q for q, _, _ in questions]).float()
    a_emb = embed([a for _, answers, _ in questions for a in answers]).float().split([len(g[1]) for g in questions])
    mrr = ap = 0.0
    for (_, answers, labels), q, a in zip(questions, q_emb, a_emb):
        scores = a @ q
        m = ranking_metrics(scores[None], [{i: 1.0 for i, l in enumerate(labels) if l}], k=len(answers))
        mrr += m[f"mrr@{len(answers)}"]
        ap += m["map"]
    return {"mrr": mrr / len(questions), "map": ap / len(questions)}


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
