"""Phase 1: unsupervised SimCSE on plain sentences. Each sentence is encoded twice in training mode; dropout
(the backbone's attention dropout, config.view_dropout, and LoRA dropout) is the only difference between the views.

    accelerate launch train/phase1.py --config train/configs/phase1.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import Phase1Config, load_config  # noqa: E402
from train.data import read_text  # noqa: E402
from train.loop import run_phase  # noqa: E402


def read_rows(cfg, tokenizer):
    return read_text(cfg.data, cfg.max_rows)


def main(argv=None):
    cfg, args = load_config(Phase1Config, argv)
    return run_phase(cfg, args.resume, read_rows, self_contrast=True)


if __name__ == "__main__":
    main()
