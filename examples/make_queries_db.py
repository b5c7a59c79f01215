"""Load a file of queries (one per line, or `query<TAB>source` lines such as the bundled queries.tsv) into a real
SQLite queries.db, the input phase 3 and the query decoder read. With --heldout, 3% of the queries (by a hash of
the text: the same split on every machine, train/demo.py's) go to that file instead, for evaluating a decoder on
queries it never saw.

    python examples/make_queries_db.py examples/data/queries.tsv runs/demo/queries.db
    python examples/make_queries_db.py examples/data/queries.tsv runs/smoke/queries.db --heldout runs/smoke/heldout.tsv
"""

import argparse

from gemma_embed.data.query_files import make_queries_db, read_queries_tsv, split_heldout, write_queries_tsv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--heldout", help="write the held-out queries here (query<TAB>source lines), not to the db")
    ap.add_argument("--permille", type=int, default=30, help="held-out share, per thousand (default 30)")
    args = ap.parse_args()
    rows = read_queries_tsv(args.source)
    if args.heldout:
        rows, heldout = split_heldout(rows, args.permille)
        print(f"{write_queries_tsv(heldout, args.heldout)}: {len(heldout):,} held-out queries")
    print(f"{make_queries_db(rows, args.target)}: {len(rows):,} queries")


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
