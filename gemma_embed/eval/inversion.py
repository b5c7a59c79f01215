"""How faithfully a query decoder writes queries back from their vectors, on held-out queries no training run saw:

  exact match       the decoded query equals the original (lower-cased, spaces collapsed), x 100
  token F1          word overlap of decoded and original, x 100 (as SQuAD counts it)
  BLEU              sacrebleu's corpus BLEU of the decoded queries against the originals (lower-cased)
  round-trip        the encoder's cosine between the decoded query and the target vector; comparable only within
  cosine            one space, so each set also reports its floor: the mean cosine of random pairs of its queries

for greedy decoding, for re-ranked decoding (N sampled candidates and the greedy one, re-embedded, the closest to
the target kept), for the nearest existing query of a pool (nearest-neighbour fan-out decoding) and, with
`rounds`, after each round of correction guided by the encoder (gemma_embed/corrector.py): the round table, with
the seconds and encodes it cost per query.

    python train/evaluate.py --decoder runs/demo/decoder --heldout runs/demo/heldout_queries.tsv --rounds 10

The held-out sets never share a query with the pool (the corrector's bank) or the decoder's training queries: an
exact match found there would be a leak, not an inversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gemma_embed.encoder import Embed
from gemma_embed.text_metrics import derangement, normalise, rerank, token_f1


def scores(decoded: list[str], references: list[str], vectors: torch.Tensor, embed: Embed) -> dict:
    """The four metrics of `decoded` against `references` (and their target `vectors`, in `embed`'s space)."""
    import sacrebleu

    cos = F.cosine_similarity(embed(decoded).float(), vectors.float()).mean().item() if decoded else None
    exact = [100.0 * (normalise(d) == normalise(r)) for d, r in zip(decoded, references)]
    f1 = [100 * token_f1(d, r) for d, r in zip(decoded, references)]
    return {
        "exact_match": float(np.mean(exact)), "exact_match_se": standard_error(exact),
        "token_f1": float(np.mean(f1)), "token_f1_se": standard_error(f1),
        "bleu": sacrebleu.corpus_bleu(decoded, [references], lowercase=True).score,
        "roundtrip_cosine": cos,
    }


def standard_error(values: list[float]) -> float | None:
    """The standard error of the mean of `values` (None for fewer than two)."""
    return float(np.std(values, ddof=1) / len(values) ** 0.5) if len(values) > 1 else None


def fluency_report(fluency, real: list[str], written: dict[str, list[str]], quantile: float = 0.9) -> dict:
    """How readable written queries are: each one's mean NLL per token under `fluency`'s language model, against
    the `quantile` of the real queries' own (`limit`); per kind of output, the mean NLL and the share above the
    limit (x 100; the real queries score 10 by definition), with standard errors."""
    own = [x for x in fluency.nll(real) if x is not None]
    limit = float(np.quantile(own, quantile))
    out = {"lm": fluency.name, "limit": limit, "real_mean_nll": float(np.mean(own))}
    for kind, texts in written.items():
        nll = [x if x is not None else float("inf") for x in fluency.nll(texts)]  # an empty query reads worst
        above = [100.0 * (x > limit) for x in nll]
        finite = [x for x in nll if x != float("inf")]
        out[kind] = {"mean_nll": float(np.mean(finite)) if finite else None, "above_limit": float(np.mean(above)),
                     "above_limit_se": standard_error(above)}
    return out


def floor_cosine(vectors: torch.Tensor, seed: int = 0) -> float | None:
    """Mean cosine between each vector and another chosen at random: what an unrelated query scores (None for a
    set of one query, which has no pair)."""
    n = vectors.shape[0]
    if n < 2:
        return None
    other = derangement(n, seed)
    return F.cosine_similarity(vectors[other].float(), vectors.float()).mean().item()


def nearest(pool: list[str], pool_vectors: torch.Tensor, targets: torch.Tensor) -> list[str]:
    """The query of `pool` closest to each target."""
    sims = F.normalize(targets.float(), dim=-1) @ F.normalize(pool_vectors.float(), dim=-1).T
    return [pool[i] for i in sims.argmax(dim=1).tolist()]


ROUNDS_REPORTED = (0, 1, 3, 10)  # the round table's rows (and the last round run), as vec2text reports them


def check_no_leak(sets: dict[str, list[str]], bank: list[str], what: str = "the pool") -> None:
    """Refuse held-out sets that share a query (up to case and spaces) with `bank`."""
    known = {normalise(t) for t in bank}
    for name, texts in sets.items():
        leaked = [t for t in texts if normalise(t) in known]
        if leaked:
            raise ValueError(f"{name}: {len(leaked)} held-out queries are in {what} (e.g. {leaked[0]!r}): an exact "
                             "match found there would be a leak, not an inversion; leave them out of the set")


def correction_table(results: list, texts: list[str], targets: torch.Tensor, embed: Embed, rounds: int) -> dict:
    """The metrics of the corrected queries after each reported round (0: the decoder alone)."""
    reported = sorted({r for r in ROUNDS_REPORTED if r <= rounds} | {rounds})
    return {str(r): scores([c.at(r)[0] for c in results], texts, targets, embed) for r in reported}


def bank_without(path: str | Path, held: Iterable[str]) -> list[str]:
    """The queries of the query file `path` (the bank inversion starts from), less every `held` query (compared up
    to case and spaces): a held-out query found in the bank would be a leak, not an inversion."""
    from gemma_embed.data.query_files import read_queries

    held = {normalise(q) for q in held}
    return [q for q in read_queries(path) if normalise(q) not in held]


def bank_inversion(embed: Embed, sets: dict[str, list[str]], bank: list[str], settings=None,
                   bank_vectors=None) -> dict:
    """Inversion without a decoder, run the same way on any encoder (how invertible is its space?): each held-out
    query's vector is corrected from the nearest queries of `bank` by gemma_embed.corrector's word edits, judged by
    the encoder (`settings`: CorrectorSettings). The metrics of round 0 (the nearest bank query) and of the last
    round, keyed `invert_<set>_<metric>_nearest` and `invert_<set>_<metric>_corrected`. `bank_vectors`: the
    bank's, where the caller has them (else encoded here)."""
    from gemma_embed.corrector import Corrector, CorrectorSettings

    check_no_leak(sets, bank, "the bank")
    settings = settings or CorrectorSettings(rounds=4)
    bank_vectors = embed(bank) if bank_vectors is None else torch.from_numpy(np.array(bank_vectors, dtype=np.float32))
    out = {}
    for name, texts in sets.items():
        targets = embed(texts).float()
        corrected = Corrector(embed, bank, bank_vectors, settings=settings).correct(targets)
        for tag, picked in (("nearest", [c.at(0)[0] for c in corrected]), ("corrected", [c.text for c in corrected])):
            out.update({f"invert_{name}_{k}_{tag}": v for k, v in scores(picked, texts, targets, embed).items()
                        if not k.endswith("_se")})
    return out


def evaluate_decoder(inverter, sets: dict[str, list[str]], candidates: int = 8, corrector=None, fluency=None,
                     examples: int = 10) -> dict:
    """Every metric of `inverter`'s decoder (gemma_embed.inverter.Inverter: the decoder loaded once with its
    encoder, training queries and bank) on each named set of held-out queries: greedy, re-ranked (`candidates`
    sampled + greedy) and, where it has a bank of existing queries, the nearest one. With `corrector`
    (CorrectorSettings with rounds > 0), the round table of correction guided by the encoder, from the greedy and
    sampled queries decoded here (their decoding counts in its seconds per query), with the inverter's trained
    corrector where it has one. `fluency`: a gemma_embed.reformulate.Fluency, to judge the greedy and corrected
    queries against the real ones (`fluency_report`). The held-out sets must share no query with the bank or the
    decoder's training queries."""
    check_no_leak(sets, inverter.bank, "the bank")
    check_no_leak(sets, inverter.training, "the decoder's training queries")
    decision = inverter.embed.precision
    report = {"decoder": str(inverter.decoder.name_or_path), "encoder": inverter.encoder, "candidates": candidates,
              "sets": {}, "precision": decision.to_dict(), "pool": len(inverter.bank)}
    for name, texts in sets.items():
        if not texts:
            raise ValueError(f"{name}: no held-out queries to evaluate")
        report["sets"][name] = evaluate_set(inverter, texts, candidates, corrector, fluency, examples)
    return report


def evaluate_set(inverter, texts: list[str], candidates: int, corrector, fluency, examples: int) -> dict:
    """evaluate_decoder's result for one held-out set."""
    import time

    from gemma_embed.scores import conditioning_gap

    embed, decision = inverter.embed, inverter.embed.precision
    targets = embed(texts).float()
    began = time.perf_counter()
    greedy = [c[0] for c in inverter.decode(targets)]
    with torch.random.fork_rng():  # repeatable samples
        torch.manual_seed(0)
        sampled = inverter.decode(targets, mode="sample", num_candidates=candidates)
    decoding = time.perf_counter() - began  # the corrector's round 0 and part of its round 1: in its cost
    reranked, _ = rerank([[g, *s] for g, s in zip(greedy, sampled)], targets, embed)
    modes = {"greedy": scores(greedy, texts, targets, embed),
             f"re-ranked ({candidates} sampled + greedy)": scores(reranked, texts, targets, embed)}
    shown = {"query": texts, "greedy": greedy, "reranked": reranked}
    if inverter.bank:
        shown["nearest"] = nearest(inverter.bank, inverter.bank_vectors, targets)
        modes["nearest existing query (training pool)"] = scores(shown["nearest"], texts, targets, embed)
    with decision.autocast("cpu"):
        gap = conditioning_gap(inverter.decoder, inverter.tokenizer, texts, targets)
    result = {"queries": len(texts), "floor_cosine": floor_cosine(targets), "modes": modes, "conditioning": gap}
    corrected = []
    if corrector is not None and corrector.rounds > 0:
        began = time.perf_counter()
        corrected = inverter.corrector(corrector).correct(targets, decoded=(greedy, sampled))
        seconds = time.perf_counter() - began + decoding
        result["correction"] = {
            "rounds": correction_table(corrected, texts, targets, embed, corrector.rounds),
            "seconds_per_query": seconds / len(texts),
            "encodes_per_query": sum(c.encodes for c in corrected) / len(texts),
            "settings": corrector.to_dict(), "cpu": decision.cpu, "precision": decision.name,
            "trained": str(inverter.trained.name_or_path) if inverter.trained is not None else None,
        }
        shown.update(corrected=[c.text for c in corrected], corrected_cosine=[c.cosine for c in corrected],
                     cosine_by_round=[[x for _, x in c.rounds] for c in corrected])
    if fluency is not None:
        written = {"greedy": greedy, **({"corrected": shown["corrected"]} if corrected else {})}
        result["fluency"] = fluency_report(fluency, texts, written)
    result["examples"] = [dict(zip(shown, row)) for row in zip(*shown.values())][:examples]
    return result


def heldout_sets(specs: list[str], n: int, exclude: set[str] = frozenset(), seed: int = 0) -> dict[str, list[str]]:
    """Named sets of held-out queries from `FILE` or `FILE@tag,tag` specs (a query file; with tags, only the lines
    whose source field carries one): repeats and queries in `exclude` (the training pool; compared up to case and
    spaces) dropped, then `n` of them drawn with a fixed seed (0: all; GEMMA_EMBED_TRY: a few)."""
    from gemma_embed.config import TRY_EXAMPLES, trying
    from gemma_embed.data.query_files import read_queries

    if trying():
        n = min(n or TRY_EXAMPLES, TRY_EXAMPLES)

    sets = {}
    exclude = {normalise(t) for t in exclude}
    for spec in specs:
        path, _, tags = spec.partition("@")
        texts = list(dict.fromkeys(t for t in read_queries(path, tuple(filter(None, tags.split(","))))
                                   if normalise(t) not in exclude))
        g = torch.Generator().manual_seed(seed)
        if n and len(texts) > n:
            texts = [texts[i] for i in sorted(torch.randperm(len(texts), generator=g)[:n].tolist())]
        sets[f"{Path(path).name}{'@' + tags if tags else ''}"] = texts
    return sets
