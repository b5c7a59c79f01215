"""Length-bucketed batches: no repeated query in a batch, little padding, a pure function of (seed, index)."""

import numpy as np
import pytest

from gemma_embed.data.batches import LengthBucketedBatches, ShuffledBatches
from gemma_embed.data.readers import DataError


def _rows(n=3000, seed=0):
    """Token-list rows of lengths 2..24, with a head of repeated queries as in a search log."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        if rng.random() < 0.05:  # a popular query: one of a few, the most frequent ~60 times in 3000 rows
            q = int(min(rng.zipf(1.5), 12))
            rows.append(([2] + [100 + q] * (1 + q % 3),))
        else:
            rows.append(([2] + rng.integers(5, 500, rng.integers(1, 24)).tolist(),))
    return rows


def _padding_fraction(rows, batches):
    lengths = np.array([len(r[0]) for r in rows])
    real = sum(lengths[b].sum() for b in batches)
    padded = sum(lengths[b].max() * len(b) for b in batches)
    return 1 - real / padded


def test_no_batch_holds_a_query_twice():
    rows = _rows()
    order = LengthBucketedBatches(rows, batch_size=32, seed=1)
    for index in range(3 * order.per_epoch):
        batch = order.batch(index)
        queries = [tuple(rows[i][0]) for i in batch]
        assert len(set(queries)) == len(queries) == 32, f"batch {index} repeats a query"
    with pytest.raises(DataError, match="occurs 40 times, more often than the 10 batches"):
        LengthBucketedBatches([([2, 7],)] * 40 + [([2, i],) for i in range(10, 50)], batch_size=8, seed=0)


def test_batches_are_length_homogeneous():
    rows = _rows()
    bucketed = LengthBucketedBatches(rows, batch_size=32, seed=1)
    shuffled = ShuffledBatches(rows, batch_size=32, seed=1)
    ours = _padding_fraction(rows, [bucketed.batch(i) for i in range(bucketed.per_epoch)])
    random = _padding_fraction(rows, [shuffled.batch(i) for i in range(shuffled.per_epoch)])
    assert random > 0.4 and ours < 0.1, (ours, random)  # the few rows padded are copies moved out of a bucket


def test_deterministic_and_reshuffled_per_epoch():
    rows = _rows()
    a = LengthBucketedBatches(rows, batch_size=32, seed=1)
    b = LengthBucketedBatches(rows, batch_size=32, seed=1)
    epoch0 = [a.batch(i) for i in range(a.per_epoch)]
    assert epoch0 == [b.batch(i) for i in range(b.per_epoch)]
    assert [a.batch(a.per_epoch + i) for i in range(a.per_epoch)] != epoch0
    assert LengthBucketedBatches(rows, batch_size=32, seed=2).batch(0) != epoch0[0]


def test_each_epoch_covers_the_rows_once():
    rows = _rows(n=1000)
    order = LengthBucketedBatches(rows, batch_size=32, seed=3)
    assert order.per_epoch == 1000 // 32
    for epoch in range(2):
        seen = sum((order.batch(epoch * order.per_epoch + i) for i in range(order.per_epoch)), [])
        assert len(seen) == len(set(seen)) == order.per_epoch * 32  # 8 rows sit out, a different 8 each time
        assert set(seen) <= set(range(1000))


def test_batch_is_a_pure_function_of_the_index():
    """Resuming at a step only needs the step: a fresh sampler gives the same batches from there on."""
    rows = _rows()
    first = LengthBucketedBatches(rows, batch_size=32, seed=5)
    run = [first.batch(i) for i in range(2 * first.per_epoch + 7)]
    resumed = LengthBucketedBatches(rows, batch_size=32, seed=5)
    start = first.per_epoch + 11
    assert [resumed.batch(i) for i in range(start, len(run))] == run[start:]
    assert resumed.batch(3) == run[3]  # and backwards across an epoch


def test_lengths_and_store_inputs(tmp_path, tokenizer):
    import sqlite3

    from gemma_embed.data.store import QueryTable, build_from_sqlite

    lengths = np.random.default_rng(0).integers(1, 30, 500)
    order = LengthBucketedBatches(lengths, batch_size=16, seed=0)
    assert order.per_epoch == 31 and sorted(sum((order.batch(i) for i in range(31)), []))[-1] < 500
    with pytest.raises(DataError, match="fewer than one batch"):
        LengthBucketedBatches(lengths[:5], batch_size=16, seed=0)
    con = sqlite3.connect(tmp_path / "q.db")
    con.execute("CREATE TABLE queries (query TEXT)")
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha())[:10]
    con.executemany("INSERT INTO queries VALUES (?)", [("a cat",)] * 6 + [(f"the {w}",) for w in words])
    con.commit()
    con.close()
    store = build_from_sqlite(QueryTable(tmp_path / "q.db"), tokenizer, tmp_path / "s", 8, progress=False)
    order = LengthBucketedBatches(store, batch_size=2, seed=0)  # repeats found through the store's row hashes
    assert order.per_epoch == 8
    for i in range(order.per_epoch):
        a, b = order.batch(i)
        assert store[a] != store[b]
