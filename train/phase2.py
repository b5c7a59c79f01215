"""Phase 2: supervised contrastive learning on paraphrase triplets (anchor, positive, hard negative). Each
anchor's candidates are every positive and every hard negative of the global batch.

    accelerate launch train/phase2.py --config train/configs/phase2.yaml

`data` is a CSV with the text columns anchor,positive,negative (or SimCSE's sent0,sent1,hard_neg; the negative may
be missing) or the original's pre-tokenised a_ids,a_mask,p_ids,p_mask,n_ids,n_mask.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import Phase2Config, load_config  # noqa: E402
from train.data import ShuffledBatches, SourceBatches, read_triplets  # noqa: E402
from train.loop import run_phase  # noqa: E402


def main(argv=None):
    cfg, args = load_config(Phase2Config, argv)
    sources: list[str] = []  # filled by read_triplets, one per row

    def read_rows(cfg, tokenizer):
        keep = {s.strip() for s in cfg.sources.split(",")} if cfg.sources else None
        return read_triplets(cfg.data, len(tokenizer), cfg.max_rows, sources, keep)

    def by_source(rows, batch_size, seed):
        return SourceBatches(sources, batch_size, seed)

    return run_phase(cfg, args.resume, read_rows, self_contrast=False,
                     batch_order=by_source if cfg.batch_by_source else ShuffledBatches)


if __name__ == "__main__":
    main()
