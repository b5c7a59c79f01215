"""Phase 3: in-domain self-contrast on real search queries. Each query is its own positive under two dropout
views; identical queries in one batch are masked rather than counted as each other's negatives.

    accelerate launch train/phase3.py --config train/configs/phase3.yaml

`data` is a queries.db (SQLite; `table` and `column` in the config) or the original's pretokenized_queries.pt.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import Phase3Config, load_config  # noqa: E402
from train.data import read_pretokenized, read_queries_db  # noqa: E402
from train.loop import run_phase  # noqa: E402


def read_rows(cfg, tokenizer):
    if cfg.data.endswith(".pt"):
        return read_pretokenized(cfg.data, len(tokenizer), cfg.max_rows)
    return read_queries_db(cfg.data, cfg.table, cfg.column, cfg.max_rows)


def main(argv=None):
    cfg, args = load_config(Phase3Config, argv)
    return run_phase(cfg, args.resume, read_rows, self_contrast=True)


if __name__ == "__main__":
    main()
