import pytest
import torch

from gemma_embed.data.batches import SourceBatches, global_batch_indices
from gemma_embed.data.collate import Collator, stable_id
from gemma_embed.data.readers import DataError, read_pretokenized, read_queries_db, read_text, read_triplets

from conftest import REPO, sqlite_queries


def test_read_text_skips_blank_lines(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("first sentence\n\n   \nsecond one\n", encoding="utf-8")
    assert read_text(path) == [("first sentence",), ("second one",)]
    assert read_text(path, max_rows=1) == [("first sentence",)]


def test_read_bundled_files():
    assert len(read_text(REPO / "examples/data/text.txt")) == 20000
    rows = read_triplets(REPO / "examples/data/triplets.csv", vocab_size=10)
    assert len(rows) == 25883 and {len(r) for r in rows} == {2, 3}


def test_bundled_triplets_sources():
    sources = []
    rows = read_triplets(REPO / "examples/data/triplets.csv", vocab_size=10, sources=sources)
    assert len(sources) == len(rows)
    assert {s: sources.count(s) for s in set(sources)} == {"snli": 5883, "wikisplit": 10000, "coco": 10000}


def test_triplets_keep_only_some_sources(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("anchor,positive,negative,source\na,b,,x\nc,d,e,y\nf,g,,x\n", encoding="utf-8")
    sources = []
    assert read_triplets(path, 10, sources=sources, keep={"x"}) == [("a", "b"), ("f", "g")]
    assert sources == ["x", "x"]
    assert read_triplets(path, 10, max_rows=1, keep={"y"}) == [("c", "d", "e")]
    with pytest.raises(DataError, match=r"t.csv: no rows of source\(s\) \['z'\]; it has \['x', 'y'\]"):
        read_triplets(path, 10, keep={"x", "z"})
    plain = tmp_path / "plain.csv"
    plain.write_text("anchor,positive\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="plain.csv, line 1: .* no source column"):
        read_triplets(plain, 10, keep={"x"})


def test_source_batches_are_single_source_deterministic_and_cover_each_epoch():
    sources = ["a"] * 25 + ["b"] * 12 + ["c"] * 3  # c has no full batch; a and b leave remainders
    order = SourceBatches(sources, batch_size=4, seed=1)
    assert order.per_epoch == 6 + 3
    epoch = [order.batch(i) for i in range(order.per_epoch)]
    for batch in epoch:
        assert len(batch) == 4 and len({sources[i] for i in batch}) == 1
    flat = [i for b in epoch for i in b]
    assert len(set(flat)) == len(flat) == 36
    assert sum(1 for b in epoch if sources[b[0]] == "b") == 3
    assert epoch == [SourceBatches(sources, 4, seed=1).batch(i) for i in range(9)]  # a pure function of the index
    assert [order.batch(9 + i) for i in range(9)] != epoch  # the next epoch is reshuffled
    assert [SourceBatches(sources, 4, seed=2).batch(i) for i in range(9)] != epoch
    with pytest.raises(DataError, match="full batch"):
        SourceBatches(["a", "b"], batch_size=4, seed=0)


def test_triplets_text_forms(tmp_path):
    simcse = tmp_path / "nli.csv"
    simcse.write_text('sent0,sent1,hard_neg\n"a, b",c,d\ne,f,\n', encoding="utf-8")
    assert read_triplets(simcse, 10) == [("a, b", "c", "d"), ("e", "f")]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,positive\nx,y\n", encoding="utf-8")
    assert read_triplets(pairs, 10) == [("x", "y")]


def test_triplets_pretokenised_form_strips_padding(tmp_path):
    path = tmp_path / "tok.csv"
    path.write_text(
        "a_ids,a_mask,p_ids,p_mask,n_ids,n_mask\n"
        '"[0, 0, 2, 5]","[0, 0, 1, 1]",2 6 7,1 1 1,"[2, 9, 0]","[1, 1, 0]"\n',
        encoding="utf-8",
    )
    assert read_triplets(path, vocab_size=10) == [([2, 5], [2, 6, 7], [2, 9])]



def test_queries_db(tmp_path):
    path = sqlite_queries(tmp_path / "q.db", ["best shoes", None, "  ", "cheap flights"])
    assert read_queries_db(path, "queries", "query") == [("best shoes",), ("cheap flights",)]


def test_pretokenized_pt_strips_padding(tmp_path):
    path = tmp_path / "q.pt"
    ids = torch.tensor([[0, 0, 2, 7, 8], [2, 9, 0, 0, 0]])
    torch.save({"input_ids": ids, "attention_mask": (ids != 0).long()}, path)
    assert read_pretokenized(path, vocab_size=10) == [([2, 7, 8],), ([2, 9],)]


def test_batches_are_deterministic_permutations():
    a = [global_batch_indices(100, 10, seed=3, index=i) for i in range(10)]
    assert sorted(sum(a, [])) == list(range(100))  # one epoch covers every row once
    assert a == [global_batch_indices(100, 10, seed=3, index=i) for i in range(10)]
    assert global_batch_indices(100, 10, seed=3, index=10) != a[0]  # the next epoch is reshuffled
    assert global_batch_indices(100, 10, seed=4, index=0) != a[0]
    with pytest.raises(DataError, match="fewer than one batch"):
        global_batch_indices(5, 10, 0, 0)


def test_collator_streams_and_groups(tokenizer):
    collate = Collator(tokenizer, max_length=4, self_contrast=False)
    streams, groups = collate([("a cat sat on the mat", "a cat", "a dog"), ("a cat sat on the mat", "cat"),
                               ("a dog", "dog")])
    assert len(streams) == 3 and streams[0]["input_ids"].shape == (3, 4)  # truncated to max_length
    assert streams[2]["input_ids"].shape[0] == 1  # only the rows that have a negative
    assert streams[0]["attention_mask"][2].tolist() == [0, 1, 1, 1]  # left padding
    assert groups[0] == groups[1] != groups[2]
    ids, _ = Collator(tokenizer, max_length=4, self_contrast=True)([([2, 5, 6, 7, 8],), ([2, 9],)])
    assert len(ids) == 2 and ids[0] is ids[1]  # self-contrast: one stream, encoded twice
    assert ids[0]["input_ids"].tolist() == [[2, 5, 6, 7], [0, 0, 2, 9]]
    assert stable_id("abc") == stable_id("abc") != stable_id([1, 2])


def test_collator_streams_do_not_depend_on_the_rows(tokenizer):
    """Every process gathers every stream, so a process whose rows have no hard negative still holds the stream."""
    streams, _ = Collator(tokenizer, max_length=8, self_contrast=False)([("a cat", "cat"), ("a dog", "dog")])
    assert len(streams) == 3 and streams[2]["input_ids"].shape == (0, 0)
    token_rows, _ = Collator(tokenizer, max_length=8, self_contrast=False)([([2, 5], [2, 6])])
    assert len(token_rows) == 3 and token_rows[2]["attention_mask"].shape[0] == 0


def test_length_sorted_source_batches_pad_little_cover_every_length_and_stay_deterministic():
    sources = ["a"] * 40 + ["b"] * 24
    lengths = [(i * 7) % 19 + 1 for i in range(64)]
    order = SourceBatches(sources, 8, seed=3, lengths=lengths)
    assert order.per_epoch == 8
    batches = [order.batch(i) for i in range(8)]
    assert sorted(r for b in batches for r in b) == list(range(64))  # 40 and 24 rows: whole batches, all used
    assert all(len({sources[r] for r in b}) == 1 for b in batches)
    spread = [max(lengths[r] for r in b) - min(lengths[r] for r in b) for b in batches]
    assert sum(spread) / len(spread) < 6  # random batches of these lengths spread over about 15
    assert [order.batch(i) for i in range(8)] == batches
    assert SourceBatches(sources, 8, seed=3, lengths=lengths).batch(5) == batches[5]


def test_row_lengths_count_every_text_as_the_collator_truncates(tokenizer):
    from gemma_embed.data.collate import row_lengths

    rows = [("a cat sat on the mat", "a cat", "a dog"), ("the cat", "cat"), ([2, 5, 6, 7, 8, 9], [2, 5])]
    assert row_lengths(rows, tokenizer, max_length=4) == [4 + 3 + 3, 3 + 2, 4 + 2]


def test_a_saved_datasets_dataset_reads_as_its_csv_or_sqlite_twin(tmp_path):
    """Phase 2 and phase 3 (and the decoder, through iter_queries) read a `datasets.Dataset` saved with
    save_to_disk: the rows its CSV or SQLite twin gives, errors naming the dataset's row and column."""
    from datasets import Dataset, DatasetDict

    from gemma_embed.data.readers import iter_queries

    texts = tmp_path / "texts"
    Dataset.from_dict({"sent0": ["a, b", "e"], "sent1": ["c", "f"], "hard_neg": ["d", None],
                       "source": ["snli", "coco"]}).save_to_disk(texts)
    sources = []
    assert read_triplets(texts, 10, sources=sources) == [("a, b", "c", "d"), ("e", "f")] and sources == ["snli", "coco"]
    assert read_triplets(texts, 10, keep={"coco"}) == [("e", "f")]
    tokens = tmp_path / "tokens"
    Dataset.from_dict({"a_ids": [[0, 0, 2, 5]], "a_mask": [[0, 0, 1, 1]], "p_ids": [[2, 6, 7]],
                       "p_mask": [[1, 1, 1]]}).save_to_disk(tokens)
    assert read_triplets(tokens, vocab_size=10) == [([2, 5], [2, 6, 7])]
    with pytest.raises(DataError, match=r"tokens, row 0, column a_ids: token id 5 is outside the tokenizer's vocab"):
        read_triplets(tokens, vocab_size=5)
    empty = tmp_path / "empty_anchor"
    Dataset.from_dict({"anchor": ["x", " "], "positive": ["y", "z"]}).save_to_disk(empty)
    with pytest.raises(DataError, match=r"empty_anchor, row 1, column anchor: empty"):
        read_triplets(empty, 10)

    queries = tmp_path / "queries"
    Dataset.from_dict({"query": ["best shoes", None, "  ", "cheap flights"]}).save_to_disk(queries)
    twin = sqlite_queries(tmp_path / "q.db", ["best shoes", None, "  ", "cheap flights"])
    assert read_queries_db(queries, "queries", "query") == read_queries_db(twin, "queries", "query")
    assert [t for chunk in iter_queries(queries, "", "query", chunk_rows=1, max_rows=3) for t in chunk] == ["best shoes"]
    with pytest.raises(DataError, match=r"queries: the dataset has no column 'text'; its columns are \['query'\]"):
        read_queries_db(queries, "queries", "text")
    numbers = tmp_path / "numbers"
    Dataset.from_dict({"query": [3, 4]}).save_to_disk(numbers)
    with pytest.raises(DataError, match=r"numbers, row 0, column query: not text: 3"):
        read_queries_db(numbers, "queries", "query")
    splits = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_dict({"query": ["a"]})}).save_to_disk(splits)
    with pytest.raises(DataError, match=r"a DatasetDict with splits \['train'\]; save the split to train on"):
        read_queries_db(splits, "queries", "query")
