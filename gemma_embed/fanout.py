"""Query fan-out: walk from a query's embedding toward a document's and decode each step into a query.

Three decoders share one interface, `decode(vectors) -> list[(text, score)]`: `GenerativeDecoder` writes new
queries with a trained query decoder (re-ranked by the encoder), `NearestNeighbourDecoder` returns the closest query
of a bank of existing ones, and `CorrectingDecoder` runs gemma_embed.corrector's loop (the decoder's queries, the
bank's and their edits, judged by the encoder). `fan_out` walks one (query, document) pair; `fanout_metrics`
scores many.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from gemma_embed.corrector import CorrectorSettings

Embed = Callable[[list[str]], torch.Tensor]


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """`steps` unit vectors strictly between a and b, at t = 1/(steps+1) ... steps/(steps+1).

    linear: (1-t) a + t b, renormalised onto the sphere. slerp: the great-circle arc, evenly spaced in angle."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    t = torch.arange(1, steps + 1, dtype=torch.float32)[:, None] / (steps + 1)
    if mode == "linear":
        return F.normalize((1 - t) * a + t * b, dim=-1)
    if mode != "slerp":
        raise ValueError(f"interpolation mode must be linear or slerp, got {mode!r}")
    omega = torch.arccos((a @ b).clamp(-1 + 1e-7, 1 - 1e-7))
    if omega < 1e-4:  # (nearly) the same direction: the arc is the chord
        return F.normalize((1 - t) * a + t * b, dim=-1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class Decoder(Protocol):
    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]: ...


class NearestNeighbourDecoder:
    """Decodes a vector into the bank query whose embedding is closest (cosine). The bank's embeddings are cached
    in `cache_dir`, keyed by the model and the bank's content."""

    def __init__(self, texts: list[str], embed: Embed, cache_dir: str | Path | None = None, model_key: str = ""):
        self.texts = texts
        key = hashlib.sha256(("\n".join(texts) + "\0" + model_key).encode("utf-8")).hexdigest()[:16]
        cache = Path(cache_dir) / f"bank-{key}.pt" if cache_dir else None
        if cache is not None and cache.exists():
            self.vectors = torch.load(cache, weights_only=True)
        else:
            self.vectors = F.normalize(embed(texts).float(), dim=-1)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(self.vectors, cache)

    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]:
        scores = F.normalize(vectors.float(), dim=-1) @ self.vectors.T
        best = scores.max(dim=1)
        return [(self.texts[i], float(s)) for s, i in zip(best.values, best.indices)]


class GenerativeDecoder:
    """Decodes a vector by writing new queries: a trained query decoder samples `candidates` queries (plus its
    greedy one), the encoder re-embeds them, and the one closest to the vector is kept (gemma_embed.eval.inversion's
    re-ranking). Its queries need not exist anywhere."""

    def __init__(self, decoder, tokenizer, embed: Embed, candidates: int = 8):
        self.decoder, self.tokenizer, self.embed, self.candidates = decoder, tokenizer, embed, candidates

    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]:
        from gemma_embed.text_metrics import rerank
        from gemma_embed.precision import autocast_of

        with autocast_of(self.embed):
            greedy = self.decoder.decode(vectors, self.tokenizer)
            sampled = self.decoder.decode(vectors, self.tokenizer, mode="sample", num_candidates=self.candidates)
        best, cosines = rerank([g + s for g, s in zip(greedy, sampled)], vectors, self.embed)
        return [(t, float(c)) for t, c in zip(best, cosines)]


class CorrectingDecoder:
    """Decodes each vector through a `gemma_embed.corrector.Corrector`: the query it ends with, and its cosine."""

    def __init__(self, corrector):
        self.corrector = corrector

    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]:
        return [(c.text, c.cosine) for c in self.corrector.correct(vectors)]


def same_query(a: str, b: str, near: float = 0.8) -> bool:
    """Exact (up to case and spaces) or near duplicates: word F1 of `near` or more."""
    from gemma_embed.text_metrics import normalise, token_f1

    return normalise(a) == normalise(b) or token_f1(a, b) >= near


def fan_out(embed: Embed, query: str, document: str, decoder: Decoder, steps: int = 8, mode: str = "linear") -> list[dict]:
    """The path from the query to the document: one row per point (the seed, `steps` intermediate points, the
    target) with its similarity to seed and target, the decoded query, the decoded query's own similarity to the
    point (`decoded_sim`), to the seed and to the document, and whether it repeats (exactly or nearly) the seed
    query or an earlier step's query."""
    seed, target = F.normalize(embed([query, document]).float(), dim=-1)
    points = torch.cat([seed[None], interpolate(seed, target, steps, mode), target[None]])
    decoded = decoder.decode(points)
    texts = [text for text, _ in decoded]
    emb = F.normalize(embed(texts).float(), dim=-1)
    rows, kept = [], [query]
    for i, (p, (text, score)) in enumerate(zip(points, decoded)):
        duplicate = any(same_query(text, k) for k in kept)
        if not duplicate:
            kept.append(text)
        rows.append({"step": i, "t": i / (steps + 1), "sim_seed": float(p @ seed), "sim_target": float(p @ target),
                     "decoded": text, "decoded_sim": score, "decoded_seed": float(emb[i] @ seed),
                     "decoded_target": float(emb[i] @ target), "duplicate": duplicate})
    return rows


def print_path(query: str, document: str, path: list[dict]) -> None:
    """A walk as a table: each step's cosines (its point and its decoded query against the seed and the
    document, the query against its point) and the decoded query, repeats marked."""
    print(f"\nseed:     {query}\ndocument: {document}")
    print(f"{'step':>4} {'point~seed':>10} {'point~doc':>9} {'query~seed':>10} {'query~doc':>9} {'query~point':>11}  "
          "decoded query")
    for r in path:
        dup = "  (repeat)" if r["duplicate"] else ""
        print(f"{r['step']:>4} {r['sim_seed']:10.3f} {r['sim_target']:9.3f} {r['decoded_seed']:10.3f} "
              f"{r['decoded_target']:9.3f} {r['decoded_sim']:11.3f}  {r['decoded']}{dup}")


def fanout_metrics(paths: list[list[dict]], seed_to_document: list[float], training: set[str]) -> dict:
    """Over the paths of several (query, document) pairs: the share of steps whose query is new along its path
    (neither the seed nor an earlier step's, nor a near copy), the share of generated queries found nowhere in the
    training data (novelty), the mean cosine of each step's query to its point (round-trip, by step), and the share
    of generated queries closer to the document than the seed query is. Over the intermediate steps alone (not the
    seed's and the document's own points): the share of the distinct ones closer to the document than the seed
    query (`closer_distinct`), the share not in the training data (`novel_steps`), and the mean cosine of a step's
    query to its point (`step_cosine`)."""
    from gemma_embed.text_metrics import normalise

    rows = [r for path in paths for r in path]
    training = {normalise(t) for t in training}
    steps = max(len(path) for path in paths)
    closer = [r["decoded_target"] > s for path, s in zip(paths, seed_to_document) for r in path]
    inner = [(r, s) for path, s in zip(paths, seed_to_document) for r in path[1:-1]]
    distinct = [(r, s) for r, s in inner if not r["duplicate"]]
    return {
        "closer_distinct": sum(r["decoded_target"] > s for r, s in distinct) / len(distinct) if distinct else 0.0,
        "novel_steps": sum(normalise(r["decoded"]) not in training for r, _ in inner) / len(inner) if inner else 0.0,
        "step_cosine": sum(r["decoded_sim"] for r, _ in inner) / len(inner) if inner else None,
        "distinct": sum(not r["duplicate"] for r in rows) / len(rows),
        "novel": sum(normalise(r["decoded"]) not in training for r in rows) / len(rows),
        "closer_to_document": sum(closer) / len(closer),
        "roundtrip_cosine_by_step": [sum(p[i]["decoded_sim"] for p in paths if i < len(p)) /
                                     sum(1 for p in paths if i < len(p)) for i in range(steps)],
        "pairs": len(paths),
    }


def plot_path(path: list[dict], png: str | Path, title: str = "") -> None:
    """The walk: each point's similarity to the seed and the document, and the decoded query's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in path]
    ax.plot(steps, [r["sim_seed"] for r in path], "o-", color="C0", label="point: cosine to the seed query")
    ax.plot(steps, [r["sim_target"] for r in path], "s-", color="C1", label="point: cosine to the document")
    if "decoded_seed" in path[0]:
        ax.plot(steps, [r["decoded_seed"] for r in path], "o:", color="C0", label="decoded query: to the seed")
        ax.plot(steps, [r["decoded_target"] for r in path], "s:", color="C1", label="decoded query: to the document")
    ax.plot(steps, [r["decoded_sim"] for r in path], "^--", color="C2", label="decoded query: to its point")
    ax.set_xlabel("step (0: the seed query, last: the document)")
    ax.set_ylabel("cosine similarity")
    ax.set_title(title or "query fan-out path")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def plot_records(path: list[dict], png: str | Path) -> None:
    """One pair's reformulations (train/fan_out.py's records): each step's query against the seed, the document and
    its point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in path]
    for key, style, label in (("cos_seed", "o-", "to the seed query"), ("cos_document", "s-", "to the document"),
                              ("cos_point", "^--", "to its point")):
        ax.plot(steps, [r[key] for r in path], style, label=f"the step's query: cosine {label}")
    ax.set_xlabel("step (from the seed query toward the document)")
    ax.set_ylabel("cosine similarity")
    ax.set_title(f"fan-out of {path[0]['id']}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def decoder_walker(decoder_folder: str | Path, encoder: str | None = None, precision="auto",
                   settings: CorrectorSettings | None = None, bank: list[str] | None = None,
                   cache: str | Path | None = None) -> tuple[Embed, Decoder, list[str]]:
    """Generative fan-out from a trained query decoder (gemma_embed.inverter.Inverter): (the encoder's embed, the
    walker, the queries it knows: the bank and the decoder's training queries). Each step's query is decoded and
    corrected toward its point with `settings` (default: the measured recipe, gemma_embed.recipes.CORRECTION),
    `bank` as its bank (default: the decoder's training queries), their vectors kept in `cache` (default: where the
    decoder's training kept them); with 0 rounds, the `samples` sampled queries and the greedy one, re-ranked."""
    from gemma_embed.inverter import Inverter
    from gemma_embed.recipes import CORRECTION

    inverter = Inverter.from_pretrained(decoder_folder, encoder, bank, precision, cache)
    known = list(dict.fromkeys([*inverter.bank, *inverter.training]))
    settings = settings or CORRECTION
    if not settings.rounds:
        return inverter.embed, GenerativeDecoder(inverter.decoder, inverter.tokenizer, inverter.embed,
                                                 settings.samples), known
    return inverter.embed, CorrectingDecoder(inverter.corrector(settings)), known


def walk(embed: Embed, pairs: list[tuple[str, str]], decoder: Decoder, steps: int, training: set[str] | list[str],
         mode: str = "linear", png: str | Path | None = None, show: int = 5) -> tuple[list[list[dict]], dict]:
    """Fan out every (seed query, document) pair: the paths (printed when there are at most `show`), their
    metrics (fanout_metrics, printed), and the first path plotted to `png`."""
    paths = []
    for query, document in pairs:
        paths.append(fan_out(embed, query, document, decoder, steps, mode))
        if len(pairs) <= show:
            print_path(query, document, paths[-1])
    metrics = fanout_metrics(paths, [path[0]["sim_target"] for path in paths], set(training))
    print(f"\n{len(paths)} walk(s), {steps} steps: distinct steps closer to the document than the seed "
          f"{metrics['closer_distinct']:.2f}, steps not in the training data {metrics['novel_steps']:.2f}, mean cosine "
          f"of a step's query to its point {metrics['step_cosine']:.3f}; round-trip cosine by step "
          + " ".join(f"{c:.2f}" for c in metrics["roundtrip_cosine_by_step"]), flush=True)
    if png:
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        plot_path(paths[0], png, title=f"fan-out: {pairs[0][0][:40]}")
    return paths, metrics
