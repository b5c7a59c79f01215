"""Query fan-out of one or a few pairs, printed step by step (for many pairs, judged and resumable:
train/fan_out.py): walk from a seed query's embedding toward a document's and decode each step into a query.

    python examples/fan_out.py --decoder runs/demo/decoder \
        --query "best running shoes for flat feet" \
        --document "Stability shoes with arch support help runners whose feet roll inward." --steps 6
    python examples/fan_out.py --decoder runs/demo/decoder --wikiqa ../shared/data/wikiqa/test --pairs 20
    python examples/fan_out.py --model runs/demo/model --query ... --document ...     # nearest neighbour instead

With --decoder, each step is written by the trained query decoder and corrected toward the step's point for
--rounds rounds (gemma_embed/corrector.py: the decoder's queries, the nearest training queries and their word
edits, re-embedded and judged by the encoder; --rounds 0: the decoder's sampled candidates and greedy query,
re-ranked): new queries, which need exist nowhere. The corrector's bank is the decoder's training queries, or
--bank FILE (a larger pool of real queries makes better starting points). Exact and near duplicates of the seed or
an earlier step are marked. The encoder is the one the decoder was trained on (--model may name it, and is
checked). Without --decoder, each step is the nearest query of a bank of real queries (the bundled NQ and
WebQuestions sample, or --bank FILE) and corrected by word edits for --rounds rounds. A --bank's embeddings are
cached under --cache.

--wikiqa DIR walks from each of the first --pairs WikiQA questions to its correct answer sentence. Every run prints,
per step, the query with its cosine to the step's point, to the seed and to the document, and over all walks: the
share of distinct steps closer to the document than the seed query, the share of steps not in the training data,
and the mean cosine of a step's query to its point.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from gemma_embed.corrector import Corrector
from gemma_embed.data.query_files import read_queries
from gemma_embed.fanout import CorrectingDecoder, NearestNeighbourDecoder, decoder_walker, walk
from gemma_embed.recipes import CORRECTION

SAMPLE = Path(__file__).resolve().parent / "data"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", help="a trained query decoder folder (generative fan-out)")
    ap.add_argument("--model", help="the encoder: a published Gemma-Embed folder (or any sentence-transformers "
                                    "folder); with --decoder, the one it was trained on (the default)")
    ap.add_argument("--query", action="append", default=[], help="a seed query (repeatable, with --document)")
    ap.add_argument("--document", action="append", default=[], help="the document to walk toward, per --query")
    ap.add_argument("--wikiqa", help="a WikiQA split folder: walk from questions to their correct answers")
    ap.add_argument("--pairs", type=int, default=20, help="WikiQA pairs to walk (with --wikiqa)")
    ap.add_argument("--candidates", type=int, default=8, help="sampled candidates per step (with --decoder)")
    ap.add_argument("--rounds", type=int, default=CORRECTION.rounds, help="rounds of correction per step (0: none; "
                                                                           "the rest: gemma_embed/recipes.py)")
    ap.add_argument("--corrector", default="", help="other corrector settings, FIELD=VALUE,... (gemma_embed/"
                                                      "corrector.py, CorrectorSettings), e.g. beams=0,proposals=0")
    ap.add_argument("--bank", help="a query file: the corrector's bank (default: the decoder's training queries; "
                                   "without --decoder, the bundled queries)")
    ap.add_argument("--bank_size", type=int, default=0, help="use the first N queries of the bank (0: all)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--slerp", action="store_true", help="spherical interpolation instead of renormalised linear")
    ap.add_argument("--png", default="runs/fan_out.png", help="the first walk's plot")
    ap.add_argument("--json", help="write the walks (and metrics) here")
    ap.add_argument("--cache", default="runs/fanout_cache")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "no"],
                    help="auto: bf16 where the CPU runs it natively, float32 elsewhere")
    args = ap.parse_args(argv)
    if len(args.query) != len(args.document):
        ap.error("give one --document per --query")
    if not args.query and not args.wikiqa:
        ap.error("give --query and --document, or --wikiqa")
    if args.steps < 1 or args.rounds < 0:
        ap.error("--steps must be >= 1 and --rounds >= 0")
    try:
        settings = replace(CORRECTION, rounds=args.rounds, samples=args.candidates).update(args.corrector)
    except ValueError as e:
        ap.error(f"--corrector: {e}")

    from gemma_embed.encoder import load_embedder
    from gemma_embed.precision import resolve

    precision = resolve(args.precision, "cpu")
    print(precision.line())
    if args.decoder:
        bank = read_queries(args.bank)[: args.bank_size or None] if args.bank else None
        embed, decoder, training = decoder_walker(args.decoder, args.model, precision=precision, settings=settings,
                                                  bank=bank, cache=args.cache if bank else None)
    else:
        if not args.model:
            ap.error("give --decoder, or --model for nearest-neighbour decoding")
        embed = load_embedder(args.model, precision=precision)
        weights = Path(args.model) / "model.safetensors"
        key = f"{Path(args.model).resolve()}:{weights.stat().st_mtime_ns if weights.exists() else ''}"
        training = read_queries(args.bank or SAMPLE / "queries.tsv")[: args.bank_size or None]
        decoder = NearestNeighbourDecoder(training, embed, args.cache, model_key=key)
        if settings.rounds:
            decoder = CorrectingDecoder(Corrector(embed, training, decoder.vectors, settings=settings))

    pairs = list(zip(args.query, args.document))
    if args.wikiqa:
        from gemma_embed.eval.tasks import read_wikiqa

        pairs += [(q, answers[labels.index(1)]) for q, answers, labels in read_wikiqa(args.wikiqa)[: args.pairs]]
    paths, metrics = walk(embed, pairs, decoder, args.steps, training, "slerp" if args.slerp else "linear", args.png)
    print(f"wrote {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": pairs, "paths": paths, "metrics": metrics}, indent=2) + "\n")
    return paths, metrics


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
