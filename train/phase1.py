"""Phase 1: unsupervised SimCSE on plain sentences. Each sentence is encoded twice in training mode; dropout
(the backbone's attention dropout, config.view_dropout, and LoRA dropout) is the only difference between the views.

    accelerate launch train/phase1.py --config train/configs/phase1.yaml
"""

from gemma_embed.config import Phase1Config, load_config
from gemma_embed.data.readers import read_text
from gemma_embed.contrastive import run_phase


def read_rows(cfg, tokenizer):
    return read_text(cfg.data, cfg.max_rows)


def main(argv=None):
    cfg, args = load_config(Phase1Config, argv)
    return run_phase(cfg, args.resume, read_rows, self_contrast=True)


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
