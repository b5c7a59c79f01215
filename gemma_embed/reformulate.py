"""Query reformulations in bulk: walk from each seed query's vector toward its document's, decode every step into a
query, and judge each one as a reformulation. The engine of train/fan_out.py.

    pairs = read_pairs("pairs.jsonl")                     # Pair(id, query, document); TSV, a WikiQA folder, bundled
    records = reformulate_batch(Reformulator(inverter, lm, recipe), batch, documents, index)   # one record a step
    summary = summarise(records, recipe)                  # the keep rule and the quality table's row

Each record: the pair id, the step and its interpolation weight `t`, the text, its cosine to its point, to the seed
and to the document, its mean NLL per token under a language model (`nll`; the seed's as `seed_nll`), whether it
repeats the seed or an earlier step (`duplicate`), whether it is one of the decoder's training queries
(`in_training`), and the rank of the pair's document among all the run's documents when the text is the query
(`rank`; the seed's as `seed_rank`). With `candidates`, the point's shortlist with the same fields, so that the final
pick (cosine against fluency) can be re-chosen without decoding again (`repick`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from gemma_embed.data.readers import DataError
from gemma_embed.fanout import interpolate
from gemma_embed.precision import autocast_of
from gemma_embed.recipes import FanOutRecipe
from gemma_embed.text_metrics import distinct_n, normalise, self_bleu

if TYPE_CHECKING:
    from gemma_embed.corrector import CorrectorSettings
    from gemma_embed.inverter import Inverter

BUNDLED = Path(__file__).resolve().parents[1] / "examples" / "data" / "pairs.jsonl"


# ---------------------------------------------------------------------------------------------------------- input
@dataclass(frozen=True)
class Pair:
    id: str
    query: str
    document: str


def _jsonl_pair(line: str) -> tuple:
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ValueError(f"not a JSON object ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("id", "query", "document") if k not in row]
    if missing:
        raise ValueError(f"missing field {missing[0]!r} (each line needs id, query and document)")
    return row["id"], row["query"], row["document"]


def _tsv_pair(line: str) -> tuple:
    cells = line.rstrip("\r").split("\t")
    if len(cells) != 3:
        raise ValueError(f"{len(cells)} tab-separated fields, expected 3 (id, query, document)")
    return tuple(cells)


def read_pairs(spec: str | Path, skip_bad: bool = False) -> tuple[list[Pair], int]:
    """The (id, query, document) pairs of a JSONL file (`{"id", "query", "document"}` a line), a TSV file (id,
    query, document; an `id query document` header is skipped), a WikiQA folder (each question and its first
    correct answer) or `bundled` (examples/data/pairs.jsonl). A bad line (not UTF-8, malformed, a field missing or
    empty, a repeated id) is refused naming the file and line, or skipped and counted with `skip_bad`. Returns the
    pairs and the number of lines skipped."""
    path = BUNDLED if str(spec) == "bundled" else Path(spec)
    if path.is_dir():
        from gemma_embed.eval.tasks import read_wikiqa

        return [Pair(f"wikiqa-{i}", q, answers[labels.index(1)])
                for i, (q, answers, labels) in enumerate(read_wikiqa(path))], 0
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found (a .jsonl or .tsv file, a WikiQA folder, or 'bundled')")
    parse = _jsonl_pair if path.suffix in (".jsonl", ".json") else _tsv_pair
    pairs, seen, skipped = [], set(), 0
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"not UTF-8 (byte {e.start})") from None
            if not line.strip():
                continue
            if parse is _tsv_pair and number == 1 and line.lower().split("\t") == ["id", "query", "document"]:
                continue
            pid, query, document = parse(line)
            for name, value in (("id", pid), ("query", query), ("document", document)):
                if not isinstance(value, (str, int)) or not str(value).strip():
                    raise ValueError(f"field {name!r} is empty or not text")
            if str(pid) in seen:
                raise ValueError(f"id {pid!r} repeats an earlier line's")
        except ValueError as e:
            if not skip_bad:
                raise DataError(f"{path}, line {number}: {e} (--skip_bad skips such lines)") from None
            skipped += 1
            continue
        seen.add(str(pid))
        pairs.append(Pair(str(pid), " ".join(str(query).split()), " ".join(str(document).split())))
    if not pairs:
        raise DataError(f"{path}: no pairs" + (f" ({skipped} bad lines skipped)" if skipped else ""))
    return pairs, skipped


def batches(pairs: list[Pair], size: int) -> list[list[Pair]]:
    """The run's batches: fixed by the input order and `size` alone, so that any number of processes, and a rerun
    after a kill, decode the same batches (process r takes batches r, r + n, ...)."""
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


# -------------------------------------------------------------------------------------------------------- fluency
class Fluency:
    """Mean negative log-likelihood per token of texts under a causal language model (the raw Gemma 3 270M by
    default): the text's tokens after `<bos>`, `<eos>` not counted. None for an empty text."""

    def __init__(self, backbone: str = "gemma3-270m", precision=None, device: str = "cpu", batch_size: int = 64):
        from transformers import AutoModelForCausalLM

        from gemma_embed.backbones import load_tokenizer, resolve_backbone

        folder = resolve_backbone(backbone)
        self.name, self.precision, self.batch_size = backbone, precision, batch_size
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval().to(device)
        self.tokenizer = load_tokenizer(folder)

    @torch.no_grad()
    def nll(self, texts: list[str]) -> list[float | None]:
        out: dict[str, float | None] = {}
        todo = sorted({t for t in texts if t.strip()}, key=len)  # batches of similar lengths pad little
        device = self.model.device
        lm, head = self.model.model, self.model.lm_head
        cap = self.model.config.final_logit_softcapping
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=64).to(device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
            with autocast_of(self, device.type):
                hidden = lm(**enc, position_ids=positions).last_hidden_state[:, :-1]
            # each position predicts the next token; the first real token is <bos>, which nothing predicts, and a
            # pad position predicts nothing
            ids, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
            mask &= ids != self.tokenizer.bos_token_id
            rows, cols = mask.nonzero(as_tuple=True)
            losses = torch.empty(len(rows), device=device)
            for j in range(0, len(rows), 256):  # the vocabulary's logits a few hundred positions at a time
                at = slice(j, j + 256)
                with autocast_of(self, device.type):
                    logits = head(hidden[rows[at], cols[at]]).float()
                if cap:
                    logits = torch.tanh(logits / cap) * cap
                losses[at] = torch.logsumexp(logits, -1) - logits.gather(-1, ids[rows[at], cols[at], None])[:, 0]
            total = torch.zeros(len(chunk), device=device).index_add_(0, rows, losses)
            for text, t, n in zip(chunk, total.tolist(), mask.sum(1).tolist()):
                out[text] = t / n if n else None
        return [out.get(t) for t in texts]


# -------------------------------------------------------------------------------------------------------- records
def pick(candidates: list[dict], weight: float) -> dict:
    """The final pick among a point's candidates: the highest cosine to the point - `weight` x NLL; with a weight,
    a candidate without an NLL (an empty text) only where no other is left."""
    scored = [c for c in candidates if c["nll"] is not None] if weight else []
    if not scored:
        return max(candidates, key=lambda c: c["cos_point"])
    return max(scored, key=lambda c: c["cos_point"] - weight * c["nll"])


def annotate_path(steps: list[dict], seed: str, training: set[str]) -> None:
    """Mark each step that repeats the seed or an earlier step (up to case and spaces), and each that is one of the
    training queries (`training`: normalised)."""
    seen = {normalise(seed)}
    for r in steps:
        key = normalise(r["text"])
        r["duplicate"] = key in seen
        r["in_training"] = key in training
        seen.add(key)


@dataclass(frozen=True)
class Reformulator:
    """What decodes and judges a run's reformulations: the inverter (decoder and encoder), the language model that
    scores fluency (None: no NLL), the recipe, the correction settings of mode `correct` (None: the inverter's) and
    whether each record keeps its point's candidates (for `repick`)."""

    inverter: Inverter
    lm: Fluency | None
    recipe: FanOutRecipe
    settings: CorrectorSettings | None = None
    keep_candidates: bool = False


def reformulate_batch(reformulator: Reformulator, pairs: list[Pair], documents: torch.Tensor,
                      document_index: dict[str, int], training: set[str] = frozenset()) -> list[dict]:
    """Every step of every pair of a batch, decoded together: `documents` are the run's document vectors (rows of
    `document_index`), against which each text's document is ranked; `training` the decoder's training queries
    (normalised), which each record says whether it repeats."""
    inverter, lm, recipe = reformulator.inverter, reformulator.lm, reformulator.recipe
    settings, keep_candidates = reformulator.settings, reformulator.keep_candidates
    embed = inverter.embed
    seeds = F.normalize(embed([p.query for p in pairs]).float(), dim=-1)
    targets = documents[[document_index[p.document] for p in pairs]]
    points = torch.cat([interpolate(s, d, recipe.steps) for s, d in zip(seeds, targets)])
    shortlists = inverter.candidates(points, recipe.mode, recipe.samples, settings, 8 if keep_candidates else (
        8 if recipe.weight() else 1))
    texts = list(dict.fromkeys([c for group in shortlists for c, _ in group] + [p.query for p in pairs]))
    vectors = dict(zip(texts, F.normalize(embed(texts).float(), dim=-1)))
    nll = dict(zip(texts, lm.nll(texts))) if lm is not None else {}
    own = torch.tensor([document_index[p.document] for p in pairs])

    def judged(text: str, pair: int, cos_point: float | None = None) -> dict:
        v = vectors[text]
        sims = documents @ v
        rank = int((sims > sims[own[pair]]).sum()) + 1
        return {"text": text, "cos_point": None if cos_point is None else round(cos_point, 6),
                "cos_seed": round(float(v @ seeds[pair]), 6), "cos_document": round(float(sims[own[pair]]), 6),
                "rank": rank, "nll": None if nll.get(text) is None else round(nll[text], 4)}

    records = []
    for i, pair in enumerate(pairs):
        seed = judged(pair.query, i)
        path = []
        for step in range(recipe.steps):
            group = [judged(text, i, cos) for text, cos in shortlists[i * recipe.steps + step]]
            chosen = pick(group, recipe.weight())
            record = {"id": pair.id, "step": step + 1, "t": (step + 1) / (recipe.steps + 1), **chosen,
                      "seed_cos_document": seed["cos_document"], "seed_rank": seed["rank"], "seed_nll": seed["nll"]}
            if keep_candidates:
                record["candidates"] = group
            path.append(record)
        annotate_path(path, pair.query, training)
        records += path
    return records


def repick(records: list[dict], weight: float, seeds: dict[str, str], training: set[str]) -> list[dict]:
    """The records again with each step's text re-chosen from its recorded candidates at fluency `weight`."""
    out, by_pair = [], {}
    for r in records:
        if "candidates" not in r:
            raise DataError("these records have no candidates to re-choose from: run train/fan_out.py --candidates")
        chosen = pick(r["candidates"], weight)
        by_pair.setdefault(r["id"], []).append({**r, **chosen})
    for pid, path in by_pair.items():
        annotate_path(path, seeds[pid], training)
        out += path
    return out


# ---------------------------------------------------------------------------------------------------- the summary
def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def keep_reasons(r: dict, recipe: FanOutRecipe, nll_limit: float | None) -> list[str]:
    """Why the keep rule drops a step (empty: kept): not fluent (NLL above the real queries' quantile), far from its
    point, a duplicate, or its document not in the top k."""
    reasons = []
    if nll_limit is not None and (r["nll"] is None or r["nll"] > nll_limit):
        reasons.append("not fluent")
    if r["cos_point"] < recipe.min_cosine:
        reasons.append("far from its point")
    if r["duplicate"]:
        reasons.append("duplicate")
    if r["rank"] > recipe.top_k:
        reasons.append(f"document not in the top {recipe.top_k}")
    return reasons


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def summarise(records: list[dict], recipe: FanOutRecipe) -> dict:
    """The keep rule's counts and the quality of a run's reformulations. Standard errors are over pairs (a pair's
    steps are not independent). The fluency threshold is the `nll_quantile` of the seed queries' NLL: real queries
    under the same language model."""
    paths: dict[str, list[dict]] = {}
    for r in records:
        paths.setdefault(r["id"], []).append(r)
    seeds_nll = [p[0]["seed_nll"] for p in paths.values() if p[0]["seed_nll"] is not None]
    limit = quantile(seeds_nll, recipe.nll_quantile) if seeds_nll else None
    dropped: dict[str, int] = {}
    for r in records:
        reasons = keep_reasons(r, recipe, limit)
        r["kept"] = not reasons
        for reason in reasons:
            dropped[reason] = dropped.get(reason, 0) + 1

    def per_pair(fn) -> tuple[float, float] | None:
        values = [v for v in (fn(p) for p in paths.values()) if v is not None]
        return _mean_se(values) if values else None

    def share(p, cond, among=lambda r: True):
        rows = [r for r in p if among(r)]
        return sum(map(cond, rows)) / len(rows) if rows else None

    steps = max(len(p) for p in paths.values())
    fluent = [r["nll"] for r in records if r["nll"] is not None]
    kept = sum(r["kept"] for r in records)
    return {
        "pairs": len(paths), "reformulations": len(records), "kept": kept, "dropped": dropped,
        "nll_limit": limit, "nll_quantile": recipe.nll_quantile, "reference": f"{len(seeds_nll)} seed queries",
        "nll": per_pair(lambda p: _mean([r["nll"] for r in p if r["nll"] is not None])) if fluent else None,
        "above_limit": per_pair(lambda p: share(p, lambda r: r["nll"] is None or r["nll"] > limit)) if limit else None,
        "seed_nll": _mean(seeds_nll) if seeds_nll else None,
        "cos_point": per_pair(lambda p: _mean([r["cos_point"] for r in p])),
        "closer": per_pair(lambda p: share(p, lambda r: r["cos_document"] > r["seed_cos_document"],
                                           lambda r: not r["duplicate"])),
        "rank_by_step": [_mean([p[s]["rank"] for p in paths.values() if s < len(p)]) for s in range(steps)],
        "seed_rank": _mean([p[0]["seed_rank"] for p in paths.values()]),
        "rank_improved": per_pair(lambda p: float(p[-1]["rank"] < p[0]["seed_rank"])),
        "distinct": per_pair(lambda p: share(p, lambda r: not r["duplicate"])),
        "distinct_2": per_pair(lambda p: distinct_n([r["text"] for r in p], 2)),
        "self_bleu": per_pair(lambda p: self_bleu([r["text"] for r in p])),
        "novel": per_pair(lambda p: share(p, lambda r: not r["in_training"])),
        "kept_share": per_pair(lambda p: share(p, lambda r: r["kept"])),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _cell(value, digits: int = 3, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        return f"{value[0] * scale:.{digits}f} ± {value[1] * scale:.{digits}f}"
    return f"{value * scale:.{digits}f}"


TABLE_HEAD = ("| mode | NLL / token | above real p90 | cos to point | closer to doc | rank: seed -> last step | "
              "rank better | distinct | distinct-2 | self-BLEU | novel | kept | reformulations / s |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(name: str, s: dict, rate: float | None) -> str:
    ranks = s["rank_by_step"]
    return (f"| {name} | {_cell(s['nll'], 2)} | {_cell(s['above_limit'], 1, 100)}% | {_cell(s['cos_point'])} | "
            f"{_cell(s['closer'], 1, 100)}% | {s['seed_rank']:.1f} -> {ranks[-1]:.1f} | "
            f"{_cell(s['rank_improved'], 1, 100)}% | {_cell(s['distinct'], 1, 100)}% | {_cell(s['distinct_2'], 2)} | "
            f"{_cell(s['self_bleu'], 1)} | {_cell(s['novel'], 1, 100)}% | {_cell(s['kept_share'], 1, 100)}% | "
            f"{_cell(rate, 2)} |")


def print_summary(s: dict, rate: float | None, name: str) -> None:
    print(f"\n{s['reformulations']:,} reformulations of {s['pairs']:,} pairs; kept {s['kept']:,} "
          f"({s['kept'] / max(1, s['reformulations']):.0%}). Dropped (a step may fail several tests): "
          + (", ".join(f"{k} {v:,}" for k, v in sorted(s["dropped"].items())) or "none"))
    if s["nll_limit"] is not None:
        print(f"fluency limit: NLL {s['nll_limit']:.2f} per token, the {s['nll_quantile']:.0%} quantile of "
              f"{s['reference']}; mean target-document rank by step: "
              + " ".join(f"{r:.1f}" for r in s["rank_by_step"]) + f" (seed {s['seed_rank']:.1f})")
    print(TABLE_HEAD)
    print(table_row(name, s, rate), flush=True)


# ------------------------------------------------------------------------------------------------------- storage
def read_records(path: Path) -> Iterator[dict]:
    """The complete records of a shard or merged file (a line cut off by a kill is not one)."""
    data = path.read_bytes() if path.is_file() else b""
    for line in data.split(b"\n")[:-1]:  # what follows the last newline was never finished
        try:
            yield json.loads(line)
        except ValueError:
            continue
