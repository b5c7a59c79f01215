"""Phase 2: supervised contrastive learning on paraphrase triplets (anchor, positive, hard negative). Each
anchor's candidates are every positive and every hard negative of the global batch.

    accelerate launch train/phase2.py --config train/configs/phase2.yaml

`data` is a CSV with the text columns anchor,positive,negative (or SimCSE's sent0,sent1,hard_neg; the negative may
be missing) or the original's pre-tokenised a_ids,a_mask,p_ids,p_mask,n_ids,n_mask, or a datasets.Dataset saved with
save_to_disk with the same columns.
"""

from gemma_embed.config import Phase2Config, load_config
from gemma_embed.data.batches import ShuffledBatches, SourceBatches
from gemma_embed.data.collate import row_lengths
from gemma_embed.data.readers import read_triplets
from gemma_embed.contrastive import run_phase


def main(argv=None):
    cfg, args = load_config(Phase2Config, argv)
    sources: list[str] = []  # filled by read_rows: each row's source
    lengths: list[int] = []  # filled by read_rows with batch_by_length: each row's tokens

    def read_rows(cfg, tokenizer):
        rows = read_triplets(cfg.data, len(tokenizer), cfg.max_rows, sources, cfg.source_names())
        if cfg.batch_by_length:
            lengths.extend(row_lengths(rows, tokenizer, cfg.max_length))
        return rows

    def batch_order(rows, batch_size, seed):
        return SourceBatches(sources if cfg.batch_by_source else [""] * len(rows), batch_size, seed, lengths or None)

    return run_phase(cfg, args.resume, read_rows, self_contrast=False,
                     batch_order=batch_order if cfg.batch_by_source or cfg.batch_by_length else ShuffledBatches)


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
