"""Metrics of texts against texts, depending on nothing of ours: normalisation, token F1 (as SQuAD counts it), a
random derangement, re-ranking candidates by an embedder (texts -> vectors), and the diversity of a set of
reformulations (distinct-n, self-BLEU by sacrebleu)."""

from __future__ import annotations

import re
from collections import Counter

import torch
import torch.nn.functional as F

SPACES = re.compile(r"\s+")
WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    return SPACES.sub(" ", text.lower()).strip()


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """Word-level F1 of a decoded query against the original (lower-cased word runs, as SQuAD counts them)."""
    p, r = Counter(words(prediction)), Counter(words(reference))
    common = sum((p & r).values())
    if not common:
        return float(not p and not r)
    precision, recall = common / sum(p.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """For each of n items, the index of another one chosen at random (never itself; n >= 2)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.arange(n) + torch.randint(1, n, (n,), generator=g)) % n


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of `texts` (Li et al. 2016's distinct-n); 0 when there are none."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: list[str]) -> float | None:
    """Mean sentence BLEU (sacrebleu, lower-cased, smoothed) of each text against the others of its set (Zhu et al.
    2018): high when the texts repeat each other. None for fewer than two texts."""
    import sacrebleu

    if len(texts) < 2:
        return None
    return sum(sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1 :], lowercase=True).score
               for i, t in enumerate(texts)) / len(texts)


def rerank(candidates: list[list[str]], targets: torch.Tensor, embed) -> tuple[list[str], torch.Tensor]:
    """For each target, the candidate whose embedding is closest to it, and that cosine. Empty candidates are left
    out (unless a target has nothing else)."""
    candidates = [[c for c in group if c.strip()] or group for group in candidates]
    flat = [c for group in candidates for c in group]
    emb = F.normalize(embed(flat).float(), dim=-1)
    best, cosines, at = [], [], 0
    for group, target in zip(candidates, F.normalize(targets.float(), dim=-1)):
        sims = emb[at : at + len(group)] @ target
        best.append(group[int(sims.argmax())])
        cosines.append(sims.max())
        at += len(group)
    return best, torch.stack(cosines)
