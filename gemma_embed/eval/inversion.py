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

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gemma_embed.data.readers import DataError
from gemma_embed.data.decoder_queries import DecoderCollator, tokenize_queries
from gemma_embed.encoder import Embed
from gemma_embed.text_metrics import derangement, normalise, rerank, token_f1


def conditioning_gap(decoder, tokenizer, texts: list[str], vectors: torch.Tensor, batch_size: int = 32,
                     seed: int = 0) -> dict:
    """How much the decoder uses its input: the teacher-forced loss (nats per token) of each query given its own
    vector, against the loss given another query's vector of the same set (a random derangement); the gap is the
    difference. A decoder whose gap is near zero ignores its input, whatever its loss. None for fewer than 2."""
    if len(texts) < 2:
        return {"loss_own": None, "loss_shuffled": None, "gap": None}
    was_training = decoder.training
    decoder.eval()
    ids = tokenize_queries(tokenizer, texts, decoder.config.max_query_length)
    other = derangement(len(texts), seed)
    collate, totals = DecoderCollator(decoder.config), {"loss_own": 0.0, "loss_shuffled": 0.0}
    count = 0
    device = next(decoder.parameters()).device
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            rows = range(i, min(i + batch_size, len(texts)))
            for key, order in (("loss_own", list(rows)), ("loss_shuffled", other[list(rows)].tolist())):
                batch = collate([(ids[r], np.asarray(vectors[o], dtype=np.float32)) for r, o in zip(rows, order)])
                tokens = int(batch["attention_mask"].sum())
                totals[key] += decoder(**{k: v.to(device) for k, v in batch.items()}).loss.item() * tokens
            count += tokens
    decoder.train(was_training)
    own, shuffled = totals["loss_own"] / count, totals["loss_shuffled"] / count
    return {"loss_own": own, "loss_shuffled": shuffled, "gap": shuffled - own}


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
    sims = F.normalize(targets.float(), dim=-1) @ F.normalize(pool_vectors.float(), dim=-1).T
    return [pool[i] for i in sims.argmax(dim=1).tolist()]


def decode_all(decoder, tokenizer, vectors: torch.Tensor, batch_size: int = 32, **kwargs) -> list[list[str]]:
    from tqdm.auto import tqdm

    out = []
    starts = range(0, vectors.shape[0], batch_size)
    for i in tqdm(starts, desc=f"decoding {vectors.shape[0]} vectors ({kwargs.get('mode', 'greedy')})", unit="batch",
                  disable=len(starts) < 2, dynamic_ncols=True):
        out += decoder.decode(vectors[i : i + batch_size], tokenizer, **kwargs)
    return out


ROUNDS_REPORTED = (0, 1, 3, 10)  # the round table's rows (and the last round run), as vec2text reports them


def check_no_leak(sets: dict[str, list[str]], bank: list[str], what: str = "the pool") -> None:
    """Refuse held-out sets that share a query (up to case and spaces) with `bank`."""
    known = {normalise(t) for t in bank}
    for name, texts in sets.items():
        leaked = [t for t in texts if normalise(t) in known]
        if leaked:
            raise ValueError(f"{name}: {len(leaked)} held-out queries are in {what} (e.g. {leaked[0]!r}): an exact "
                             "match found there would be a leak, not an inversion; leave them out of the set")


def result_rows(result: dict) -> list[tuple[str, dict]]:
    """A held-out set's rows, as every report prints them: each decoding mode, then each reported round of
    correction."""
    rows = list(result["modes"].items())
    for r, metrics in (result.get("correction") or {}).get("rounds", {}).items():
        rows.append((f"corrected, round {r}" + (" (the decoder alone)" if r == "0" else ""), metrics))
    return rows


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


def evaluate_decoder(decoder_folder: str | Path, sets: dict[str, list[str]], encoder: str | None = None,
                     pool: list[str] | None = None, candidates: int = 8, precision: str = "auto",
                     examples: int = 10, cache: str | Path | None = None, corrector=None,
                     training: list[str] | None = None, trained: str | Path | None = None,
                     fluency=None) -> dict:
    """Every metric of the decoder in `decoder_folder` on each named set of held-out queries: greedy, re-ranked
    (`candidates` sampled + greedy) and, given a `pool` of existing queries (the training pool), the nearest one;
    with `corrector` (CorrectorSettings with rounds > 0), the round table of correction guided by the encoder, the
    pool as its bank (the corrector starts from the greedy and sampled queries decoded here: `candidates` samples,
    whatever its own `samples` setting; their decoding counts in its seconds per query). The encoder is the one
    named in the decoder's config (or `encoder`), and must be the one it was trained on. `cache`: a vector cache
    (gemma_embed.encoder.cached_vectors) for the pool's vectors.
    `training`: the decoder's training queries, where the caller has read them (else they are read here).
    `trained`: a trained corrector's folder (train/corrector.py) for the correction to use. `fluency`: a
    gemma_embed.reformulate.Fluency, to judge the greedy and corrected queries against the real ones
    (`fluency_report`)."""
    import time

    from gemma_embed.backbones import load_tokenizer
    from gemma_embed.corrector import Corrector
    from gemma_embed.data.decoder_queries import training_queries
    from gemma_embed.encoder import cached_vectors, decoders_encoder, load_embedder
    from gemma_embed.precision import resolve
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    decoder = GemmaEmbedDecoder.from_pretrained(str(decoder_folder)).eval()
    tokenizer = load_tokenizer(decoder_folder)
    spec = decoders_encoder(decoder_folder, decoder, encoder)
    check_no_leak(sets, pool or [], "the pool")
    try:
        training = training_queries(decoder_folder) if training is None else training
        check_no_leak(sets, training, "the decoder's training queries")
    except (OSError, DataError) as e:
        print(f"note: the decoder's training queries cannot be read ({e}), so the held-out sets are checked against "
              "the pool only", flush=True)
    decision = resolve(precision, "cpu") if isinstance(precision, str) else precision
    embed = load_embedder(spec, precision=decision)
    if trained:
        from gemma_embed.inverter import load_corrector

        trained = load_corrector(trained, decoder)
    pool_vectors = None
    if pool:
        pool_vectors = (torch.from_numpy(np.array(cached_vectors(spec, pool, Path(cache), precision=precision, embed=embed)))
                        if cache else embed(pool))
    report = {"decoder": str(decoder_folder), "encoder": spec, "candidates": candidates, "sets": {},
              "precision": decision.to_dict(), "pool": len(pool or [])}
    for name, texts in sets.items():
        if not texts:
            raise ValueError(f"{name}: no held-out queries to evaluate")
        targets = embed(texts).float()
        began = time.perf_counter()
        with decision.autocast("cpu"):  # the decoder writes in the encoder's precision (bf16 where native)
            greedy = [c[0] for c in decode_all(decoder, tokenizer, targets)]
            with torch.random.fork_rng():  # repeatable samples
                torch.manual_seed(0)
                sampled = decode_all(decoder, tokenizer, targets, mode="sample", num_candidates=candidates)
        decoding = time.perf_counter() - began  # the corrector's round 0 and part of its round 1: in its cost
        reranked, _ = rerank([[g, *s] for g, s in zip(greedy, sampled)], targets, embed)
        modes = {"greedy": scores(greedy, texts, targets, embed),
                 f"re-ranked ({candidates} sampled + greedy)": scores(reranked, texts, targets, embed)}
        neighbours = None
        if pool:
            neighbours = nearest(pool, pool_vectors, targets)
            modes["nearest existing query (training pool)"] = scores(neighbours, texts, targets, embed)
        result = {"queries": len(texts), "floor_cosine": floor_cosine(targets), "modes": modes,
                  "conditioning": None}
        with decision.autocast("cpu"):
            result["conditioning"] = conditioning_gap(decoder, tokenizer, texts, targets)
        corrected = None
        if corrector is not None and corrector.rounds > 0:
            began = time.perf_counter()
            corrected = Corrector(embed, pool or [], pool_vectors, decoder, tokenizer, corrector,
                                  trained=trained or None).correct(targets, decoded=(greedy, sampled))
            seconds = time.perf_counter() - began + decoding
            result["correction"] = {
                "rounds": correction_table(corrected, texts, targets, embed, corrector.rounds),
                "seconds_per_query": seconds / len(texts),
                "encodes_per_query": sum(c.encodes for c in corrected) / len(texts),
                "settings": corrector.to_dict(), "cpu": decision.cpu, "precision": decision.name,
                "trained": str(trained.name_or_path) if trained else None,
            }
        if fluency is not None:
            written = {"greedy": greedy, **({"corrected": [c.text for c in corrected]} if corrected else {})}
            result["fluency"] = fluency_report(fluency, texts, written)
        result["examples"] = [
            {"query": t, "greedy": g, "reranked": r, **({"nearest": n} if pool else {}),
             **({"corrected": c.text, "corrected_cosine": c.cosine, "cosine_by_round": [x for _, x in c.rounds]}
                if c else {})}
            for t, g, r, n, c in zip(texts, greedy, reranked, neighbours or [None] * len(texts),
                                     corrected or [None] * len(texts))][:examples]
        report["sets"][name] = result
    return report


def print_report(report: dict) -> None:
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


def heldout_sets(specs: list[str], n: int, exclude: set[str] = frozenset(), seed: int = 0) -> dict[str, list[str]]:
    """Named sets of held-out queries from `FILE` or `FILE@tag,tag` specs (a query file; with tags, only the lines
    whose source field carries one): repeats and queries in `exclude` (the training pool; compared up to case and
    spaces) dropped, then `n` of them drawn with a fixed seed (0: all)."""
    from gemma_embed.data.query_files import read_queries

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
