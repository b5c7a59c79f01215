"""What the word loss buys and costs: phases 2 and 3 of a recipe trained again from the same phase-1 model at each
word_loss_weight (the same steps, data and seed), each result evaluated beside reference encoders on the same
held-out sets.

    python benchmarks/word_weight.py --start runs/demo/phase1 --weights 0.1,0.3,1 --reference 0=runs/demo/model \
        --reference minilm --out runs/word_weight
    python benchmarks/word_weight.py --start runs/demo/phase1 --weights "" \
        --variant "mrl matryoshka_dims=256,128,64 word_loss_weight=0" --variant "neither matryoshka_dims=256 word_loss_weight=0"

Each model takes every setting the recipe's configs have (the demo's train with matryoshka_dims 256,128,64 and
word_loss_weight 0.1) except those it names. For every weight (and every --variant: a name, then FIELD=VALUE
settings): `accelerate launch train/phase2.py`
and `train/phase3.py` with the recipe's configs (--configs, the demo's by default), `--word_loss_weight W` (the
variant's settings) and their own output folders (a killed run resumes where it stopped; a finished one is kept). Every model (the trained ones and each --reference: a folder, `minilm`,
`raw:BACKBONE`; `W=FOLDER` names a folder trained at weight W elsewhere, the demo's own model at 0 say) is then
evaluated by gemma_embed.eval.run.evaluate_model: STS-B test, the word-set probe, and the decoder-free inversion
(--invert sets, --n queries each, from the nearest bundled queries by encoder-judged edits), at every --dims size.
Results go to OUT/results.json (each model's kept there, so a rerun evaluates only what is new) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREC_MQ = REPO.parent / "shared/data/web_queries_anserini/all_real_queries_dedup.tsv"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def train(name: str, settings: list[str], start: str, configs: Path, out: Path) -> Path:
    """Phases 2 and 3 with `settings` (FIELD=VALUE) from the phase-1 folder `start`; the published phase-3
    folder."""
    from gemma_embed.runtime import launch_command

    previous = start
    for phase in (2, 3):
        folder = out / name / f"phase{phase}"
        if not (folder / "config.json").is_file():
            resume = ["--resume"] if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir()) else []
            command = launch_command(REPO / f"train/phase{phase}.py", "--config", str(configs / f"phase{phase}.yaml"),
                                     "--init_from", previous, "--output_dir", str(folder),
                                     *[a for s in settings for a in ("--" + s.partition("=")[0], s.partition("=")[2])],
                                     *resume)
            print("$ " + " ".join(command), flush=True)
            subprocess.run(command, check=True, cwd=REPO)
        previous = str(folder)
    return Path(previous)


def main(argv=None) -> dict:
    from gemma_embed.eval.inversion import bank_without, heldout_sets
    from gemma_embed.eval.metrics import label
    from gemma_embed.eval.run import Tasks, evaluate_model
    from gemma_embed.precision import resolve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", required=True, help="the phase-1 folder phases 2 and 3 start from")
    ap.add_argument("--weights", default="0.1,0.3,1", help="word_loss_weight values to train (comma-separated)")
    ap.add_argument("--configs", default=str(REPO / "train/configs/demo"), help="phase2.yaml and phase3.yaml")
    ap.add_argument("--variant", action="append", default=[], help='"NAME FIELD=VALUE ...": phases 2 and 3 so set')
    ap.add_argument("--reference", action="append", default=[], help="minilm, raw:BACKBONE, FOLDER or W=FOLDER")
    ap.add_argument("--invert", action="append", default=[],
                    help="held-out query sets (default: the demo's held-out split and TREC Million Query topics)")
    ap.add_argument("--n", type=int, default=30, help="held-out queries per set")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of edits")
    ap.add_argument("--dims", default="", help="also at these prefix sizes, e.g. 128,64")
    ap.add_argument("--out", default=str(REPO / "runs/word_weight"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    decision = resolve("auto", "cpu")
    print(decision.line(), flush=True)

    models = {}
    for ref in args.reference:
        weight, named, folder = ref.partition("=")
        models[f"w{weight} ({Path(folder).parent.name}/{Path(folder).name})" if named else ref] = folder if named else ref
    variants = [(f"w{w}", [f"word_loss_weight={w}"]) for w in filter(None, args.weights.split(","))]
    variants += [(v.split()[0], v.split()[1:]) for v in args.variant]
    for name, settings in variants:
        models[name] = str(train(name, settings, args.start, Path(args.configs), out))

    specs = args.invert or [str(REPO / "runs/demo/heldout_queries.tsv"),
                            f"{TREC_MQ}@trec-mq-2007,trec-mq-2008,trec-mq-2009"]
    sets = heldout_sets([s for s in specs if Path(s.partition("@")[0]).is_file()], args.n)
    bank = bank_without(REPO / "examples/data/queries.tsv", (q for texts in sets.values() for q in texts))
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for name, spec in models.items():
        if name not in results:
            print(f"== evaluating {name}", flush=True)
            tasks = Tasks((str(REPO / "examples/data/sts-test.csv"),), probe=True, sample=REPO / "examples/data",
                          invert=sets, invert_bank=bank, invert_rounds=args.rounds)
            results[name] = {"model": spec, **evaluate_model(
                spec, tasks, dims=tuple(int(d) for d in args.dims.split(",") if d))}
            results[name]["precision"] = decision.name
            results[name]["cpu"] = decision.cpu
            path.write_text(json.dumps(results, indent=2) + "\n")
    keys = [k for k in next(iter(results.values())) if k not in ("model", "precision", "cpu")]
    print(f"{'metric':<60}" + "".join(f"{n[:24]:>26}" for n in results))
    for k in keys:
        print(f"{label(k)[:60]:<60}" + "".join(f"{r.get(k, float('nan')):>26.2f}" for r in results.values()))
    print(f"(CPU {decision.cpu}, {decision.name}; held-out sets: {', '.join(f'{k} ({len(v)})' for k, v in sets.items())})")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
