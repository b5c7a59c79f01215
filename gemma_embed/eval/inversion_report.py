"""The decoder evaluation's report (gemma_embed/eval/inversion.py's): its rows, printed as a table, and written into
the decoder's folder for its card."""

from __future__ import annotations

import json
from pathlib import Path


def result_rows(result: dict) -> list[tuple[str, dict]]:
    """A held-out set's rows, as every report prints them: each decoding mode, then each reported round of
    correction."""
    rows = list(result["modes"].items())
    for r, metrics in (result.get("correction") or {}).get("rounds", {}).items():
        rows.append((f"corrected, round {r}" + (" (the decoder alone)" if r == "0" else ""), metrics))
    return rows


def print_report(report: dict) -> None:
    """Each held-out set's table: decoding modes and rounds, with standard errors, cost, fluency and examples."""
    from gemma_embed.eval.metrics import label

    keys = ("exact_match", "token_f1", "bleu", "roundtrip_cosine")

    def cell(m: dict, k: str) -> str:
        if k == "roundtrip_cosine":
            return f"{m[k]:>18.3f}"
        se = m.get(f"{k}_se")
        return f"{m[k]:>18.2f}" if se is None else f"{m[k]:>11.2f} ±{se:>5.2f}"

    def row(name: str, m: dict) -> str:
        return f"{name:<44}" + "".join(cell(m, k) for k in keys)

    for name, result in report["sets"].items():
        floor = "n/a (one query)" if result["floor_cosine"] is None else f"{result['floor_cosine']:.3f}"
        gap = result.get("conditioning", {}).get("gap")
        gap = "" if gap is None else (f"; conditioning gap {gap:.3f} nats/token (teacher-forced loss "
                                      f"{result['conditioning']['loss_own']:.3f} with each query's own vector, "
                                      f"{result['conditioning']['loss_shuffled']:.3f} with another's)")
        print(f"\n{name}: {result['queries']} queries, encoder {report['encoder']}, floor cosine {floor}{gap}")
        print(f"{'decoding':<44}" + "".join(f"{label(k):>18}" for k in keys))
        for mode, m in result_rows(result):
            print(row(mode, m))
        if "correction" in result:
            c = result["correction"]
            print(f"correction{' with the trained corrector ' + c['trained'] if c.get('trained') else ''}: "
                  f"{c['seconds_per_query']:.2f} s and {c['encodes_per_query']:.0f} encodes per query "
                  f"({c['cpu'] or 'CPU'}, {c['precision']}; beam {c['settings']['beam']}, "
                  f"{c['settings']['neighbours']} neighbours from a bank of {report.get('pool', 0):,} queries)")
        if "fluency" in result:
            f = result["fluency"]
            print(f"fluency (mean NLL per token under {f['lm']}; share above the real queries' 90th percentile, "
                  f"{f['limit']:.2f}): real {f['real_mean_nll']:.2f}, " + ", ".join(
                      f"{k} {f[k]['mean_nll']:.2f} ({f[k]['above_limit']:.1f} ± {f[k]['above_limit_se']:.1f}%)"
                      for k in ("greedy", "corrected") if k in f))
        for e in result["examples"]:
            print(f"  {e['query']!r:<40} -> greedy {e['greedy']!r}; re-ranked {e['reranked']!r}"
                  + (f"; nearest {e['nearest']!r}" if "nearest" in e else "")
                  + (f"; corrected {e['corrected']!r} ({e['corrected_cosine']:.3f})" if "corrected" in e else ""))


def write_report(report: dict, folder: str | Path) -> Path:
    """decoder_eval.json in the decoder's folder (its card reads it: rewrite the card after this)."""
    path = Path(folder) / "decoder_eval.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
