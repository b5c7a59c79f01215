"""Every metric against values computed by hand, with stand-in embedders whose geometry is known."""

import math

import pytest
import torch

from gemma_embed.encoder import memoize
from gemma_embed.eval.probe import token_probe, word_sets
from gemma_embed.eval.tasks import alignment, read_qrels, retrieval, uniformity, wikiqa
from gemma_embed.scores import sts_spearman


def unit(angle):
    return [math.cos(angle), math.sin(angle)]


def test_sts_perfect_and_reversed(tmp_path):
    gold = [0.0, 1.2, 2.5, 3.1, 4.8, 5.0]
    rows = [f"g\tf\t2012\t{i}\t{g}\tleft {i}\tright {i}" for i, g in enumerate(gold)]
    path = tmp_path / "sts.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    angle = {f"right {i}": math.acos(g / 5) for i, g in enumerate(gold)}
    perfect = lambda texts: torch.tensor([unit(angle.get(t, 0.0)) for t in texts])  # noqa: E731
    assert sts_spearman(perfect, path) == pytest.approx(100.0)
    reversed_ = lambda texts: torch.tensor([unit(math.pi / 2 - angle.get(t, math.pi / 2)) for t in texts])  # noqa: E731
    assert sts_spearman(reversed_, path) == pytest.approx(-100.0)


def test_memoize_encodes_each_text_once_and_keeps_order():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return torch.tensor([[float(len(t)), float(ord(t[0]))] for t in texts])

    cached = memoize(embed)
    first = cached(["ab", "c", "ab"])
    assert calls == [["ab", "c"]]
    assert first.tolist() == [[2.0, 97.0], [1.0, 99.0], [2.0, 97.0]]
    second = cached(["dd", "c"])
    assert calls == [["ab", "c"], ["dd"]]
    assert second.tolist() == [[2.0, 100.0], [1.0, 99.0]]
    cached.forget()  # a timed run starts from nothing encoded
    cached(["c"])
    assert calls[-1] == ["c"]


def test_retrieval_files(tmp_path):
    (tmp_path / "q.tsv").write_text("q1\tcats\nq2\tdogs\nq3\tunjudged\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("d1\tcats\nd2\tdogs\nd3\tfish\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 2\nq2 0 d3 0\n", encoding="utf-8")
    assert read_qrels(tmp_path / "qrels.txt") == {"q1": {"d1": 1.0}, "q2": {"d2": 2.0}}
    vectors = {"cats": [1.0, 0.0, 0.0], "dogs": [0.0, 1.0, 0.0], "fish": [0.0, 0.0, 1.0], "unjudged": [1, 1, 1]}
    embed = lambda texts: torch.tensor([vectors[t] for t in texts], dtype=torch.float)  # noqa: E731
    out = retrieval(embed, tmp_path / "q.tsv", tmp_path / "c.tsv", tmp_path / "qrels.txt")
    assert {k: out[f"retrieval_cosine_{k}"] for k in ("ndcg@10", "mrr@10", "recall@100", "map@100")} == {
        "ndcg@10": 100.0, "mrr@10": 100.0, "recall@100": 100.0, "map@100": 100.0}
    (tmp_path / "q2.tsv").write_text("q1\tkitten\nq2\tpuppy\n", encoding="utf-8")  # each finds the other's first
    vectors |= {"kitten": [0.1, 1.0, 0.0], "puppy": [1.0, 0.1, 0.0]}
    out = retrieval(embed, tmp_path / "q2.tsv", tmp_path / "c.tsv", tmp_path / "qrels.txt", name="r")
    assert out["r_cosine_mrr@10"] == pytest.approx(50.0) and out["r_cosine_recall@100"] == 100.0


def test_wikiqa_map_and_mrr(tmp_path):
    for name, lines in {"a.toks": ["q one"] * 3 + ["q two"] * 2, "b.toks": ["x", "right", "y", "right", "z"],
                        "id.txt": ["1", "1", "1", "2", "2"], "sim.txt": ["0", "1", "0", "1", "0"]}.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    good = lambda texts: torch.tensor([[1.0, 0.0] if t in ("right", "q one", "q two") else [0.0, 1.0] for t in texts])  # noqa: E731
    assert {k: v for k, v in wikiqa(good, tmp_path).items()} == {"wikiqa_map": 100.0, "wikiqa_mrr@10": 100.0,
                                                                 "wikiqa_ndcg@10": 100.0}
    bad = lambda texts: torch.tensor([[0.0, 1.0] if t == "right" else [1.0, 0.0] for t in texts])  # noqa: E731
    assert wikiqa(bad, tmp_path)["wikiqa_mrr@10"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)


def test_alignment_and_uniformity_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert alignment(x, x) == 0.0
    assert alignment(x, torch.tensor([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(2.0)
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)
    assert uniformity(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])) == pytest.approx(
        math.log((1 + 2 * math.exp(-4)) / 3)
    )


def test_probe_recovers_words_from_an_informative_embedding_only():
    words = [f"w{i}" for i in range(40)]
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(words[j] for j in torch.randperm(40, generator=g)[:5].tolist()) for _ in range(600)]
    vocab = {w: i for i, w in enumerate(words)}
    informative = word_sets(texts, vocab) + 0.01 * torch.randn(600, 40, generator=g)
    noise = torch.randn(600, 40, generator=g)
    good = token_probe(informative[:500], texts[:500], informative[500:], texts[500:], steps=200)
    bad = token_probe(noise[:500], texts[:500], noise[500:], texts[500:], steps=200)
    assert good["probe_f1"] > 95 and bad["probe_f1"] < 40
