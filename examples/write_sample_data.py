"""Write the bundled sample in the full-scale configs' formats, so that train/configs/phase{1,2,3}.yaml and
decoder.yaml run as they are (on a CPU, with --backbone gemma3-270m) before any real data is fetched:

    python examples/write_sample_data.py            # data/text.txt, data/triplets.csv, data/queries.db
    python examples/write_sample_data.py --out DIR

text.txt holds one sentence a line (phase 1), triplets.csv anchor,positive,negative[,source] rows (phase 2; an
empty negative is allowed), queries.db an SQLite table `queries` with a `query` column (phase 3 and the decoder).
The held-out 3% of the queries (train/demo.py's split) go to heldout_queries.tsv instead of queries.db.
"""

import argparse
import shutil
from pathlib import Path

from gemma_embed.data.query_files import make_queries_db, read_queries_tsv, split_heldout, write_queries_tsv

SAMPLE = Path(__file__).resolve().parent / "data"


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", help="the folder the full-scale configs read (default: data)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("text.txt", "triplets.csv"):
        shutil.copyfile(SAMPLE / name, out / name)
        print(f"{out / name}: {sum(1 for _ in (out / name).open(encoding='utf-8')):,} lines")
    rows, heldout = split_heldout(read_queries_tsv(SAMPLE / "queries.tsv"), 30)
    print(f"{make_queries_db(rows, out / 'queries.db')}: {len(rows):,} queries")
    print(f"{write_queries_tsv(heldout, out / 'heldout_queries.tsv')}: {len(heldout):,} held-out queries")
    return out


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
