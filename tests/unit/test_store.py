"""The token store: exact round trip, reuse and rebuild, tokenizer identity, import of the original's padded .pt."""

import json
import os
import sqlite3

import numpy as np
import pytest
import torch

from conftest import sqlite_queries
from gemma_embed.data.readers import DataError
from gemma_embed.config import Phase3Config
from gemma_embed.data.store import QueryTable, TokenStore, build_from_sqlite, import_pretokenized, store_for

QUERIES = ["best running shoes", "a cat", "cheap flights to the city on the river", "a cat", "weather",
           "how to make bread at home without an oven", "running"]



def _build(db, folder, tokenizer, max_length=6, **kw):
    return build_from_sqlite(QueryTable(db), tokenizer, folder, max_length, progress=False, **kw)


def test_round_trip_equals_the_tokenizer(tmp_path, tokenizer):
    db = sqlite_queries(tmp_path / "q.db", QUERIES[:3] + [None, "  "] + QUERIES[3:])
    store = _build(db, tmp_path / "store", tokenizer, chunk_rows=2)  # several chunks, some holding blanks
    expected = tokenizer(QUERIES, truncation=True, max_length=6)["input_ids"]
    assert len(store) == len(QUERIES)
    assert [store[i] for i in range(len(store))] == [(e,) for e in expected]
    assert store[-1] == (expected[-1],)
    assert store.lengths.tolist() == [len(e) for e in expected] and max(store.lengths) == 6  # truncated
    meta = json.loads((tmp_path / "store/meta.json").read_text())
    assert meta["rows"] == len(QUERIES) and meta["max_length"] == 6 and meta["source"]["table"] == "queries"
    assert meta["tokenizer"]["vocab_size"] == len(tokenizer) and len(meta["tokenizer"]["sha256"]) == 64
    assert (tmp_path / "store/ids.bin").stat().st_size == 4 * sum(len(e) for e in expected)  # int32, no padding
    hashes = store.row_hashes()
    assert hashes[1] == hashes[3] and len(set(hashes.tolist())) == len(QUERIES) - 1  # "a cat" twice
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store")]  # no temporary folder left


def test_reuse_when_unchanged_rebuild_when_the_db_changes(tmp_path, tokenizer, capsys):
    db = sqlite_queries(tmp_path / "q.db", QUERIES)
    folder = tmp_path / "store"
    _build(db, folder, tokenizer)
    ids_mtime = (folder / "ids.bin").stat().st_mtime_ns
    assert len(_build(db, folder, tokenizer)) == len(QUERIES)
    assert (folder / "ids.bin").stat().st_mtime_ns == ids_mtime  # reused, not rewritten
    con = sqlite3.connect(db)
    con.execute("INSERT INTO queries (query) VALUES ('a new query')")
    con.commit()
    con.close()
    store = build_from_sqlite(QueryTable(db), tokenizer, folder, 6)
    assert "rebuilding" in capsys.readouterr().out and len(store) == len(QUERIES) + 1
    assert store[len(QUERIES)] == (tokenizer("a new query")["input_ids"],)
    assert len(_build(db, folder, tokenizer, max_length=3)) == len(QUERIES) + 1  # max_length changed: rebuilt
    assert max(TokenStore.open(folder, tokenizer).lengths) == 3
    assert TokenStore.open(folder, tokenizer, max_rows=2).lengths.tolist() == [3, 3]


@pytest.mark.reliability
def test_a_store_refuses_another_tokenizer(tmp_path, tokenizer):
    from gemma_embed.backbones import build_tiny_tokenizer

    folder = tmp_path / "store"
    _build(sqlite_queries(tmp_path / "q.db", QUERIES), folder, tokenizer)
    other = build_tiny_tokenizer(["other words entirely"], vocab_size=50)
    with pytest.raises(DataError, match=f"{folder}.*another tokenizer"):
        TokenStore.open(folder, other)
    with pytest.raises(DataError, match="not a token store"):
        TokenStore.open(tmp_path, tokenizer)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep/notes.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing to replace"):
        _build(tmp_path / "q.db", tmp_path / "keep", tokenizer)
    with pytest.raises(DataError, match="no table"):
        build_from_sqlite(QueryTable(tmp_path / "q.db", "nope"), tokenizer, tmp_path / "s2", 6, progress=False)


def test_import_of_padded_pt_equals_the_store_built_from_text(tmp_path, tokenizer):
    width = 8
    enc = tokenizer(QUERIES, truncation=True, max_length=width, padding="max_length", return_tensors="pt")
    assert enc["attention_mask"][:, 0].min() == 0  # left padding, as the original's Gemma tokenizer
    ids = torch.cat([enc["input_ids"], torch.zeros(1, width, dtype=torch.long)])  # plus a row of padding only
    mask = torch.cat([enc["attention_mask"], torch.zeros(1, width, dtype=torch.long)])
    ids[-1] = 7  # padding ids may be anything
    pt = tmp_path / "pretokenized_queries.pt"
    torch.save({"input_ids": ids, "attention_mask": mask}, pt)
    imported = import_pretokenized(pt, tokenizer, tmp_path / "from_pt", chunk_rows=3, progress=False)
    built = _build(sqlite_queries(tmp_path / "q.db", QUERIES), tmp_path / "from_db", tokenizer, max_length=width)
    assert len(imported) == len(built) == len(QUERIES)
    assert np.array_equal(imported.ids, built.ids) and np.array_equal(imported.offsets, built.offsets)
    assert imported.meta["max_length"] == width
    cfg = Phase3Config(data=str(pt), store=str(tmp_path / "from_pt"), max_length=32, max_rows=3)
    assert store_for(cfg, tokenizer).lengths.tolist() == built.lengths[:3].tolist()


@pytest.mark.reliability
def test_a_bad_pt_is_refused_naming_file_and_row(tmp_path, tokenizer):
    ids = torch.full((5, 4), 2)
    mask = torch.ones(5, 4, dtype=torch.long)
    cases = {
        "keys.pt": ({"ids": ids}, "expected a dict with 'input_ids'"),
        "shape.pt": ({"input_ids": ids, "attention_mask": mask[:, :3]}, "differ in shape"),
        "mask.pt": ({"input_ids": ids, "attention_mask": mask.index_fill(0, torch.tensor([3]), 2)},
                    "attention_mask, row 3: values must be 0 or 1"),
        "vocab.pt": ({"input_ids": ids.index_fill(0, torch.tensor([4]), len(tokenizer)), "attention_mask": mask},
                     f"input_ids, row 4: token id {len(tokenizer)} is outside"),
        "padding.pt": ({"input_ids": ids, "attention_mask": mask * 0}, "every row is padding"),
    }
    for name, (data, message) in cases.items():
        torch.save(data, tmp_path / name)
        with pytest.raises(DataError, match=f"{name}.*{message}"):
            import_pretokenized(tmp_path / name, tokenizer, tmp_path / f"s-{name}", chunk_rows=2, progress=False)
        assert not (tmp_path / f"s-{name}").exists()
    (tmp_path / "code.pt").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="code.pt: not a tensor file that loads safely"):
        import_pretokenized(tmp_path / "code.pt", tokenizer, tmp_path / "s", progress=False)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".s")]
