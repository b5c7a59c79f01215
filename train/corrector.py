"""The trained corrector (vec2text's second model): a copy of a trained query decoder that also reads a hypothesis,
its text and its vector, learns to write the query, on the decoder's own hypotheses for its training queries
(computed once and cached). Same loop, configs, checkpoints, resume and logging as the decoder.

    accelerate launch train/corrector.py --config train/configs/demo/corrector.yaml

Use it with `Inverter.from_pretrained(decoder_folder, corrector=folder)` or
`python train/evaluate.py --decoder DECODER --corrector_model FOLDER`.
"""

from gemma_embed.config import CorrectorConfig, load_config
from gemma_embed.corrector_task import corrector_task
from gemma_embed.loop import run_task


def main(argv=None):
    cfg, args = load_config(CorrectorConfig, argv)
    return run_task(cfg, args.resume, corrector_task())


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
