"""The invertibility probe: an MLP trained on frozen embeddings predicts which words occur in the text; precision,
recall and F1 of the recovered words on held-out texts, with the same splits for every model. It says how many
words a vector carries, not whether a decoder can write the text back (that is eval/inversion.py's question)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gemma_embed.data.query_files import read_queries_tsv
from gemma_embed.data.readers import read_text

WORD = re.compile(r"[a-z0-9]+")


def probe_texts(sample: str | Path, n_train: int = 4000, n_test: int = 1000, seed: int = 0
                ) -> tuple[list[str], list[str]]:
    """Real queries and Wikipedia sentences from the bundled sample folder (queries.tsv, text.txt), half each,
    split once by a fixed seed."""
    queries = [q for q, _ in read_queries_tsv(Path(sample) / "queries.tsv")]
    sentences = [s for s, in read_text(Path(sample) / "text.txt")]
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
    for _ in tqdm(range(steps), desc="training the probe", unit="step", disable=len(xs) < 2000, dynamic_ncols=True):
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
