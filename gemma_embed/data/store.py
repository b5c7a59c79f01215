"""A compact, memory-mapped token store for phase 3's millions of short queries.

The original kept 7.1M queries as two N x 128 int64 tensors (14.6 GB) though a query is ~7 tokens. A store is a
folder holding the same ids without padding:

    ids.bin       every row's token ids, one after another, int32 (numpy memmap)
    offsets.npy   int64, N + 1 entries: row i is ids[offsets[i]:offsets[i + 1]]
    meta.json     the tokenizer's and the source's identity, max_length, rows, tokens

    store = build_from_sqlite(QueryTable("queries.db"), tokenizer, "runs/store", max_length=64)
    store = import_pretokenized("pretokenized_queries.pt", tokenizer, "runs/store")
    store = TokenStore.open("runs/store", tokenizer)      # DataError if built with another tokenizer
    store[i] -> ([2, 1509, 563, ...],)                     # the row format of data.Collator (self-contrast)

Builders write into a temporary folder and rename it into place, so a crash leaves no half store; a store whose
source file and tokenizer are unchanged is reused, one whose source changed is rebuilt.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemma_embed import faults
from gemma_embed.config import Phase3Config
from gemma_embed.data.readers import DataError, check_pretokenized, iter_queries, load_pretokenized, open_queries_table

FORMAT = 1
IDS, OFFSETS, META = "ids.bin", "offsets.npy", "meta.json"


# ------------------------------------------------------------------------------------------------ identities
def tokenizer_identity(tokenizer) -> dict:
    """What decides the ids a tokenizer produces: class, vocabulary size, truncation side and a sha256 of its
    full definition (the fast tokenizer's JSON; the vocabulary for a slow one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # call-time settings that transformers leaves behind, not the tokenizer
        spec.pop("padding", None)
        text = json.dumps(spec, ensure_ascii=False)  # key order as the tokenizers library writes it
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "truncation_side": getattr(tokenizer, "truncation_side", "right"),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def source_identity(path: str | Path, **extra) -> dict:
    """A source file by absolute path, size and modification time (plus SQLite's write-ahead log, where changes
    sit until a checkpoint), and anything else that selects what is read from it (table, column)."""
    path = Path(path).resolve()
    if path.is_dir() and (path / "state.json").is_file():  # a saved datasets.Dataset: its state names its files
        path = path / "state.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    stat = path.stat()
    ident = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size:
        ident["wal"] = {"size": wal.stat().st_size, "mtime_ns": wal.stat().st_mtime_ns}
    return {**ident, **extra}


# ----------------------------------------------------------------------------------------------------- store
class TokenStore:
    """Read side of a store: `len`, `store[i] -> (ids,)`, `lengths`, `row_hashes()`. Ids stay on disk (mapped)."""

    def __init__(self, folder: Path, ids: np.ndarray, offsets: np.ndarray, meta: dict):
        self.folder, self.ids, self.offsets, self.meta = folder, ids, offsets, meta
        self._lengths = None
        self._hashes = None

    @classmethod
    def open(cls, folder: str | Path, tokenizer=None, max_rows: int = 0) -> "TokenStore":
        """Map the store in `folder`; with `tokenizer`, refuse a store built by a different one. `max_rows`: only
        the first N rows."""
        folder = Path(folder)
        meta = _read_meta(folder)
        if meta is None:
            raise DataError(f"{folder}: not a token store (no readable {META}); build one with gemma_embed.data.store.store_for")
        if tokenizer is not None:
            mine = tokenizer_identity(tokenizer)
            if meta.get("tokenizer") != mine:
                theirs = meta.get("tokenizer") or {}
                raise DataError(
                    f"{folder}: this token store was built with another tokenizer ({theirs.get('class')}, vocabulary "
                    f"{theirs.get('vocab_size')}, sha256 {str(theirs.get('sha256'))[:12]}) than the one given "
                    f"({mine['class']}, vocabulary {mine['vocab_size']}, sha256 {mine['sha256'][:12]}): its ids would "
                    "mean other tokens. Rebuild it (delete the folder) or use the tokenizer it was built with"
                )
        try:
            offsets = np.load(folder / OFFSETS, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{folder / OFFSETS}: unreadable ({e})") from None
        rows = meta["rows"]
        ids_bytes = (folder / IDS).stat().st_size if (folder / IDS).is_file() else -1
        if offsets.shape != (rows + 1,) or offsets[0] != 0 or ids_bytes != 4 * int(offsets[-1]):
            raise DataError(
                f"{folder}: inconsistent store ({rows} rows in {META}, {offsets.shape[0]} offsets, {ids_bytes} bytes "
                f"of ids for {int(offsets[-1]) if offsets.size else 0} tokens); delete the folder to rebuild it"
            )
        ids = np.memmap(folder / IDS, dtype=np.int32, mode="r")
        if max_rows and max_rows < rows:
            offsets = offsets[: max_rows + 1]
        return cls(folder, ids, offsets, meta)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def __getitem__(self, i: int) -> tuple[list[int]]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} of a token store with {n} rows")
        return (self.ids[self.offsets[i] : self.offsets[i + 1]].tolist(),)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens in each row (int32)."""
        if self._lengths is None:
            self._lengths = np.diff(self.offsets).astype(np.int32)
        return self._lengths

    @property
    def nbytes(self) -> int:
        """Bytes of the store's files on disk."""
        return sum(p.stat().st_size for p in (self.folder / IDS, self.folder / OFFSETS, self.folder / META))

    def row_hashes(self, chunk_rows: int = 1 << 20) -> np.ndarray:
        """A 64-bit hash (uint64) of each row's id list: equal lists, equal hashes. Vectorised, in chunks of rows,
        so that the 7.1M rows of phase 3 take seconds and little memory."""
        if self._hashes is None:
            n = len(self)
            out = np.empty(n, dtype=np.uint64)
            for start in range(0, n, chunk_rows):
                stop = min(n, start + chunk_rows)
                bounds = np.asarray(self.offsets[start : stop + 1], dtype=np.int64)
                out[start:stop] = hash_rows(np.asarray(self.ids[bounds[0] : bounds[-1]]), bounds - bounds[0])
            self._hashes = out
        return self._hashes


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_K_ID, _K_POS, _K_LEN = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93), np.uint64(0xA0761D6478BD642F)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (multiplication wraps): a well-spread hash of each value."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_rows(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """uint64 hashes of the rows flat[offsets[i]:offsets[i + 1]] (rows must not be empty): a sum over tokens of
    mix(id, position), mixed with the length. Order-sensitive; equal rows hash equally."""
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() <= 0:
        raise ValueError("hash_rows: empty rows")
    with np.errstate(over="ignore"):
        pos = np.arange(flat.shape[0], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        terms = mix64(flat.astype(np.uint64) * _K_ID + pos.astype(np.uint64) * _K_POS + np.uint64(1))
        sums = np.add.reduceat(terms, offsets[:-1]) if lengths.size else np.empty(0, np.uint64)
        return mix64(sums ^ (lengths.astype(np.uint64) * _K_LEN))


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT and "rows" in meta else None


# ---------------------------------------------------------------------------------------------------- building
class _Writer:
    """Appends rows to a store in a temporary folder; `finish` writes offsets.npy and meta.json. Memory stays flat:
    ids and offsets go to disk chunk by chunk."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True)
        self.ids = (folder / IDS).open("wb")
        self.offsets = (folder / "offsets.raw").open("wb")
        self.offsets.write(np.zeros(1, "<i8").tobytes())
        self.rows = self.tokens = 0

    def add(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        if not lengths.size:
            return
        self.ids.write(np.ascontiguousarray(flat, dtype="<i4").tobytes())
        self.offsets.write((self.tokens + np.cumsum(lengths, dtype=np.int64)).astype("<i8").tobytes())
        self.rows += lengths.size
        self.tokens += int(lengths.sum())

    def finish(self, meta: dict) -> None:
        for f in (self.ids, self.offsets):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        raw = self.folder / "offsets.raw"
        with (self.folder / OFFSETS).open("wb") as out, raw.open("rb") as src:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<i8", "fortran_order": False, "shape": (self.rows + 1,)}
            )
            shutil.copyfileobj(src, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
        raw.unlink()
        meta = {"format": FORMAT, "rows": self.rows, "tokens": self.tokens, "dtype": "int32", **meta}
        (self.folder / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def abort(self) -> None:
        for f in (self.ids, self.offsets):
            f.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _reusable(folder: Path, identity: dict, source: dict, max_length: int | None, quiet: bool) -> TokenStore | None:
    """The existing store in `folder` if it was built from this source, with this tokenizer and max_length."""
    meta = _read_meta(folder)
    if meta is None:
        if folder.exists() and any(folder.iterdir()):
            raise DataError(f"{folder}: exists and is not a token store; refusing to replace it (choose another folder)")
        return None
    why = None
    if meta.get("source") != source:
        why = "its source changed"
    elif max_length is not None and meta.get("max_length") != max_length:
        why = f"max_length changed ({meta.get('max_length')} -> {max_length})"
    elif meta.get("tokenizer") != identity:
        why = "the tokenizer changed"
    if why is None:
        try:
            return TokenStore.open(folder)
        except DataError as e:
            why = str(e)
    if not quiet:
        print(f"rebuilding the token store {folder}: {why}", flush=True)
    return None


def _build(folder: str | Path, tokenizer, source: dict, max_length: int | None, fill, quiet: bool,
           build: bool = True) -> TokenStore | None:
    """Reuse the store in `folder`, or build one with `fill(writer) -> max_length` in a temporary folder beside it
    and rename it into place. `build=False`: only reuse (None if there is nothing to reuse)."""
    folder = Path(folder)
    identity = tokenizer_identity(tokenizer)
    existing = _reusable(folder, identity, source, max_length, quiet or not build)
    if existing is not None or not build:
        return existing
    faults.pause("STORE_BUILD")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.uname().nodename}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = _Writer(tmp)
    t0 = time.time()
    try:
        max_length = fill(writer)
        writer.finish({
            "max_length": max_length, "source": source, "tokenizer": identity,
            "build_seconds": round(time.time() - t0, 1),
        })
    except BaseException:
        writer.abort()
        raise
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return TokenStore.open(folder)


def batch_encoder(tokenizer, max_length: int):
    """texts -> id lists, equal to `tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]` but
    through the Rust tokenizer directly (a private copy, so the caller's truncation settings are untouched)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer
        return lambda texts: tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_padding()
    own.enable_truncation(max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    encode = getattr(own, "encode_batch_fast", own.encode_batch)  # _fast: no character offsets
    return lambda texts: [e.ids for e in encode(texts)]


def _flatten(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


@dataclass(frozen=True)
class QueryTable:
    """Where a store's queries are: the SQLite file (queries.db) and its table and column."""

    path: str | Path
    table: str = "queries"
    column: str = "query"


def build_from_sqlite(
    queries: QueryTable, tokenizer, folder: str | Path, max_length: int, chunk_rows: int = 50_000,
    progress: bool = True, build: bool = True,
) -> TokenStore | None:
    """The store of the queries in `queries` (a file's table and column), tokenised with truncation to
    `max_length`: streamed in chunks of `chunk_rows` (flat memory however many rows), each tokenised in one batch.
    Reused if already built from the same file, tokenizer and max_length."""
    from tqdm.auto import tqdm

    db, table, column = queries.path, queries.table, queries.column
    source = source_identity(db, table=table, column=column)

    def fill(writer: _Writer) -> int:
        con = open_queries_table(db, table, column)
        try:
            total = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise DataError(f"{db}: cannot be read as SQLite: {e}") from None
        finally:
            con.close()
        encode = batch_encoder(tokenizer, max_length)
        with tqdm(total=total, unit=" rows", unit_scale=True, desc=f"token store {Path(folder).name}",
                  disable=not progress, dynamic_ncols=True) as bar:
            for texts in iter_queries(db, table, column, chunk_rows):
                if texts:
                    writer.add(*_flatten(encode(texts)))
                bar.update(min(chunk_rows, total - bar.n))
        if writer.rows == 0:
            raise DataError(f"{db}: table {table!r}, column {column!r} holds no queries")
        if source_identity(db, table=table, column=column) != source:
            raise DataError(f"{db}: changed while its token store was being built; run again")
        return max_length

    return _build(folder, tokenizer, source, max_length, fill, quiet=not progress, build=build)


def import_pretokenized(
    pt_path: str | Path, tokenizer, folder: str | Path, chunk_rows: int = 1 << 17, progress: bool = True,
    build: bool = True,
) -> TokenStore | None:
    """The store of the original's padded pretokenized_queries.pt: each row's real tokens (attention_mask 1), rows
    of padding only dropped, as data.read_pretokenized does. The file is memory-mapped and checked block by block
    (mask values 0/1, ids inside the tokenizer's vocabulary; errors name the file and row)."""
    from tqdm.auto import tqdm

    source = source_identity(pt_path)
    vocab_size = len(tokenizer)

    def fill(writer: _Writer) -> int:
        path, ids, mask = load_pretokenized(pt_path, mmap=True)
        n, width = ids.shape
        with tqdm(total=n, unit=" rows", unit_scale=True, desc=f"token store {Path(folder).name}",
                  disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, n, chunk_rows):
                block_ids, block_mask = ids[start : start + chunk_rows], mask[start : start + chunk_rows]
                check_pretokenized(path, block_ids, block_mask, vocab_size, first_row=start)
                keep = block_mask.bool()
                lengths = keep.sum(1).numpy()
                writer.add(block_ids[keep].numpy(), lengths[lengths > 0])
                bar.update(block_ids.shape[0])
        if writer.rows == 0:
            raise DataError(f"{path}: every row is padding")
        return width

    return _build(folder, tokenizer, source, None, fill, quiet=not progress, build=build)


def store_for(cfg: Phase3Config, tokenizer, progress: bool = True, build: bool = True) -> TokenStore | None:
    """Phase 3's rows from a store in `cfg.store`, built from `cfg.data` (queries.db, its `table` and `column`, or
    the original's .pt) with truncation to `cfg.max_length` if needed, its first `cfg.max_rows` (0: all);
    `build=False` only reuses a finished store of that source and tokenizer (None while there is none)."""
    if str(cfg.data).endswith(".pt"):
        store = import_pretokenized(cfg.data, tokenizer, cfg.store, progress=progress, build=build)
    else:
        queries = QueryTable(cfg.data, cfg.table, cfg.column)
        store = build_from_sqlite(queries, tokenizer, cfg.store, cfg.max_length, progress=progress, build=build)
    if store is None:
        return None
    return TokenStore.open(store.folder, tokenizer, cfg.max_rows) if cfg.max_rows else store
