"""Throughput of the bulk fan-out against the one-pair-at-a-time walk, side by side in one process on the same
pairs (the same decoder, encoder and precision):

    python benchmarks/fan_out_speed.py --decoder runs/demo/decoder --pairs ../shared/data/wikiqa/test --n 20 \\
        --correct_pairs 5

- the walk (gemma_embed.fanout.walk, as examples/fan_out.py ran it): each pair alone, the seed, the steps and the
  document decoded; at rounds 0 (8 samples and the greedy query, re-ranked) and corrected (gemma_embed.recipes'
  CORRECTION);
- the bulk command's engine (gemma_embed.reformulate.reformulate_batch, as train/fan_out.py runs it), batches of
  16 pairs, in greedy, rerank and correct mode, each step also scored by the fluency model and ranked against the
  documents, which the walk does not do.

Rates are decoded points per second, loading excluded (the loading is printed once); the CPU and the precision are
printed first.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def timed(fn):
    began = time.time()
    out = fn()
    return out, time.time() - began


def main(argv=None):
    from gemma_embed.fanout import CorrectingDecoder, GenerativeDecoder, walk
    from gemma_embed.inverter import Inverter
    from gemma_embed.precision import resolve
    from gemma_embed.recipes import CORRECTION, FAN_OUT
    from gemma_embed.reformulate import Fluency, Reformulator, batches, read_pairs, reformulate_batch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--pairs", default="bundled")
    ap.add_argument("--n", type=int, default=20, help="pairs for the walk at rounds 0 and the greedy and rerank modes")
    ap.add_argument("--correct_pairs", type=int, default=5, help="pairs for the corrected walk and correct mode")
    ap.add_argument("--steps", type=int, default=FAN_OUT.steps)
    ap.add_argument("--lm", default=FAN_OUT.lm)
    args = ap.parse_args(argv)
    precision = resolve("auto", "cpu")
    print(f"{precision.cpu}, {precision.line()}", flush=True)
    pairs = read_pairs(args.pairs)[0][: args.n]
    (inverter, lm), load = timed(lambda: (Inverter.from_pretrained(args.decoder, precision=precision),
                                          Fluency(args.lm, precision)))
    print(f"loading the decoder, its encoder and the fluency model: {load:.1f} s", flush=True)
    embed = inverter.embed
    rates = {}

    def walk_rate(name, decoder, chosen):
        embed.forget()
        _, seconds = timed(lambda: walk(embed, [(p.query, p.document) for p in chosen], decoder, args.steps,
                                        inverter.training, show=0))
        points = len(chosen) * (args.steps + 2)
        rates[name] = points / seconds
        print(f"{name}: {points} points in {seconds:.1f} s, {rates[name]:.2f} a second", flush=True)

    def bulk_rate(name, mode, chosen, settings=None):
        recipe = replace(FAN_OUT, mode=mode, steps=args.steps)
        documents = list(dict.fromkeys(p.document for p in chosen))
        matrix = embed(documents)
        index = {d: i for i, d in enumerate(documents)}
        embed.forget()
        reformulator = Reformulator(inverter, lm, recipe, settings)
        began = time.time()
        for batch in batches(chosen, recipe.batch_pairs):
            reformulate_batch(reformulator, batch, matrix, index)
        seconds = time.time() - began
        points = len(chosen) * args.steps
        rates[name] = points / seconds
        print(f"{name}: {points} reformulations in {seconds:.1f} s, {rates[name]:.2f} a second", flush=True)

    torch.manual_seed(0)
    walk_rate("walk, rounds 0", GenerativeDecoder(inverter.decoder, inverter.tokenizer, embed, 8), pairs)
    bulk_rate("bulk, greedy", "greedy", pairs)
    bulk_rate("bulk, rerank", "rerank", pairs)
    few = pairs[: args.correct_pairs]
    if few:
        walk_rate("walk, corrected", CorrectingDecoder(inverter.corrector(CORRECTION, progress=False)), few)
        bulk_rate("bulk, correct", "correct", few, CORRECTION)
    print(f"\nratios ({precision.cpu}, {precision.name}): greedy / walk at rounds 0 "
          f"{rates['bulk, greedy'] / rates['walk, rounds 0']:.1f}x, rerank / walk at rounds 0 "
          f"{rates['bulk, rerank'] / rates['walk, rounds 0']:.1f}x"
          + (f", correct / corrected walk {rates['bulk, correct'] / rates['walk, corrected']:.1f}x" if few else ""))
    return rates


if __name__ == "__main__":
    main()
