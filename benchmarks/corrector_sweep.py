"""What correction buys per second: the corrector (gemma_embed/corrector.py) under several settings, on the same
held-out queries, with a trained decoder and its training queries (or --bank) as the bank.

    python benchmarks/corrector_sweep.py --decoder runs/demo/decoder --heldout runs/demo/heldout_queries.tsv --n 30 \
        --setting beam=4,edits=24 --setting beam=2,edits=12 --setting beam=4,edits=24,proposals=0

Each setting prints token F1, exact match and round-trip cosine after rounds 0, 1, 3 and the last, with seconds
and encodes per query; the CPU model and the precision are printed first. Settings are CorrectorSettings fields
(rounds, beam, neighbours, beams, samples, edits, proposals, patience); `decoder=0` leaves the decoder out (bank
and edits only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def parse_setting(text: str):
    """`FIELD=VALUE,...` -> (CorrectorSettings, whether the decoder takes part: `decoder=0` leaves it out)."""
    from gemma_embed.corrector import CorrectorSettings

    items = [i for i in text.split(",") if i]
    use_decoder = all(i.partition("=")[2] not in ("0", "no", "false") for i in items if i.startswith("decoder="))
    try:
        settings = CorrectorSettings().update(",".join(i for i in items if not i.startswith("decoder=")))
    except ValueError as e:
        raise SystemExit(f"{e} (or decoder=0)") from None
    return settings, use_decoder


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--encoder", help="the encoder the decoder inverts, where it is not at the path its config records "
                    "(its weights must be the same)")
    ap.add_argument("--heldout", action="append", required=True, help="FILE or FILE@tag,tag (repeatable)")
    ap.add_argument("--bank", help="a query file: the corrector's bank (default: the decoder's training queries); its "
                    "vectors are cached beside the decoder's training vectors. It must not hold the held-out queries")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--setting", action="append", default=[], help="FIELD=VALUE,... (repeatable)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from gemma_embed.backbones import load_tokenizer
    from gemma_embed.corrector import Corrector
    from gemma_embed.data.decoder_queries import training_queries, training_vectors
    from gemma_embed.data.query_files import read_queries
    from gemma_embed.encoder import cached_vectors, decoders_encoder, load_embedder
    from gemma_embed.eval.inversion import correction_table, heldout_sets
    from gemma_embed.precision import describe_machine, resolve
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    print(describe_machine(), flush=True)
    precision = resolve("auto", "cpu")
    decoder = GemmaEmbedDecoder.from_pretrained(args.decoder).eval()
    tokenizer = load_tokenizer(args.decoder)
    spec = decoders_encoder(args.decoder, decoder, args.encoder)  # not another model at the same path
    embed = load_embedder(spec, precision=precision)
    training = training_queries(args.decoder)
    pool = read_queries(args.bank) if args.bank else training
    cache = training_vectors(args.decoder)
    vectors = cached_vectors(spec, pool, cache, precision=precision) if cache else None
    sets = heldout_sets(args.heldout, args.n, exclude=set(pool) | set(training))
    results = {}
    for text in args.setting or [""]:
        settings, use_decoder = parse_setting(text)
        for name, texts in sets.items():
            embed.forget()  # each setting pays for its own encodes
            targets = embed(texts).float()
            corrector = Corrector(embed, pool, vectors, decoder if use_decoder else None,
                                  tokenizer if use_decoder else None, settings, progress=False)
            began = time.perf_counter()
            out = corrector.correct(targets)
            seconds = (time.perf_counter() - began) / len(texts)
            table = correction_table(out, texts, targets, embed, settings.rounds)
            encodes = sum(c.encodes for c in out) / len(texts)
            row = "  ".join(f"r{r}: F1 {m['token_f1']:5.1f} EM {m['exact_match']:4.1f} cos {m['roundtrip_cosine']:.3f}"
                            for r, m in table.items())
            print(f"[{text or 'defaults'}] {name} ({len(texts)}): {row}  | {seconds:.2f} s, {encodes:.0f} encodes "
                  f"per query ({precision.cpu}, {precision.name})", flush=True)
            results[f"{text}|{name}"] = {"table": table, "seconds_per_query": seconds, "encodes_per_query": encodes,
                                         "examples": [(t, c.at(0)[0], c.text) for t, c in zip(texts, out)][:10]}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
