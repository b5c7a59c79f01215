"""Query files, read in one place: `query<TAB>source` lines under an optional `query<TAB>...` header (as in
examples/data/queries.tsv and ../shared/data/web_queries_anserini); the SQLite queries.db that phase 3 and the
decoder read, built from one of them; and the held-out split of a query file.

    rows = read_queries_tsv("examples/data/queries.tsv")          # [(query, source or None), ...]
    train, heldout = split_heldout(rows, permille=30)             # by a hash of the query: the same everywhere
    make_queries_db(train, "runs/demo/queries.db")                # a query file's path, or rows
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gemma_embed.data.readers import DataError, _decode, _require_file


def read_queries_tsv(path: str | Path) -> list[tuple[str, str | None]]:
    """(query, source) per line, in file order; a first line starting `query<TAB>` is a header. Lines whose query
    field is empty are skipped; `source` is None where the line has no second field."""
    path = _require_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:  # name the line: decode it alone for the message
        line = raw[: e.start].count(b"\n")
        _decode(raw.split(b"\n")[line], path, line + 1)
        raise
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        if line_no == 1 and parts[0].lower() == "query" and len(parts) > 1:
            continue
        if parts[0]:
            rows.append((parts[0], parts[1] if len(parts) > 1 else None))
    if not rows:
        raise DataError(f"{path}: no queries")
    return rows


def read_queries(path: str | Path, sources: tuple[str, ...] = ()) -> list[str]:
    """The queries of a query file, stripped and deduplicated in file order; `sources`: only lines whose source
    field contains one of these tags."""
    rows = read_queries_tsv(path)
    if sources:
        rows = [r for r in rows if r[1] and any(s in r[1] for s in sources)]
    return list(dict.fromkeys(q.strip() for q, _ in rows if q.strip()))


def split_heldout(rows: list[tuple[str, str | None]], permille: int) -> tuple[list, list]:
    """(training rows, held-out rows): a query is held out when a hash of its lower-cased text falls in the first
    `permille` of 1000, so every copy of a query lands on the same side and the split is the same on every
    machine."""
    from gemma_embed.data.collate import stable_id

    held = [stable_id(q.strip().lower()) % 1000 < permille for q, _ in rows]
    return [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]


def write_queries_tsv(rows: list[tuple[str, str | None]], target: str | Path) -> Path:
    """A query file (`query<TAB>source` lines under a header) from rows."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = ["query\tsource"] + [f"{q}\t{s or ''}" for q, s in rows]
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def make_queries_db(source: str | Path | list, target: str | Path, table: str = "queries", column: str = "query"
                    ) -> Path:
    """Load a query file (or its rows) into a real SQLite queries.db (`table` with columns id, `column`, source):
    written beside the target and renamed into place."""
    rows = source if isinstance(source, list) else read_queries_tsv(source)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    con.execute(f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, "{column}" TEXT NOT NULL, source TEXT)')
    con.executemany(f'INSERT INTO "{table}" ("{column}", source) VALUES (?, ?)', rows)
    con.commit()
    con.close()
    os.replace(tmp, target)
    return target
