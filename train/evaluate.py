"""Evaluate any sentence-transformers model folder, all-MiniLM-L6-v2 (`minilm`) or a raw Gemma 3 backbone
(`raw:BACKBONE`) on STS, retrieval, WikiQA, geometry and the invertibility probe (gemma_embed/eval/).

    python train/evaluate.py --model runs/demo/model --model minilm --model raw:gemma3-270m \\
        --sts examples/data/sts-test.csv --wikiqa ../shared/data/wikiqa/test --geometry --probe --json eval.json
"""

from gemma_embed.eval.run import main

if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
