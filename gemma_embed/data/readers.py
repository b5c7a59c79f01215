"""Readers for the three phases' inputs.

Readers check everything that can be checked before training starts, and their errors name the file and the
line, column or field. A row is a tuple of texts (str) or token-id lists (list[int], padding already removed):
  phase 1: (sentence,)                   from text.txt
  phase 2: (anchor, positive[, negative]) from triplets.csv, text or pre-tokenised columns
  phase 3: (query,)                       from queries.db (SQLite) or pretokenized_queries.pt
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import torch

MAX_LINE_CHARS = 100_000  # a longer "line" is a file without line breaks, not a sentence
TEXT_COLUMNS = (("anchor", "positive", "negative"), ("sent0", "sent1", "hard_neg"))
TOKEN_COLUMNS = ("a_ids", "a_mask", "p_ids", "p_mask", "n_ids", "n_mask")


class DataError(ValueError):
    """Input that cannot be trained on; the message names the file and where in it."""


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return path


def saved_dataset(path: str | Path):
    """The `datasets.Dataset` saved at `path` with `save_to_disk` (a folder), or None when `path` is not one. A saved
    DatasetDict is refused: save the one split to train on."""
    path = Path(path)
    if not (path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())):
        return None
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        raise DataError(f"{path}: a DatasetDict with splits {list(data)}; save the split to train on "
                        "(data['train'].save_to_disk(...))")
    if len(data) == 0:
        raise DataError(f"{path}: the dataset has no rows")
    return data


def _dataset_cell(value) -> str:
    """A dataset cell as a CSV cell reads: text as is, a list of ids as JSON, None as empty."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def _decode(raw: bytes, path: Path, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}, line {line_no}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None


# ------------------------------------------------------------------------------------------------------ phase 1
def read_text(path: str | Path, max_rows: int = 0) -> list[tuple[str]]:
    """text.txt: one sentence per line, UTF-8; blank lines skipped."""
    path = _require_file(path)
    rows = []
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            text = _decode(raw, path, line_no).strip()
            if len(text) > MAX_LINE_CHARS:
                raise DataError(
                    f"{path}, line {line_no}: {len(text):,} characters, over the {MAX_LINE_CHARS:,} a sentence may "
                    "have (is the file missing line breaks?)"
                )
            if text:
                rows.append((text,))
                if max_rows and len(rows) >= max_rows:
                    break
    if not rows:
        raise DataError(f"{path}: no sentences (every line is blank)")
    return rows


# ------------------------------------------------------------------------------------------------------ phase 2
def _parse_ids(cell: str, path: Path, where: str, column: str, vocab_size: int, is_mask: bool) -> list[int]:
    cell = cell.strip()
    try:
        values = json.loads(cell) if cell.startswith("[") else [int(v) for v in cell.replace(",", " ").split()]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError
    except ValueError:
        raise DataError(f"{path}, {where}, column {column}: not a list of integers: {cell[:60]!r}") from None
    if is_mask:
        bad = [v for v in values if v not in (0, 1)]
        if bad:
            raise DataError(f"{path}, {where}, column {column}: mask values must be 0 or 1, found {bad[0]}")
    else:
        bad = [v for v in values if not 0 <= v < vocab_size]
        if bad:
            raise DataError(
                f"{path}, {where}, column {column}: token id {bad[0]} is outside the tokenizer's vocabulary "
                f"(0..{vocab_size - 1})"
            )
    return values


def read_triplets(
    path: str | Path, vocab_size: int, max_rows: int = 0, sources: list | None = None, keep: set | None = None
) -> list[tuple]:
    """triplets.csv with a header: `anchor,positive,negative` (or `sent0,sent1,hard_neg`; the negative column may be
    absent or empty), or the pre-tokenised `a_ids,a_mask,p_ids,p_mask,n_ids,n_mask` (n_* optional). An optional
    `source` column names each row's dataset: if `sources` is a list, it receives one source per row ("" without);
    `keep` reads only the rows of these sources. `path` may also be a `datasets.Dataset` saved with `save_to_disk`,
    with the same columns (token columns as lists of ints); errors then name its row."""
    header, records, first = _triplet_records(path)
    columns = {name: i for i, name in enumerate(header)}
    text_form = _triplet_form(path, header, columns, first)
    if keep and "source" not in columns:
        raise DataError(f"{path}, {first}: sources {sorted(keep)} were asked for, but there is no source column")
    rows, seen = [], set()
    for where, row in records:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, {where}: {len(row)} fields, but the header has {len(header)}")
        source = row[columns["source"]].strip() if "source" in columns else ""
        seen.add(source)
        if keep and source not in keep:
            continue
        if text_form:
            rows.append(_text_triplet(row, columns, text_form, path, where))
        else:
            rows.append(_token_triplet(row, columns, vocab_size, path, where))
        if sources is not None:
            sources.append(source)
        if max_rows and len(rows) >= max_rows:
            break
    if keep and not max_rows and keep - seen:
        raise DataError(f"{path}: no rows of source(s) {sorted(keep - seen)}; it has {sorted(seen)}")
    if not rows:
        raise DataError(f"{path}: no rows after the header")
    return rows


def _triplet_form(path: str | Path, header: list[str], columns: dict[str, int], first: str) -> tuple[str, ...] | None:
    """The text column names the header uses (one of TEXT_COLUMNS), or None for the token columns; an error when it
    has neither form or lacks a required column."""
    text_form = next((names for names in TEXT_COLUMNS if names[0] in columns or names[1] in columns), None)
    if text_form:
        needed = text_form[:2]
    elif any(c in columns for c in TOKEN_COLUMNS):
        needed = TOKEN_COLUMNS[:4]
    else:
        raise DataError(
            f"{path}, {first}: header {header} has neither text columns "
            f"({' / '.join(','.join(t) for t in TEXT_COLUMNS)}) nor token columns ({','.join(TOKEN_COLUMNS)})"
        )
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"{path}, {first}: missing column(s) {missing}; the header is {header}")
    return text_form


def _text_triplet(row: list[str], columns: dict[str, int], text_form: tuple[str, ...], path, where: str) -> tuple:
    """One row of text columns as (anchor, positive[, negative]); anchor and positive must not be empty."""
    a, p = row[columns[text_form[0]]].strip(), row[columns[text_form[1]]].strip()
    n = row[columns[text_form[2]]].strip() if text_form[2] in columns else ""
    for name, value in zip(text_form, (a, p)):
        if not value:
            raise DataError(f"{path}, {where}, column {name}: empty")
    return (a, p, n) if n else (a, p)


def _token_triplet(row: list[str], columns: dict[str, int], vocab_size: int, path, where: str) -> tuple:
    """One row of token columns as (anchor ids, positive ids[, negative ids]), each with its padding removed; the
    negative is left out when its ids column is absent or empty."""
    parts = []
    for prefix in ("a", "p", "n"):
        ids_col, mask_col = f"{prefix}_ids", f"{prefix}_mask"
        if prefix == "n" and (ids_col not in columns or not row[columns[ids_col]].strip()):
            break
        ids = _parse_ids(row[columns[ids_col]], path, where, ids_col, vocab_size, False)
        mask = _parse_ids(row[columns[mask_col]], path, where, mask_col, vocab_size, True)
        if len(ids) != len(mask):
            raise DataError(f"{path}, {where}, column {mask_col}: {len(mask)} values for {len(ids)} ids in {ids_col}")
        kept = [i for i, m in zip(ids, mask) if m]
        if not kept:
            raise DataError(f"{path}, {where}, column {mask_col}: the mask selects no token")
        parts.append(kept)
    return tuple(parts)


def _triplet_records(path: str | Path):
    """(header, records, where the header is): records are (where, cells) pairs, `where` as an error names it:
    "line N" of a CSV, "row N" of a saved dataset."""
    data = saved_dataset(path)
    if data is not None:
        header = list(data.column_names)
        return header, ((f"row {i}", [_dataset_cell(r[c]) for c in header]) for i, r in enumerate(data)), "columns"
    path = _require_file(path)
    raw = path.read_bytes()
    for line_no, line in enumerate(raw.split(b"\n"), 1):
        _decode(line, path, line_no)
    reader = csv.reader(io.StringIO(raw.decode("utf-8").lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in next(reader, [])]
    return header, ((f"line {reader.line_num}", row) for row in reader), "line 1"


# ------------------------------------------------------------------------------------------------------ phase 3
def open_queries_table(path: str | Path, table: str, column: str) -> sqlite3.Connection:
    """queries.db opened read-only, after checking that it is SQLite and has `table`.`column`; the caller closes it."""
    path = _require_file(path)
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise DataError(f"{path}: not an SQLite database (its first bytes are not the SQLite header)")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
        if table not in tables:
            raise DataError(f"{path}: no table {table!r}; the file has tables {tables}")
        cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
        if column not in cols:
            raise DataError(f"{path}: table {table!r} has no column {column!r}; its columns are {cols}")
    except sqlite3.DatabaseError as e:
        con.close()
        raise DataError(f"{path}: cannot be read as SQLite: {e}") from None
    except DataError:
        con.close()
        raise
    return con


def iter_queries(path: str | Path, table: str, column: str, chunk_rows: int = 50_000, max_rows: int = 0):
    """queries.db's queries in chunks of at most `chunk_rows` (fetchmany, so memory stays flat however large the
    table): lists of stripped texts; NULL and blank cells are skipped. `max_rows` limits the rows read. `path` may
    also be a `datasets.Dataset` saved with `save_to_disk`: its `column` is read the same way (`table` unused)."""
    path = Path(path)
    data = saved_dataset(path)
    if data is not None:
        yield from _dataset_queries(path, data, column, chunk_rows, max_rows)
        return
    con = open_queries_table(path, table, column)
    try:
        limit = f" LIMIT {int(max_rows)}" if max_rows else ""
        cursor = con.execute(f'SELECT rowid, "{column}" FROM "{table}"{limit}')
        while chunk := cursor.fetchmany(chunk_rows):
            texts = []
            for rowid, value in chunk:
                if value is None:
                    continue
                if isinstance(value, bytes):
                    value = _decode(value, path, rowid)
                if not isinstance(value, str):
                    raise DataError(f"{path}, table {table}, rowid {rowid}, column {column}: not text: {value!r}")
                value = value.strip()
                if value:
                    texts.append(value)
            yield texts
    except sqlite3.DatabaseError as e:
        raise DataError(f"{path}: cannot be read as SQLite: {e}") from None
    finally:
        con.close()


def _dataset_queries(path: Path, data, column: str, chunk_rows: int, max_rows: int):
    if column not in data.column_names:
        raise DataError(f"{path}: the dataset has no column {column!r}; its columns are {data.column_names}")
    end = min(len(data), max_rows) if max_rows else len(data)
    for start in range(0, end, chunk_rows):
        texts = []
        for i, value in enumerate(data[start : min(start + chunk_rows, end)][column], start):
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}, row {i}, column {column}: not text: {value!r}")
            if value.strip():
                texts.append(value.strip())
        yield texts


def read_queries_db(path: str | Path, table: str, column: str, max_rows: int = 0) -> list[tuple[str]]:
    """queries.db: SQLite, one query per row of `table`.`column`."""
    rows = [(text,) for texts in iter_queries(path, table, column, max_rows=max_rows) for text in texts]
    if not rows:
        raise DataError(f"{path}: table {table!r}, column {column!r} holds no queries")
    return rows


def load_pretokenized(path: str | Path, mmap: bool = False) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """The original's pretokenized_queries.pt as (path, input_ids, attention_mask), two 2-D integer tensors of one
    shape. Loaded with weights_only=True, so a file that carries code is refused instead of run; `mmap` maps the
    tensors instead of reading them (files in torch's zip format), for files larger than memory."""
    path = _require_file(path)
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{path}: not a tensor file that loads safely (weights_only=True): {e}") from None
    if not isinstance(data, dict) or not {"input_ids", "attention_mask"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with 'input_ids' and 'attention_mask' tensors, found {found}")
    ids, mask = data["input_ids"], data["attention_mask"]
    for name, t in (("input_ids", ids), ("attention_mask", mask)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.is_floating_point():
            raise DataError(f"{path}, field {name}: expected a 2-D integer tensor, found {getattr(t, 'shape', t)!r}")
    if ids.shape != mask.shape:
        raise DataError(f"{path}: input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} differ in shape")
    return path, ids, mask


def check_pretokenized(path: Path, ids: torch.Tensor, mask: torch.Tensor, vocab_size: int, first_row: int = 0) -> None:
    """Mask values 0/1 and real tokens inside the vocabulary, for rows `first_row`.. of the file (a block of it)."""
    bad_mask = (mask != 0) & (mask != 1)
    if bad_mask.any():
        row = first_row + int(bad_mask.any(1).nonzero()[0])
        raise DataError(f"{path}, field attention_mask, row {row}: values must be 0 or 1")
    outside = ((ids < 0) | (ids >= vocab_size)) & mask.bool()
    if outside.any():
        row, col = (int(v) for v in outside.nonzero()[0])
        raise DataError(
            f"{path}, field input_ids, row {first_row + row}: token id {int(ids[row, col])} is outside the "
            f"tokenizer's vocabulary (0..{vocab_size - 1})"
        )


def read_pretokenized(path: str | Path, vocab_size: int, max_rows: int = 0) -> list[tuple[list[int]]]:
    """The original's pretokenized_queries.pt: {'input_ids': (N, L), 'attention_mask': (N, L)}, padding removed."""
    path, ids, mask = load_pretokenized(path)
    if max_rows:
        ids, mask = ids[:max_rows], mask[:max_rows]
    check_pretokenized(path, ids, mask, vocab_size)
    rows = [(r[m.bool()].tolist(),) for r, m in zip(ids, mask)]
    rows = [r for r in rows if r[0]]
    if not rows:
        raise DataError(f"{path}: every row is padding")
    return rows
