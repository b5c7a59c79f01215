"""The embedded default, end to end on CPU: the real Gemma 3 270M, trained through all three phases on the bundled
real data, evaluated, carded and ready to publish.

    python train/demo.py                     (scripts/demo.sh sets up the environment first and runs this)

It prints the precision decision first (bf16 where the CPU runs it natively, float32 elsewhere), then each
section with the time elapsed and an estimate of what remains (from the rates measured so far).

Writes runs/demo/phase{1,2,3}/ (each a published folder with its logs and checkpoints), runs/demo/model/ (the
final published folder, with the model card as README.md), runs/demo/metrics.json and PNG plots. Re-running
skips finished phases and resumes an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from gemma_embed.backbones import resolve_backbone
from gemma_embed.data.bundled import make_queries_db
from gemma_embed.eval.run import evaluate_model
from gemma_embed.precision import resolve
from gemma_embed.publish.card import write_card
from gemma_embed.publish.plots import plot_run

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


PHASE_VIEWS = {1: 2, 2: 2.5, 3: 2}  # texts per row: two dropout views; anchor, positive and (on SNLI rows) negative
FINAL_EVAL_TEXTS = 2 * (1500 + 1379) + 2600 + 1300  # STS-B dev and test, WikiQA, geometry: for the estimate only


class Clock:
    """Elapsed time per section and an estimate of what remains, from the training and evaluation rates measured
    in the phases already run (tokens per second of training, texts per second of evaluation)."""

    def __init__(self, configs: dict[int, dict]):
        self.t0, self.configs = time.time(), configs
        self.train_rate = self.eval_rate = None  # tokens / s, texts / s

    def learn(self, n: int, summary: dict, folder: Path) -> None:
        cfg = self.configs[n]
        done = summary["steps"] - summary.get("start_step", 0)
        if summary.get("train_seconds") and done:
            self.train_rate = done * self._tokens(n) / summary["train_seconds"]
        evals = [json.loads(l) for l in (folder / "logs/metrics.jsonl").read_text().splitlines()]
        evals = [r for r in evals if r.get("eval_seconds")]
        if evals:
            texts = 2 * (cfg.get("eval_max_pairs") or 1500)
            self.eval_rate = texts * len(evals) / sum(r["eval_seconds"] for r in evals)

    def _tokens(self, n: int) -> float:
        cfg = self.configs[n]
        return cfg["batch_size"] * PHASE_VIEWS[n] * cfg["max_length"]

    def remaining(self, phases_left: list[int], extra_eval_texts: int) -> float | None:
        if self.train_rate is None or self.eval_rate is None:
            return None
        seconds = sum(self.configs[n]["max_steps"] * self._tokens(n) / self.train_rate for n in phases_left)
        evals = sum(2 * (self.configs[n].get("eval_max_pairs") or 1500) for n in phases_left)
        return seconds + (evals + extra_eval_texts) / self.eval_rate + 60  # 60: model loads, card, examples

    def section(self, title: str, phases_left: list[int] = (), extra_eval_texts: int = FINAL_EVAL_TEXTS) -> None:
        left = self.remaining(list(phases_left), extra_eval_texts)
        estimate = "remaining: estimated once phase 1 has run" if left is None else f"about {left / 60:.0f} min left"
        print(f"\n== [{(time.time() - self.t0) / 60:.1f} min] {title} ({estimate})", flush=True)


def launch_phase(n: int, config: Path, out: Path, backbone: str) -> dict:
    """Launch one phase with accelerate, unless its published folder is already there. Its input and output
    folders are set here (out/phaseN, from out/phase{N-1}); the rest comes from `config` (the precision too:
    `mixed_precision: auto`)."""
    folder = out / f"phase{n}"
    if (folder / "train_summary.json").exists():
        print(f"phase {n}: already done ({folder})")
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / f"train/phase{n}.py"), "--config", str(config), "--output_dir", str(folder)]
        cmd += ["--backbone", backbone] if n == 1 else ["--init_from", str(out / f"phase{n - 1}")]
        if n == 3:
            cmd += ["--data", str(out / "queries.db")]
        if (folder / "checkpoints").is_dir():
            cmd.append("--resume")
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    summary = json.loads((folder / "train_summary.json").read_text())
    print(f"phase {n}: {summary['steps']} steps in {summary['train_seconds']:.0f} s "
          f"({summary['seconds_per_step']:.2f} s/step), loss {summary['first_loss']:.4f} -> "
          f"{summary['last_loss']:.4f}, STS-B dev {summary['sts_before']:.2f} -> {summary['sts_after']:.2f}",
          flush=True)
    return summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=str(REPO / "train/configs/demo"))
    ap.add_argument("--out", default=str(REPO / "runs/demo"))
    ap.add_argument("--repo_id", default="org/gemma-embed")
    ap.add_argument("--backbone", default="gemma3-270m", help="what phase 1 starts from (gemma_embed/backbones.py)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    precision = resolve("auto", "cpu")
    print(precision.line(), flush=True)
    configs = {n: yaml.safe_load((Path(args.configs) / f"phase{n}.yaml").read_text()) for n in (1, 2, 3)}
    clock = Clock(configs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clock.section(f"backbone {args.backbone} (the Gemma 3 270M comes from its PyPI package, assembled and converted "
                  "once, cached)", [1, 2, 3])
    print(resolve_backbone(args.backbone))
    if not (out / "queries.db").exists():
        make_queries_db(SAMPLE / "queries.tsv", out / "queries.db")

    summaries = []
    for n in (1, 2, 3):
        clock.section(f"phase {n}", list(range(n, 4)))
        summaries.append(launch_phase(n, Path(args.configs) / f"phase{n}.yaml", out, args.backbone))
        clock.learn(n, summaries[-1], out / f"phase{n}")

    clock.section(f"evaluation ({precision.name})")
    model = out / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(out / "phase3", model, ignore=shutil.ignore_patterns("checkpoints", "logs", ".publish-tmp"))
    dev, test = str(SAMPLE / "sts-dev.csv"), str(SAMPLE / "sts-test.csv")
    wikiqa_dir = SHARED / "wikiqa" / "test"
    began = time.time()
    final = evaluate_model(str(model), [dev, test], str(wikiqa_dir) if wikiqa_dir.is_dir() else None,
                           geometry_sts=dev, precision=precision.precision, sample=SAMPLE)
    raw = evaluate_model(f"raw:{args.backbone}", [dev, test], precision=precision.precision)
    minilm = evaluate_model("minilm", [test], precision=precision.precision)["stsb_test_spearman"]
    print(f"final model, raw 270M and MiniLM evaluated in {time.time() - began:.0f} s", flush=True)
    stages = {
        "raw": raw,
        "phase1": {"stsb_dev_spearman": summaries[0]["sts_after"]},
        "phase2": {"stsb_dev_spearman": summaries[1]["sts_after"]},
        "final": final,
    }
    train_seconds = sum(s["train_seconds"] for s in summaries)
    metrics = {
        "raw_stsb_test_spearman": stages["raw"]["stsb_test_spearman"],
        "raw_stsb_dev_spearman": stages["raw"]["stsb_dev_spearman"],
        "start_stsb_dev_spearman": summaries[0]["sts_before"],
        "phase1_stsb_dev": summaries[0]["sts_after"],
        "phase2_stsb_dev": summaries[1]["sts_after"],
        "phase3_stsb_dev": summaries[2]["sts_after"],
        "stsb_dev_spearman": final["stsb_dev_spearman"],
        "stsb_test_spearman": final["stsb_test_spearman"],
        "train_seconds": train_seconds,
        "hardware": f"{precision.cpu or 'CPU'}, {os.cpu_count()} cores, {precision.name}",
        "precision": precision.to_dict(),
        "stages": stages,
        "baselines": {"all-MiniLM-L6-v2, STS-B test": minilm},
        "notes": [
            "raw: the Gemma 3 270M backbone as pretrained (causal attention), hidden states mean-pooled, no head.",
            f"Training started from STS-B dev {summaries[0]['sts_before']:.2f}: the configured attention mode "
            "with a freshly initialised head.",
            "Phase columns use the training loop's evaluation (on the configs' eval_max_pairs); the final column is "
            f"the published folder loaded by sentence-transformers; all in {precision.line()}.",
        ],
    }
    metrics["wall_seconds_before_card"] = time.time() - clock.t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    clock.section("model card and plots", extra_eval_texts=0)
    print(write_card(model, [out / f"phase{n}" for n in (1, 2, 3)], metrics, args.repo_id,
                     "bash scripts/demo.sh", DATASETS, SOURCES, LIMITATIONS))
    for png in plot_run(out, [out / f"phase{n}" for n in (1, 2, 3)]):
        print(png)

    clock.section("summary", extra_eval_texts=0)
    rows = [("raw 270M (causal, mean-pooled)", stages["raw"]["stsb_dev_spearman"], stages["raw"]["stsb_test_spearman"]),
            ("start (config attention, new head)", summaries[0]["sts_before"], None),
            ("after phase 1", summaries[0]["sts_after"], None),
            ("after phase 2", summaries[1]["sts_after"], None),
            ("after phase 3 (published)", final["stsb_dev_spearman"], final["stsb_test_spearman"]),
            ("all-MiniLM-L6-v2 (reference)", None, minilm)]
    print(f"{'model':<38}{'STS-B dev':>10}{'STS-B test':>11}")
    for name, dev, test in rows:
        print(f"{name:<38}{'' if dev is None else f'{dev:.2f}':>10}{'' if test is None else f'{test:.2f}':>11}")
    print(f"training {train_seconds:.0f} s; whole run {time.time() - clock.t0:.0f} s; {precision.line()}; model at "
          f"{model}")

    clock.section("examples against the new model", extra_eval_texts=0)
    subprocess.run([sys.executable, str(REPO / "examples/encode.py"), "--model", str(model)], check=True)
    subprocess.run([sys.executable, str(REPO / "examples/fan_out.py"), "--model", str(model), "--bank_size", "2000",
                    "--query", "best running shoes for flat feet", "--png", str(out / "fan_out.png"),
                    "--document", "Stability shoes with firm arch support help runners whose feet roll inward."],
                   check=True)
    print(f"\n== [{(time.time() - clock.t0) / 60:.1f} min] done", flush=True)
    return metrics


if __name__ == "__main__":
    main()
