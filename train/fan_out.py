"""Query reformulations in bulk: walk from each seed query toward its document in the encoder's space, decode every
step into a new query, and judge each one (fluency under a language model, closeness to its point, progress toward
the document, repeats, novelty, whether it still retrieves its document).

    python train/fan_out.py --decoder runs/demo/decoder --pairs pairs.jsonl --out runs/fanout
    python train/fan_out.py --decoder runs/demo/decoder --pairs ../shared/data/wikiqa/test --mode correct --limit 200
    accelerate launch --multi_gpu --num_processes 2 train/fan_out.py ... --device cpu     # several processes
    python train/fan_out.py --out runs/fanout --summarise --min_cosine 0.85               # the keep rule again

--pairs: a JSONL file ({"id", "query", "document"} a line), a TSV file (id, query, document), a WikiQA folder, or
`bundled` (examples/data/pairs.jsonl). Writes OUT/reformulations.jsonl (one record per step; the fields are listed
in gemma_embed/reformulate.py), OUT/kept.jsonl (the steps the keep rule keeps) and OUT/summary.json (the quality
table's figures), and prints the table. Rerunning the same command resumes where it stopped. The defaults are the
measured recipe (gemma_embed/recipes.py, FAN_OUT).
"""

import argparse
import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from types import SimpleNamespace

from gemma_embed.recipes import FAN_OUT, correction_recipe


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", help="a trained query decoder folder")
    ap.add_argument("--pairs", help="the (id, query, document) pairs: .jsonl, .tsv, a WikiQA folder, or bundled")
    ap.add_argument("--out", required=True, help="the run's folder (resumed if it holds one)")
    ap.add_argument("--limit", type=int, default=0, help="the first N pairs only (0: all)")
    ap.add_argument("--skip_bad", action="store_true", help="skip (and count) bad lines of the pairs file")
    ap.add_argument("--bank", help="a query file: real queries the corrector starts from (default: the decoder's "
                                   "training queries)")
    ap.add_argument("--cache", help="where the vectors of the bank and the documents are kept (default: OUT/cache)")
    ap.add_argument("--candidates", action="store_true", help="record each point's shortlist (for --repick)")
    ap.add_argument("--corrector", default="", help="corrector settings over the recipe's, FIELD=VALUE,... "
                                                     "(gemma_embed/corrector.py, CorrectorSettings)")
    ap.add_argument("--corrector_model", help="a trained corrector's folder (train/corrector.py): the correct mode "
                                              "rewrites hypotheses with it (default settings: the trained recipe)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--mixed_precision", default="auto", choices=["auto", "bf16", "no"])
    ap.add_argument("--summarise", action="store_true", help="apply the keep rule to --out's records again, "
                                                              "decoding nothing")
    ap.add_argument("--repick", type=float, help="with --summarise: re-choose each step from its recorded "
                                                  "candidates at this fluency weight")
    for f in fields(FAN_OUT):
        kind = {"fluency_weight": float, "rounds": int}.get(f.name, type(f.default))  # None: the recipe's
        ap.add_argument(f"--{f.name}", type=kind, default=f.default, help=f"(default {f.default})")
    args = ap.parse_args(argv)
    recipe = replace(FAN_OUT, **{f.name: getattr(args, f.name) for f in fields(FAN_OUT)})
    if recipe.mode not in ("greedy", "rerank", "correct"):
        ap.error(f"--mode must be greedy, rerank or correct, got {recipe.mode!r}")
    if recipe.steps < 1 or recipe.batch_pairs < 1 or (recipe.rounds or 0) < 0 or recipe.samples < 0 or recipe.top_k < 1:
        ap.error("--steps, --batch_pairs and --top_k must be >= 1, --rounds and --samples >= 0")
    if not args.summarise and not (args.decoder and args.pairs):
        ap.error("give --decoder and --pairs (or --summarise an earlier --out)")
    try:
        settings = correction_recipe(bool(args.corrector_model), recipe.rounds, args.corrector)
    except ValueError as e:
        ap.error(f"--corrector: {e}")
    return args, recipe, settings


def summarise_again(args, recipe):
    from gemma_embed.bulk import finish, write_jsonl
    from gemma_embed.data.readers import DataError
    from gemma_embed.reformulate import read_records, read_pairs, repick
    from gemma_embed.text_metrics import normalise

    out = Path(args.out)
    if not (out / "run.json").is_file():
        raise DataError(f"{out}: no fan-out run here (run.json missing)")
    run = json.loads((out / "run.json").read_text())
    pairs = read_pairs(run["pairs"], run["skip_bad"])[0][: run["limit"] or None]
    if args.repick is not None:
        records = list(read_records(out / "reformulations.jsonl"))
        training = {normalise(t) for t in json.loads((out / "training.json").read_text())}
        records = repick(records, args.repick, {p.id: p.query for p in pairs}, training)
        out = out / f"repick-{args.repick:g}"
        out.mkdir(exist_ok=True)
        (out / "shards").mkdir(exist_ok=True)
        write_jsonl(out / "shards" / "shard-000.jsonl", records)
        recipe = replace(recipe, fluency_weight=args.repick)
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    keep = ("cpu", "precision", "reformulations_per_second", "processes", "reformulations_this_run")
    return finish(out, pairs, replace(recipe, mode=run["mode"]), {k: summary.get(k) for k in keep})


def main(argv=None):
    args, recipe, settings = parse(argv)
    if args.summarise:
        return summarise_again(args, recipe)
    from gemma_embed.bulk import check_run, run
    from gemma_embed.inverter import Inverter
    from gemma_embed.reformulate import Fluency, Reformulator, read_pairs
    from gemma_embed.runtime import make_accelerator

    accelerator, precision = make_accelerator(SimpleNamespace(device=args.device, mixed_precision=args.mixed_precision,
                                                              dist_timeout_minutes=30))
    pairs, skipped = read_pairs(args.pairs, args.skip_bad)
    pairs = pairs[: args.limit or None]
    if skipped and accelerator.is_main_process:
        print(f"{args.pairs}: skipped {skipped} bad lines (--skip_bad)", flush=True)
    out = Path(args.out)
    run_settings = {"decoder": str(Path(args.decoder).resolve()), "pairs": str(args.pairs), "limit": args.limit,
                    "skip_bad": args.skip_bad, "bank": args.bank, "seed": args.seed, "candidates": args.candidates,
                    **{k: v for k, v in asdict(recipe).items() if k not in ("nll_quantile", "min_cosine", "top_k")},
                    **({"corrector": settings.to_dict(), "corrector_model": args.corrector_model}
                       if recipe.mode == "correct" else {})}
    if accelerator.is_main_process:
        check_run(out, run_settings)
    accelerator.wait_for_everyone()  # at the start only: no process has work of its own yet
    from gemma_embed.data.query_files import read_queries

    device = str(accelerator.device)
    inverter = Inverter.from_pretrained(args.decoder, bank=read_queries(args.bank) if args.bank else None,
                                        precision=precision, cache=args.cache or out / "cache", device=device,
                                        corrector=args.corrector_model)
    if accelerator.is_main_process:
        (out / "training.json").write_text(json.dumps(inverter.training) + "\n")
    lm = None if recipe.lm == "none" else Fluency(recipe.lm, precision, device)
    facts = {"cpu": precision.cpu, "device": device, "precision": precision.name}
    reformulator = Reformulator(inverter, lm, recipe, settings, args.candidates)
    return run(reformulator, pairs, out, accelerator, facts, args.seed)


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
