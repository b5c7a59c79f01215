"""Evaluate any sentence-transformers model folder, all-MiniLM-L6-v2 (`minilm`) or a raw Gemma 3 backbone
(`raw:BACKBONE`) on STS, retrieval, WikiQA, geometry and the invertibility probe (gemma_embed/eval/).

    python train/evaluate.py --model runs/demo/model --model minilm --model raw:gemma3-270m \\
        --sts examples/data/sts-test.csv --wikiqa ../shared/data/wikiqa/test --geometry --probe --json eval.json
"""

from gemma_embed.eval import run


def write_card(folder):
    """After --write: the decoder's card, rendered again with the new decoder_eval.json."""
    from gemma_embed.data.decoder_queries import trained_config
    from gemma_embed.publish.card import write_decoder_card

    print(f"wrote {write_decoder_card(folder, trained_config(folder).push_to_hub)}")


def main(argv=None):
    return run.main(argv, on_write=write_card)


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
