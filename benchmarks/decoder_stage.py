"""The demo's decoder stage alone, timed: train/demo.py's `decoder_stage` (training, the evaluation with its
correction, the fan-out) on a copy of a finished demo's encoder and query split, with the budget of the precision
this machine resolves to. The pool's vectors, which the demo's evaluation caches before the stage, are copied from
the finished demo's cache before the clock starts.

    python benchmarks/decoder_stage.py                       # from runs/demo, into runs/decoder_stage
    python benchmarks/decoder_stage.py --avx2                # as on an AVX2-only CPU, emulated (below)

`--avx2` runs the stage as an AVX2-only CPU would: torch's own kernels capped at AVX2 (ATEN_CPU_CAPABILITY=avx2),
oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA), MKL asked for AVX2 (MKL_ENABLE_INSTRUCTIONS; on AMD processors MKL's
float32 GEMMs take its AVX2 path anyway), and `auto` resolved to float32 (GEMMA_EMBED_PRECISION=no), as it is on such
a CPU. It emulates the instruction set, not the processor: a real AVX2-only machine with a slower core or less
memory bandwidth takes longer. The last line:
stage_seconds=... train_seconds=... precision=... cpu=... avx2_emulated=...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: train/demo.py
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "GEMMA_EMBED_PRECISION": "no"}
COPIED = ("model", "queries.db", "heldout_queries.tsv")  # what the stage reads of a finished demo


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default=str(REPO / "runs/demo"), help="a finished demo run: its model/, queries.db and "
                    "heldout_queries.tsv are copied")
    ap.add_argument("--out", default=str(REPO / "runs/decoder_stage"))
    ap.add_argument("--configs", default=str(REPO / "train/configs/demo"))
    ap.add_argument("--avx2", action="store_true", help="emulate an AVX2-only CPU (float32, AVX2 kernels)")
    args = ap.parse_args(argv)
    if args.avx2 and any(os.environ.get(k) != v for k, v in AVX2.items()):
        # the kernels are chosen when torch loads: start again with the caps set
        os.execve(sys.executable, [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)],
                  {**os.environ, **AVX2})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    sys.path.insert(0, str(REPO / "train"))  # train/demo.py: a script, not a package
    import demo

    from gemma_embed.data.query_files import read_queries
    from gemma_embed.encoder import cached_vectors
    from gemma_embed.eval.inversion import bank_without
    from gemma_embed.precision import resolve

    src, out = Path(args.demo), Path(args.out)
    for name in COPIED:
        if not (src / name).exists():
            sys.exit(f"{src / name}: missing; run bash scripts/demo.sh first (or pass --demo)")
    if out.exists():  # a fresh stage: nothing trained, nothing encoded
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in COPIED:
        (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, out / name)

    precision = resolve("auto", "cpu")
    # the pool's vectors, as the demo's evaluation leaves them in its vector cache (its bank inversion's): read from
    # the finished demo's cache (encoded there first if it lacks them), before the clock starts
    bank = bank_without(demo.SAMPLE / "queries.tsv", read_queries(out / "heldout_queries.tsv"))
    cached_vectors(str(src / "model"), bank, src / "vector_cache", precision=precision)
    shutil.copytree(src / "vector_cache", out / "vector_cache")  # the same weights: the same keys
    began = time.time()
    result = demo.decoder_stage(Path(args.configs) / "decoder.yaml", out, out / "model", out / "heldout_queries.tsv",
                                precision, demo.BUDGETS[precision.precision], bank)
    seconds = time.time() - began
    figures = {"stage_seconds": round(seconds, 1), "train_seconds": result["summary"]["train_seconds"],
               "precision": precision.name, "cpu": precision.cpu, "avx2_emulated": bool(args.avx2),
               "budget": result["budget"], "fan_out": result["fan_out"]["metrics"],
               "correction": {name: {k: r["correction"][k] for k in ("seconds_per_query", "encodes_per_query")}
                              for name, r in result["eval"]["sets"].items() if r.get("correction")}}
    (out / "stage.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"decoder stage: {seconds / 60:.2f} min ({precision.cpu}, {precision.name}"
          f"{', AVX2 emulated' if args.avx2 else ''})")
    print(f"stage_seconds={seconds:.1f} train_seconds={figures['train_seconds']:.1f} precision={precision.precision} "
          f"cpu={precision.cpu.replace(' ', '_')} avx2_emulated={int(args.avx2)}")
    return figures


if __name__ == "__main__":
    main()
