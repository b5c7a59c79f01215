"""Load a file of queries (one per line, or the bundled queries.tsv with a header) into a real SQLite queries.db,
the input phase 3 reads.

    python examples/make_queries_db.py examples/data/queries.tsv runs/demo/queries.db
"""

import argparse
import os
import sqlite3
from pathlib import Path


def make_queries_db(source: str | Path, target: str | Path, table: str = "queries", column: str = "query") -> Path:
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    con.execute(f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, "{column}" TEXT NOT NULL, source TEXT)')
    with source.open(encoding="utf-8") as f:
        lines = f.read().splitlines()
    if lines and lines[0].lower().startswith("query\t"):
        lines = lines[1:]
    rows = [(parts[0], parts[1] if len(parts) > 1 else None) for parts in (l.split("\t") for l in lines) if parts[0]]
    con.executemany(f'INSERT INTO "{table}" ("{column}", source) VALUES (?, ?)', rows)
    con.commit()
    con.close()
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("target")
    args = ap.parse_args()
    print(make_queries_db(args.source, args.target))
