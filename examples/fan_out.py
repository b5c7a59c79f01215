"""Query fan-out: walk from a seed query's embedding toward a document's and decode each step.

    python examples/fan_out.py --model runs/demo/model \
        --query "best running shoes for flat feet" \
        --document "Stability shoes with arch support help runners whose feet roll inward." --steps 6

Decoding is nearest-neighbour over a bank of real queries (the bundled NQ and WebQuestions sample by default,
or --bank FILE, one query per line); the bank's embeddings are cached under runs/fanout_cache. A trained query
decoder can take its place: see gemma_embed/fanout.py (Decoder).
"""

import argparse
from pathlib import Path

from gemma_embed.data.bundled import read_queries
from gemma_embed.fanout import NearestNeighbourDecoder, fan_out, plot_path

SAMPLE = Path(__file__).resolve().parent / "data"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a published Gemma-Embed folder (or any sentence-transformers folder)")
    ap.add_argument("--query", required=True)
    ap.add_argument("--document", required=True)
    ap.add_argument("--bank", default=str(SAMPLE / "queries.tsv"))
    ap.add_argument("--bank_size", type=int, default=0, help="use the first N queries of the bank (0: all)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--slerp", action="store_true", help="spherical interpolation instead of renormalised linear")
    ap.add_argument("--png", default="runs/fan_out.png")
    ap.add_argument("--cache", default="runs/fanout_cache")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "no"],
                    help="auto: bf16 where the CPU runs it natively, float32 elsewhere")
    args = ap.parse_args(argv)

    from gemma_embed.eval.embedders import load_embedder
    from gemma_embed.precision import resolve

    precision = resolve(args.precision, "cpu")
    print(precision.line())
    embed = load_embedder(args.model, precision=precision)
    weights = Path(args.model) / "model.safetensors"
    key = f"{Path(args.model).resolve()}:{weights.stat().st_mtime_ns if weights.exists() else ''}"
    bank = read_queries(args.bank)
    decoder = NearestNeighbourDecoder(bank[: args.bank_size or None], embed, args.cache, model_key=key)
    path = fan_out(embed, args.query, args.document, decoder, args.steps, "slerp" if args.slerp else "linear")
    print(f"seed:   {args.query}\ntarget: {args.document}\n")
    print(f"{'step':>4} {'sim seed':>8} {'sim doc':>8} {'match':>6}  decoded query")
    for row in path:
        print(f"{row['step']:>4} {row['sim_seed']:8.3f} {row['sim_target']:8.3f} {row['decoded_sim']:6.3f}  {row['decoded']}")
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    plot_path(path, args.png, title=f"fan-out: {args.query[:40]}")
    print(f"\nwrote {args.png}")
    return path


if __name__ == "__main__":
    main()
