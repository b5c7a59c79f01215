"""Phase 3: in-domain self-contrast on real search queries. Each query is its own positive under two dropout
views; identical queries in one batch are masked rather than counted as each other's negatives.

    accelerate launch train/phase3.py --config train/configs/phase3.yaml

`data` is a queries.db (SQLite; `table` and `column` in the config), the original's pretokenized_queries.pt, or a
datasets.Dataset saved with save_to_disk (its `column`).
With `store` (a folder) set, `data` is tokenised once into a memory-mapped token store there and batches are
length-bucketed (no query twice in a batch): the layout for the original's 7.1M queries.
"""

from gemma_embed.config import Phase3Config, load_config
from gemma_embed.data.batches import LengthBucketedBatches, ShuffledBatches
from gemma_embed.data.readers import read_pretokenized, read_queries_db
from gemma_embed.data.store import store_for
from gemma_embed.contrastive import run_phase
from gemma_embed.runtime import wait_for


def read_rows(cfg, tokenizer):
    if cfg.store:
        from accelerate import PartialState

        if PartialState().is_main_process:  # builds the store (or checks and reuses it)
            return store_for(cfg, tokenizer)
        # the others poll for the finished store rather than wait in a collective, which could time out
        return wait_for(lambda: store_for(cfg, tokenizer, progress=False, build=False), f"token store {cfg.store}")
    if cfg.data.endswith(".pt"):
        return read_pretokenized(cfg.data, len(tokenizer), cfg.max_rows)
    return read_queries_db(cfg.data, cfg.table, cfg.column, cfg.max_rows)


def main(argv=None):
    cfg, args = load_config(Phase3Config, argv)
    order = LengthBucketedBatches if cfg.store else ShuffledBatches
    return run_phase(cfg, args.resume, read_rows, self_contrast=True, batch_order=order)


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
