"""The query decoder: a Gemma 3 LM learns to write search queries back from a frozen encoder's vectors, through
the same loop, configs, checkpoints, resume and logging as the three phases.

    accelerate launch train/decoder.py --config train/configs/decoder.yaml

`encoder` is the encoder to invert (a published Gemma-Embed folder, minilm, or raw:BACKBONE); `data` its queries
(queries.db, or the original's pretokenized_queries.pt), whose vectors are computed once and cached (beside the
token store when `store` is set). The decoder's vocabulary is the training queries' tokens. The published folder
loads with GemmaEmbedDecoder.from_pretrained or AutoModel(..., trust_remote_code=True); evaluate it with
python train/evaluate.py --decoder FOLDER.
"""

from gemma_embed.config import DecoderConfig, load_config
from gemma_embed.decoder_task import decoder_task
from gemma_embed.loop import run_task


def main(argv=None):
    cfg, args = load_config(DecoderConfig, argv)
    return run_task(cfg, args.resume, decoder_task())


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
