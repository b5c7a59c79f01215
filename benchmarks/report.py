"""The results in docs/results.md, generated from what runs wrote: the embedded default's runs/demo/metrics.json
(beside runs/demo_w0 and runs/long, train/demo.py's other runs, when they are there), every encoder comparison of
benchmarks/word_weight.py (runs/**/results.json), and every query decoder measured by
benchmarks/decoder_compare.py (runs/**/compare.json), with the CPU model, the precision and the date beside each.

    python benchmarks/report.py --collect runs   # copy runs/' records into docs/records, then write every page
    python benchmarks/report.py                  # every page again from docs/records (what a clean clone has)
    python benchmarks/report.py --out -          # print the results page

Every page is generated from docs/records/ (benchmarks/records.py): docs/results.md, docs/inversion.md,
docs/reformulations.md and the README's blocks between `<!-- report.py: NAME -->` and `<!-- /report.py -->`.

A decoder's row names what its training changed against the embedded default's decoder recipe
(train/configs/demo/decoder.yaml), read from the train_config.yaml it was trained with.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from records import DEMO_RUNS, RECORDS, collect, date_of, decoder_folder  # noqa: E402

RECIPE = REPO / "train/configs/demo/decoder.yaml"
PATHS = {"output_dir", "data", "heldout", "encoder", "init_from", "vectors", "store", "phase"}  # not recipe changes


def number(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def recipe_change(config: dict, recipe: dict) -> str:
    """The fields of a decoder's training config that differ from the recipe's (paths aside), as `field: value`."""
    changes = []
    for key, value in config.items():
        if key in PATHS:
            continue
        if key == "model":
            base = recipe.get("model", {})
            changes += [f"{k}: {v}" for k, v in value.items() if base.get(k) != v]
        elif recipe.get(key) != value:
            changes.append(f"{key}: {value}")
    return ", ".join(changes) or "the recipe"


def last_round(correction: dict | None) -> tuple[str | None, dict]:
    """A correction's last round: its number and its metrics (None and {} where it has no rounds)."""
    rounds = (correction or {}).get("rounds", {})
    last = max(rounds, key=int) if rounds else None
    return last, rounds.get(last, {})


def decoder_summary(metrics: dict) -> dict:
    """A demo run's query decoder in a few figures per held-out set: greedy and corrected (last round) token F1
    and round-trip cosine, the floor, the conditioning gap."""
    out = {}
    for name, s in metrics.get("decoder", {}).get("sets", {}).items():
        _, last = last_round(s.get("correction"))
        out.update({f"decoder, {name}: greedy token F1": s["modes"]["greedy"]["token_f1"],
                    f"decoder, {name}: greedy round-trip cosine": s["modes"]["greedy"]["roundtrip_cosine"],
                    f"decoder, {name}: corrected token F1": last.get("token_f1"),
                    f"decoder, {name}: corrected round-trip cosine": last.get("roundtrip_cosine"),
                    f"decoder, {name}: floor cosine": s.get("floor_cosine"),
                    f"decoder, {name}: conditioning gap": s.get("conditioning", {}).get("gap")})
    return out


def demo_runs(runs: Path) -> list[str]:
    """The final model of every train/demo.py run in DEMO_RUNS, one column each: every metric of its evaluation,
    the references measured beside it, the training time, the processor and the precision."""
    from gemma_embed.eval.metrics import label

    from gemma_embed.eval.metrics import upgrade

    found = {name: upgrade(json.loads((runs / name / "metrics.json").read_text())) for name in DEMO_RUNS
             if (runs / name / "metrics.json").is_file()}
    if len(found) < 2:
        return []
    metrics = [{**m.get("stages", {}).get("final", {}), **m.get("baselines", {}), **decoder_summary(m)}
               for m in found.values()]
    lines = ["## train/demo.py runs side by side", "",
             *[f"- `{name}`: {DEMO_RUNS[name]}; {date_of(runs / name / 'metrics.json')}" for name in found], "",
             "| metric | " + " | ".join(found) + " |", "|---" * (len(found) + 1) + "|"]
    for k in dict.fromkeys(k for m in metrics for k in m):
        lines.append(f"| {label(k)} | " + " | ".join(number(m.get(k)) for m in metrics) + " |")
    lines.append("| encoder training, s | " + " | ".join(number(m.get("train_seconds"), 0) for m in found.values()) + " |")
    lines.append("| CPU, precision | " + " | ".join(m.get("hardware", "") for m in found.values()) + " |")
    return lines + [""]


def embedded_default(metrics_path: Path) -> list[str]:
    from gemma_embed.eval.metrics import upgrade

    m = upgrade(json.loads(metrics_path.read_text()))
    stages = m.get("stages", {})
    lines = ["## The embedded default (`bash scripts/demo.sh`)", "",
             f"{m.get('hardware', '')}; {date_of(metrics_path)}; from `runs/demo/metrics.json`.", "",
             "| stage | STS-B dev | STS-B test |", "|---|---|---|"]
    for name, stage in stages.items():
        lines.append(f"| {name} | {number(stage.get('stsb_dev_spearman_cosine'))} | {number(stage.get('stsb_test_spearman_cosine'))} |")
    for name, value in m.get("baselines", {}).items():
        lines.append(f"| {name} (reference) | | {number(value)} |")
    final = stages.get("final", {})
    from gemma_embed.eval.metrics import label

    extra = [f"- {label(k)}: {number(v)}" for k, v in final.items()
             if k not in ("stsb_test_spearman_cosine", "stsb_dev_spearman_cosine")]
    if extra:
        lines += ["", "The final model:", ""] + extra + [""]
    if "train_seconds" in m:
        lines += [f"Encoder training {m['train_seconds']:.0f} s."]
    if "decoder" in m:
        lines += ["", "The query decoder on held-out queries:", ""] + decoder_sets(m["decoder"]["sets"])
    return lines


def decoder_sets(sets: dict) -> list[str]:
    lines = ["| set | decoding | exact match | token F1 | BLEU | round-trip cosine | floor | conditioning gap |",
             "|---|---|---|---|---|---|---|---|"]
    for name, result in sets.items():
        gap = (result.get("conditioning") or {}).get("gap")
        rows = [(mode, metrics) for mode, metrics in result["modes"].items()]
        rounds = (result.get("correction") or {}).get("rounds", {})
        rows += [(f"corrected, round {r}", metrics) for r, metrics in rounds.items() if r != "0"]
        for mode, mm in rows:
            lines.append(f"| {name} | {mode} | {number(mm['exact_match'])} | {number(mm['token_f1'])} | "
                         f"{number(mm['bleu'])} | {number(mm['roundtrip_cosine'], 3)} | "
                         f"{number(result['floor_cosine'], 3)} | {number(gap, 3)} |")
    return lines


def decoder_runs(runs: Path, recipe: dict) -> list[str]:
    lines = ["## Query decoders (`benchmarks/decoder_compare.py`)", "",
             "Each row: one decoder, evaluated on the bundled held-out split (greedy decoding; corrected: 10 rounds of "
             "`gemma_embed.corrector` where the run asked for them). Gap: the conditioning gap in nats per token. "
             "Cosines compare only within one encoder's space: the floor is that space's cosine between random "
             "held-out queries.", "",
             "| run | encoder | change against the demo's recipe | steps | rows | gap | greedy F1 | greedy cos | "
             "nearest cos | corrected F1 | corrected cos | floor cos | s/step | CPU, precision | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(runs.rglob("compare.json")):
        for spec, report in json.loads(path.read_text()).items():
            folder = decoder_folder(runs, report.get("decoder", ""))
            config_path = folder / "train_config.yaml"
            config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
            summary_path = folder / "train_summary.json"
            rows = json.loads(summary_path.read_text())["rows"] if summary_path.is_file() else None
            name, result = next(iter(report["sets"].items()))
            greedy, nearest = result["modes"]["greedy"], result["modes"].get("nearest existing query (training pool)", {})
            rounds = (result.get("correction") or {}).get("rounds", {})
            last = rounds[max(rounds, key=int)] if len(rounds) > 1 else {}
            precision = report.get("precision", {})
            lines.append(
                f"| {path.parent.relative_to(runs)} | {spec} | {recipe_change(config, recipe)} | {report.get('steps')} | "
                f"{rows if rows is None else f'{rows:,}'} | {number((result.get('conditioning') or {}).get('gap'), 3)} | "
                f"{number(greedy['token_f1'])} | {number(greedy['roundtrip_cosine'], 3)} | "
                f"{number(nearest.get('roundtrip_cosine'), 3)} | {number(last.get('token_f1'))} | "
                f"{number(last.get('roundtrip_cosine'), 3)} | {number(result['floor_cosine'], 3)} | "
                f"{number(report.get('seconds_per_step'))} | "
                f"{precision.get('cpu', '')}, {precision.get('name', '')} | {date_of(path)} |")
    return lines


def encoder_comparisons(runs: Path) -> list[str]:
    """Every benchmarks/word_weight.py run (runs/**/word_weight*/results.json): one column per model."""
    from gemma_embed.eval.metrics import label, upgrade

    lines = []
    for path in sorted(runs.rglob("results.json")):
        results = upgrade(json.loads(path.read_text()))
        if not results or not all("model" in r for r in results.values()):
            continue
        first = next(iter(results.values()))
        keys = [k for k in first if k not in ("model", "precision", "cpu") and isinstance(first[k], (int, float))]
        keys = [k for k in keys if not k.startswith("invert_") or "token_f1" in k or "roundtrip_cosine_corrected" in k]
        lines += [f"## Encoders compared (`benchmarks/word_weight.py`, {path.parent.relative_to(runs)})", "",
                  f"{first.get('cpu', '')}, {first.get('precision', '')}; {date_of(path)}. Columns: the models; "
                  "`wW`: phases 2 and 3 trained again from the same phase-1 model with word_loss_weight W.", "",
                  "| metric | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
        lines += [f"| {label(k)} | " + " | ".join(number(r.get(k)) for r in results.values()) + " |" for k in keys]
        lines.append("")
    return lines


def render(runs: Path) -> str:
    from dataclasses import asdict

    from gemma_embed.config import DecoderConfig, load_config

    recipe = asdict(load_config(DecoderConfig, ["--config", str(RECIPE)])[0])  # its defaults filled in
    parts = ["# Results", "", "Generated by `python benchmarks/report.py` from the runs' own records; do not edit by "
             "hand. How each recipe was chosen: docs/embedded_default.md and docs/decoder_recipes.md.", ""]
    if (runs / "demo/metrics.json").is_file():
        parts += embedded_default(runs / "demo/metrics.json") + [""]
    parts += demo_runs(runs)
    parts += encoder_comparisons(runs)
    parts += decoder_runs(runs, recipe)
    return "\n".join(parts) + "\n"


def reformulation_runs(runs: Path) -> str:
    """docs/reformulations.md: every bulk fan-out run under `runs` (train/fan_out.py's summary.json, a --repick's
    too), one table row each, grouped by what was fanned out."""
    from gemma_embed.recipes import FLUENCY_WEIGHTS
    from gemma_embed.reformulate import TABLE_HEAD, table_row

    parts = ["# Reformulations", "", "Generated by `python benchmarks/report.py` from the summary.json of every run of "
             "`train/fan_out.py` under runs/; do not edit by hand. Columns: the mean NLL per token under the raw Gemma "
             "3 270M, and the share of steps above the 90th percentile of the seed queries' own NLL (real queries "
             "score 10% by definition); the mean cosine of a step's query to its point; the share of distinct steps "
             "closer to the document than the seed query; the target document's mean rank among the run's documents "
             "at the seed and at the last step, and the share of pairs whose last step ranks it better than the seed; "
             "the share of distinct strings along a path, distinct-2 and self-BLEU within a path; the share not among "
             "the decoder's training queries; the share the keep rule keeps; reformulations per second (the run's "
             "whole decoding, judging and writing, loading excluded). ± is one standard error over pairs. The mode "
             "column gives the fluency weight of the final pick where it is not 0.", ""]
    groups: dict[str, list[str]] = {}
    for path in sorted(runs.glob("**/summary.json")):
        summary = json.loads(path.read_text())
        if "recipe" not in summary or "rank_by_step" not in summary:
            continue
        run = path.parent if (path.parent / "run.json").is_file() else path.parent.parent
        settings = json.loads((run / "run.json").read_text())
        recipe = summary["recipe"]
        key = (f"{'/'.join(Path(settings['pairs']).parts[-2:])}, {summary['pairs']} pairs x {recipe['steps']} steps, "
               f"{summary.get('cpu') or 'CPU'}, {summary.get('precision')}")
        weight = FLUENCY_WEIGHTS[recipe["mode"]] if recipe["fluency_weight"] is None else recipe["fluency_weight"]
        corrector = settings.get("corrector") or {}
        rounds = corrector.get("rounds", settings.get("rounds"))
        name = recipe["mode"] + (f", rounds {rounds}" if recipe["mode"] == "correct" else "") + (
            ", trained corrector" if settings.get("corrector_model") else
            ", decoder-written candidates only" if corrector.get("word_edits") == 0 else "") + (
            f", fluency {weight:g}" if weight else "")
        groups.setdefault(key, []).append(
            f"{table_row(name, summary, summary.get('reformulations_per_second'))} {path.parent.relative_to(runs)} "
            f"({date_of(path)}) |")
    for key, rows in groups.items():
        head, rule = TABLE_HEAD.split("\n")
        parts += [f"## {key}", "", head + " run |", rule + "---|", *rows, ""]
    return "\n".join(parts)


def inversion_label(report: dict) -> str:
    """What a train/evaluate.py --decoder report's correction was: the trained corrector or the training-free one,
    and its beam."""
    first = next(iter(report["sets"].values()))
    c = first.get("correction") or {}
    s = c.get("settings") or {}
    if c.get("trained"):
        return (f"trained corrector, {s['generated']} rewrite(s) per hypothesis"
                f"{' (beam search)' if s['generated'] > 1 else ' (greedy)'}, beam of {s['beam']}")
    return f"training-free corrector (word edits judged by the encoder), beam of {s.get('beam')}"


def inversion_runs(runs: Path) -> str:
    """docs/inversion.md: the round table of every `train/evaluate.py --decoder ... --json` report under
    runs/inversion/, each held-out set's rows with standard errors, then a few examples side by side."""
    parts = ["# Inversion: the round table", "", "Generated by `python benchmarks/report.py` from the reports "
             "`train/evaluate.py --decoder ... --json runs/inversion/NAME.json` wrote; do not edit by hand. Exact "
             "match and token F1 x 100 with one standard error over queries; BLEU is sacrebleu's corpus BLEU; "
             "cosine is the encoder's between the written query and the target. Round 0 is the decoder's greedy "
             "query; from round 1 the correction also judges the decoder's 8 sampled queries. Seconds per query "
             "include the decoder's greedy and sampled decoding.", ""]
    folder = runs / "inversion"
    reports = {path.relative_to(folder).with_suffix("").as_posix(): json.loads(path.read_text())
               for path in sorted(folder.rglob("*.json"))}
    reports = {k: r for k, r in reports.items() if "sets" in r}
    head = "| correction | round | exact match | token F1 | BLEU | cosine |"
    for set_name in dict.fromkeys(n for r in reports.values() for n in r["sets"]):
        lines, examples = [], {}
        for name, report in reports.items():
            result = report["sets"].get(set_name)
            if not result or "correction" not in result:
                continue
            c = result["correction"]
            lines.append(f"**{inversion_label(report)}** (`{report['command']}`; {result['queries']} queries, "
                         f"{c['seconds_per_query']:.2f} s a query on {c['cpu'] or 'a CPU'}, {c['precision']}; "
                         f"{name}.json, {date_of(folder / (name + '.json'))})")
            lines += ["", head, "|---|---|---|---|---|---|"]
            for r, m in c["rounds"].items():
                lines.append(f"| {'decoder, greedy' if r == '0' else 'corrected'} | {r} | "
                             f"{number(m['exact_match'], 1)} ± {number(m.get('exact_match_se'), 1)} | "
                             f"{number(m['token_f1'], 1)} ± {number(m.get('token_f1_se'), 1)} | "
                             f"{number(m['bleu'], 1)} | {number(m['roundtrip_cosine'], 3)} |")
            f = result.get("fluency")
            if f:
                lines += ["", f"Fluency (mean NLL per token under {f['lm']}; the share above the held-out queries' "
                              f"90th percentile, {f['limit']:.2f}): real queries {f['real_mean_nll']:.2f}; " +
                          "; ".join(f"{k} {f[k]['mean_nll']:.2f}, {f[k]['above_limit']:.1f} ± "
                                    f"{f[k]['above_limit_se']:.1f}%" for k in ("greedy", "corrected") if k in f)]
            lines.append("")
            examples.setdefault(inversion_label(report), result["examples"])
        if not lines:
            continue
        parts += [f"## {set_name}", "", *lines]
        shown = [e for e in examples.values()]
        if shown and all(len(e) == len(shown[0]) and [x["query"] for x in e] == [x["query"] for x in shown[0]]
                         for e in shown):
            labels = list(examples)
            parts += ["Examples (the first queries of the set):", "",
                      "| query | decoder, greedy | " + " | ".join(labels) + " |",
                      "|---" * (2 + len(labels)) + "|"]
            for i, first in enumerate(shown[0]):
                cells = [f"{e[i]['corrected']} ({e[i]['corrected_cosine']:.3f})" for e in shown]
                parts.append(f"| {first['query']} | {first['greedy']} | " + " | ".join(cells) + " |")
            parts.append("")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------- the README
README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- report\.py: (\w+) -->\n)(.*?)(<!-- /report\.py -->)", re.S)
TREC = "trec"  # the keyword-query set's name holds this
README_INVERSION = {  # runs/inversion records shown in the README, where present: record -> what it is
    "training_free": "demo's decoder, training-free corrector",
    "trained_beam": "demo's decoder, trained corrector",
    "long/training_free": "longer decoder run, training-free corrector",
    "long/trained_beam": "longer decoder run, its trained corrector",
}


def _set(sets: dict, keyword: bool) -> tuple[str, dict] | tuple[None, None]:
    """The bundled held-out set (keyword=False) or the TREC keyword set of a report's sets."""
    return next(((n, r) for n, r in sets.items() if (TREC in n) == keyword), (None, None))


def encoder_block(runs: Path, m: dict) -> list[str]:
    final, raw = m["stages"]["final"], m["stages"]["raw"]
    reference = m["baselines"].get("all-MiniLM-L6-v2, STS-B test, Spearman")
    test = "stsb_test_spearman_cosine"
    return [f"The embedded default: one run of `bash scripts/demo.sh` ({m['hardware']}; "
            f"{date_of(runs / 'demo/metrics.json')}), encoder training {m['train_seconds'] / 60:.0f} minutes, the query "
            f"decoder's training {m['decoder']['train_seconds'] / 60:.0f}.", "",
            "| model | STS-B test (Spearman) | at 128 dims | at 64 dims |", "|---|---|---|---|",
            f"| raw Gemma 3 270M, mean-pooled | {number(raw[test])} | | |",
            f"| **Gemma-Embed, embedded default** | **{number(final[test])}** | {number(final.get(test + '@128'))} | "
            f"{number(final.get(test + '@64'))} |",
            f"| all-MiniLM-L6-v2 (reference) | {number(reference)} | | |"]


def decoder_block(m: dict) -> list[str]:
    decoder = m["decoder"]
    name, s = _set(decoder["sets"], keyword=False)
    c = s["correction"]
    last, corrected = last_round(c)
    rows = [("greedy", s["modes"]["greedy"]),
            ("re-ranked (8 samples and greedy, by the encoder)", s["modes"]["re-ranked (8 sampled + greedy)"]),
            ("nearest query of the training pool (a lookup)", s["modes"]["nearest existing query (training pool)"]),
            (f"corrected, {last} rounds", corrected)]
    lines = [f"Its query decoder (`train/configs/demo/decoder.yaml`: {decoder['budget']['max_steps']} steps) on the "
             f"encoder's vectors, {decoder['budget']['heldout']} held-out queries no training run saw ({name}), "
             f"{last} rounds of correction by the encoder ({c['seconds_per_query']:.2f} s a query, {c['cpu']}, "
             f"{c['precision']}):", "",
             "| decoding | exact match | token F1 | round-trip cosine |", "|---|---|---|---|"]
    lines += [f"| {label} | {number(r['exact_match'], 1)} | {number(r['token_f1'], 1)} | "
              f"{number(r['roundtrip_cosine'], 3)} |" for label, r in rows]
    lines += ["", f"The conditioning gap (how much the decoder uses its vector) is {s['conditioning']['gap']:.2f} nats "
                  "per token."]
    _, k = _set(decoder["sets"], keyword=True)
    if k:
        _, kept = last_round(k["correction"])
        greedy, lookup = k["modes"]["greedy"], k["modes"]["nearest existing query (training pool)"]
        lines[-1] += (f" On TREC Million Query keyword queries the same decoder reaches token F1 "
                      f"{greedy['token_f1']:.1f} greedy and {kept['token_f1']:.1f} corrected (cosine "
                      f"{greedy['roundtrip_cosine']:.3f} and {kept['roundtrip_cosine']:.3f}, "
                      f"{k['correction']['seconds_per_query']:.2f} s a query; the lookup {lookup['token_f1']:.1f} and "
                      f"{lookup['roundtrip_cosine']:.3f}).")
    return lines


def _fluency(path: Path, keyword: bool) -> dict | None:
    """The fluency a separate record (runs/inversion/fluency/NAME.json) measured for the same correction."""
    if not path.is_file():
        return None
    return (_set(json.loads(path.read_text())["sets"], keyword)[1] or {}).get("fluency")


def corrector_block(runs: Path) -> list[str]:
    lines = ["| held-out set | decoder and correction | rounds | exact match | token F1 | cosine | s / query | "
             "above real p90 NLL |", "|---|---|---|---|---|---|---|---|"]
    reports = {record: json.loads(path.read_text()) for record in README_INVERSION
               if (path := runs / "inversion" / f"{record}.json").is_file()}
    for keyword in (False, True):  # the bundled set's rows first, then the keyword set's
        for record, report in reports.items():
            what = README_INVERSION[record]
            name, s = _set(report["sets"], keyword)
            if s is None:
                continue
            c = s["correction"]
            last, r = last_round(c)
            fluency = s.get("fluency") or _fluency(runs / "inversion/fluency" / f"{record}.json", keyword)
            above = (f"{fluency['corrected']['above_limit']:.1f} ± {fluency['corrected']['above_limit_se']:.1f}%"
                     if fluency else "")
            lines.append(f"| {'TREC MQ keywords' if keyword else name}, {s['queries']} | {what} | {last} | "
                         f"{r['exact_match']:.1f} ± {r['exact_match_se']:.1f} | {r['token_f1']:.1f} ± "
                         f"{r['token_f1_se']:.1f} | {r['roundtrip_cosine']:.3f} | {c['seconds_per_query']:.2f} | "
                         f"{above} |")
    return lines


def reformulation_block(runs: Path) -> list[str]:
    from gemma_embed.reformulate import TABLE_HEAD, table_row

    lines = []
    for mode in ("greedy", "rerank"):
        path = runs / "reformulations" / mode / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            settings = json.loads((path.parent / "run.json").read_text())
            if not lines:
                lines = [f"On the embedded default's encoder and decoder, {summary['pairs']} pairs of "
                         f"`{settings['pairs']}` x {settings['steps']} steps ({summary['cpu']}, "
                         f"{summary['precision']}; {date_of(path)}; ± one standard error over pairs):", "", TABLE_HEAD]
            lines.append(table_row(mode + (" (the default)" if mode == "rerank" else ""), summary,
                                   summary.get("reformulations_per_second")))
    return lines


def readme_blocks(runs: Path) -> dict[str, str]:
    """The README's generated blocks, each from the records under `runs`."""
    from gemma_embed.eval.metrics import upgrade

    m = upgrade(json.loads((runs / "demo/metrics.json").read_text()))
    blocks = {"encoder": encoder_block(runs, m), "decoder": decoder_block(m), "corrector": corrector_block(runs),
              "reformulations": reformulation_block(runs)}
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


def fill_readme(text: str, blocks: dict[str, str]) -> str:
    """`text` with every `<!-- report.py: NAME -->` ... `<!-- /report.py -->` block replaced by blocks[NAME]."""
    def fill(match):
        if match.group(2) not in blocks:
            raise SystemExit(f"error: README.md: no generator for the block {match.group(2)!r}")
        return match.group(1) + blocks[match.group(2)] + match.group(4)

    return BLOCK.sub(fill, text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect", metavar="RUNS", help="first copy the records RUNS holds (runs/) into --records, and "
                                                      "RUNS/demo/model/README.md to --card")
    ap.add_argument("--records", default=str(RECORDS), help="the records every page is generated from")
    ap.add_argument("--out", default=str(REPO / "docs/results.md"), help="the results page ('-': stdout, '': nowhere)")
    ap.add_argument("--reformulations", default=str(REPO / "docs/reformulations.md"),
                    help="where the bulk fan-out runs' page goes ('-': stdout, '': nowhere)")
    ap.add_argument("--inversion", default=str(REPO / "docs/inversion.md"),
                    help="where the round tables of runs/inversion/ go ('-': stdout, '': nowhere)")
    ap.add_argument("--readme", default=str(README), help="the README whose generated blocks are filled ('': none)")
    ap.add_argument("--card", default=str(REPO / "model_card.md"),
                    help="where --collect copies the embedded default's card ('': nowhere)")
    args = ap.parse_args(argv)
    records = Path(args.records)
    if args.collect:
        print(f"collected {len(collect(Path(args.collect), records))} records into {records}")
        card = Path(args.collect) / "demo/model/README.md"
        if args.card and card.is_file():
            Path(args.card).write_text(card.read_text())
    for target, make in ((args.out, render), (args.reformulations, reformulation_runs),
                         (args.inversion, inversion_runs)):
        if target == "-":
            print(make(records))
        elif target:
            Path(target).write_text(make(records).rstrip("\n") + "\n")
            print(f"wrote {target}")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(fill_readme(readme.read_text(), readme_blocks(records)))
        print(f"filled the generated blocks of {readme}")


if __name__ == "__main__":
    main()
