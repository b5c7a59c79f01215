"""Load a file of queries (one per line, or `query<TAB>source` lines such as the bundled queries.tsv) into a real
SQLite queries.db, the input phase 3 reads.

    python examples/make_queries_db.py examples/data/queries.tsv runs/demo/queries.db
"""

import argparse

from gemma_embed.data.bundled import make_queries_db

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("target")
    args = ap.parse_args()
    print(make_queries_db(args.source, args.target))
