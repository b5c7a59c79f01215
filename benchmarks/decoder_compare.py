"""Is our space the most invertible? The same decoder recipe and CPU budget trained on several encoders' vectors,
each evaluated in its own space on the same held-out queries, with each space's nearest existing query beside it.

    python benchmarks/decoder_compare.py --encoder runs/demo/model --encoder raw:gemma3-270m --encoder minilm \
        --rounds 10 --n 60
    python benchmarks/decoder_compare.py --encoder runs/demo/model --max_steps 1500 --max_rows 0 \
        --more_queries ../shared/data/web_queries_anserini/all_real_queries_dedup.tsv@msmarco-passage-dev-subset,nq-dev \
        --out runs/decoder_long                                         # the longer CPU run

Training queries: the bundled queries minus the held-out split (train/demo.py's: 3% by a hash of the query), plus
any --more_queries files; held-out sets: that split, and TREC Million Query topics from ../shared/data when present
(short keyword queries, in no training pool). Every decoder trains with --config (the demo's decoder recipe by default)
and the same --max_steps, through train/decoder.py under accelerate. Round-trip cosine compares only within one
space: each set prints its floor (random pairs of held-out queries) beside it; compare encoders by exact match,
token F1 and BLEU. With --rounds, each decoder's queries are also corrected by gemma_embed.corrector, judged by
its own encoder, with its own training pool as the bank: rounds 0, 1, 3, 10 and the seconds per query. The CPU
model, threads and precision are printed beside the times. The last line: best_token_f1=ENCODER:F1 ... (per
encoder: greedy token F1 on the bundled held-out split, and after correction where --rounds is given)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from pathlib import Path

from gemma_embed.data.query_files import make_queries_db, read_queries, read_queries_tsv, split_heldout, write_queries_tsv
from gemma_embed.eval.inversion import evaluate_decoder, heldout_sets
from gemma_embed.eval.inversion_report import print_report, result_rows
from gemma_embed.inverter import Inverter
from gemma_embed.precision import resolve
from gemma_embed.recipes import correction_recipe
from gemma_embed.runtime import launch_command

REPO = Path(__file__).resolve().parents[1]  # the checkout: train/, examples/data, ../shared/data
TREC_MQ = REPO.parent / "shared/data/web_queries_anserini/all_real_queries_dedup.tsv"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def name_of(spec: str) -> str:
    return Path(spec).name if Path(spec).is_dir() else spec.replace(":", "-")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", action="append", required=True, help="a published folder, minilm, raw:BACKBONE")
    ap.add_argument("--config", default=str(REPO / "train/configs/demo/decoder.yaml"))
    ap.add_argument("--out", default=str(REPO / "runs/decoder_compare"))
    ap.add_argument("--max_steps", type=int, default=0, help="override the config's steps (0: keep)")
    ap.add_argument("--max_rows", type=int, default=-1, help="override the config's max_rows (-1: keep, 0: all)")
    ap.add_argument("--more_queries", action="append", default=[], help="more training queries: FILE or FILE@tag,tag")
    ap.add_argument("--n", type=int, default=200, help="held-out queries per set")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=0, help="rounds of correction (0: none)")
    ap.add_argument("--set", action="append", default=[], help="config overrides FIELD=VALUE for every decoder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    precision = resolve("auto", "cpu")
    print(f"CPU {precision.cpu}; {precision.line()}", flush=True)

    bundled, heldout = split_heldout(read_queries_tsv(REPO / "examples/data/queries.tsv"), 30)
    heldout_file = write_queries_tsv(heldout, out / "heldout_queries.tsv")
    specs = [str(heldout_file)] + ([f"{TREC_MQ}@trec-mq-2007,trec-mq-2008,trec-mq-2009"] if TREC_MQ.is_file() else [])
    evaluation = heldout_sets(specs, args.n)
    kept_out = {q for texts in evaluation.values() for q in texts} | {q for q, _ in heldout}
    rows = list(bundled)
    for spec in args.more_queries:
        path, _, tags = spec.partition("@")
        rows += [(q, None) for q in read_queries(path, tuple(filter(None, tags.split(","))))]
    rows = [r for r in dict.fromkeys(rows) if r[0] not in kept_out]
    random.Random(0).shuffle(rows)  # any first N rows (a corrector's max_rows) draw from every source
    db = make_queries_db(rows, out / "queries.db")
    print(f"{len(rows):,} training queries; held-out sets: " + ", ".join(f"{k} ({len(v)})" for k, v in evaluation.items()),
          flush=True)

    results = {}
    for spec in args.encoder:
        folder = out / f"decoder-{name_of(spec)}"
        cmd = launch_command(REPO / "train/decoder.py", "--config", args.config, "--encoder", spec, "--data", str(db),
                             "--heldout", str(heldout_file), "--output_dir", str(folder))
        cmd += ["--max_steps", str(args.max_steps)] if args.max_steps else []
        cmd += ["--max_rows", str(args.max_rows)] if args.max_rows >= 0 else []
        for item in args.set:
            field, _, value = item.partition("=")
            cmd += [f"--{field}", value]
        if (folder / "checkpoints").is_dir() and not (folder / "train_summary.json").exists():
            cmd.append("--resume")
        began = time.time()
        if not (folder / "train_summary.json").exists():
            print(" ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, cwd=REPO, check=True)
        summary = json.loads((folder / "train_summary.json").read_text())
        inverter = Inverter.from_pretrained(folder, precision=precision)  # the training queries as the bank
        report = evaluate_decoder(inverter, evaluation, args.candidates, correction_recipe(rounds=args.rounds))
        report["train_seconds"], report["wall_seconds"] = summary["train_seconds"], time.time() - began
        report["seconds_per_step"], report["steps"] = summary["seconds_per_step"], summary["steps"]
        print_report(report)
        print(f"{spec}: {summary['steps']} steps, {summary['train_seconds']:.0f} s of training "
              f"({summary['seconds_per_step']:.2f} s/step on {precision.cpu}, {precision.name})", flush=True)
        results[spec] = report
        (out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")

    first = next(iter(evaluation))
    print(f"\n{'encoder':<24}{'set':<44}{'decoding':<44}{'EM':>7}{'F1':>7}{'BLEU':>7}{'cos':>7}{'floor':>7}")
    for spec, report in results.items():
        for set_name, result in report["sets"].items():
            for mode, m in result_rows(result):
                print(f"{name_of(spec):<24}{set_name[:42]:<44}{mode[:42]:<44}{m['exact_match']:7.2f}{m['token_f1']:7.2f}"
                      f"{m['bleu']:7.2f}{m['roundtrip_cosine']:7.3f}{result['floor_cosine']:7.3f}")
            if "correction" in result:
                print(f"{'':<24}{set_name[:42]:<44}correction: {result['correction']['seconds_per_query']:.2f} s and "
                      f"{result['correction']['encodes_per_query']:.0f} encodes per query ({precision.cpu}, "
                      f"{precision.name})")

    def f1(result: dict) -> str:
        greedy = f"{result['modes']['greedy']['token_f1']:.2f}"
        if "correction" not in result:
            return greedy
        rounds = result["correction"]["rounds"]
        return f"{greedy}/{rounds[max(rounds, key=int)]['token_f1']:.2f}"

    print("best_token_f1=" + " ".join(f"{name_of(s)}:{f1(r['sets'][first])}" for s, r in results.items()))
    return results


if __name__ == "__main__":
    main()
