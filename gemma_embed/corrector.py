"""Inversion by correction, with the encoder as the judge (vec2text's loop, without a trained corrector): hypotheses
are re-embedded by the encoder, the closest to the target are kept and edited, and the loop repeats.

    corrector = Corrector(embed, bank=pool, bank_vectors=pool_vectors, decoder=decoder, tokenizer=tokenizer)
    results = corrector.correct(targets)    # one Correction per target vector
    results[0].text, results[0].cosine      # the best query found and its cosine to the target
    results[0].rounds                       # [(text, cosine)]: the best after round 0, 1, 2, ...

Round 0 is the decoder's greedy query alone (without a decoder, the nearest query of the bank), even where it is
empty. Round 1 adds three sources of candidates: the decoder's beams and samples, the `neighbours` nearest queries
of the bank, and edits of the round-0 query. Every later round edits each query of the beam: all single-word
deletions, and substitutions and insertions of words drawn from that target's own candidates (the bank neighbours'
and the decoder's words) and from the decoder's next-word proposals at each position of the hypothesis, and token
substitutions ranked by the encoder's gradient (`GradientGuide`). With `steer`, every round also has the decoder
write from the target pushed away from the best hypothesis's vector (t + s (t - h)): where it landed short, aim
past the target. All candidates of all targets are embedded together in batches; the `beam` closest to each target
are kept; a target stops when its best cosine has not risen by `min_gain` for `patience` rounds. The beam always
holds the best so far, so the best cosine never falls from one round to the next and, from round 1 on, is at
least the nearest bank query's. With `word_edits=0` there are no edits at all: every candidate is the decoder's
(greedy, beams, samples, steered) or a bank query, so every result is text a language model wrote, as vec2text's
are. With a trained corrector (`trained`, a GemmaEmbedCorrector from train/corrector.py) and `generated`, every
round also has it rewrite each hypothesis of the beam it has not rewritten yet, reading the target, the hypothesis
and the hypothesis's vector, into `generated` beam-search candidates: vec2text's sequence-level beam
(gemma_embed.recipes.TRAINED_CORRECTION keeps only those). Each result also carries its `shortlist`: the closest
queries found, best first,
for a final pick by another measure (gemma_embed/reformulate.py weighs fluency under a language model against the
cosine there).

The bank must not hold the queries being inverted: an exact match found there is a leak, not an inversion
(gemma_embed.eval.inversion refuses such sets).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from gemma_embed.precision import autocast_of

Embed = Callable[[list[str]], torch.Tensor]
FLOATS = {"min_gain"}  # the settings that are not whole numbers


@dataclass
class CorrectorSettings:
    rounds: int = 10  # correction rounds after round 0
    beam: int = 2  # hypotheses kept per target
    neighbours: int = 16  # nearest bank queries added at round 1
    beams: int = 4  # the decoder's beam-search candidates at round 1
    samples: int = 8  # the decoder's sampled candidates at round 1
    edits: int = 4  # random substitutions and insertions per hypothesis per round (deletions come on top)
    proposals: int = 4  # the decoder's next words per position offered to the edits (0: none)
    # token substitutions per hypothesis per round ranked by the encoder's gradient (0: none); an embedder without
    # a sentence-transformers model to differentiate (a raw backbone) gets as many random edits instead
    guided: int = 12
    # the decoder's greedy query from t + s (t - h), s = 1 .. steer, every round (0: none); t the target, h the best
    # hypothesis's vector
    steer: int = 0
    # 0: no word-level edits at all (deletions, substitutions, insertions, the gradient's): every candidate is written
    # by the decoder (greedy, beams, samples, steered) or is a bank query, as vec2text keeps only generated text
    word_edits: int = 1
    # the trained corrector's rewrites of each hypothesis of the beam, every round (beam search; 0: none; needs a
    # trained corrector): vec2text's sequence-level beam
    generated: int = 0
    patience: int = 2  # rounds without a gain of min_gain before a target stops
    min_gain: float = 1e-4
    shortlist: int = 8  # the closest queries found that each result lists, best first
    seed: int = 0

    def __post_init__(self):
        for name in ("rounds", "beam", "neighbours", "beams", "samples", "edits", "proposals", "guided", "steer",
                     "patience", "word_edits", "generated"):
            if getattr(self, name) < 0:
                raise ValueError(f"corrector setting {name} must be >= 0, got {getattr(self, name)}")
        for name in ("beam", "shortlist"):
            if getattr(self, name) < 1:
                raise ValueError(f"corrector setting {name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def update(self, text: str) -> "CorrectorSettings":
        """These settings with `FIELD=VALUE,...` applied, e.g. "beams=0,proposals=0" (a command line's)."""
        known, values = {f.name for f in fields(self)}, {}
        for item in filter(None, (i.strip() for i in text.split(","))):
            key, sep, value = item.partition("=")
            if key not in known or not sep:
                raise ValueError(f"corrector setting {item!r}: expected FIELD=VALUE, FIELD one of {sorted(known)}")
            try:
                values[key] = float(value) if key in FLOATS else int(value)
            except ValueError:
                raise ValueError(f"corrector setting {item!r}: {value!r} is not a number") from None
        return replace(self, **values)


@dataclass
class Correction:
    rounds: list[tuple[str, float]]  # the best (text, cosine) after each round, round 0 first
    encodes: int  # texts this target had embedded
    stopped_at: int  # the last round that ran for this target
    shortlist: list[tuple[str, float]] = field(default_factory=list)  # the closest (text, cosine) found, best first

    @property
    def text(self) -> str:
        return self.rounds[-1][0]

    @property
    def cosine(self) -> float:
        return self.rounds[-1][1]

    def at(self, round_: int) -> tuple[str, float]:
        """The best after `round_` (the last one once the target stopped early)."""
        return self.rounds[min(round_, len(self.rounds) - 1)]


@dataclass
class _Target:
    vector: torch.Tensor
    words: list[str]  # the words edits draw from
    extra: list[str]  # round-1 candidates: the decoder's beams and samples, the bank neighbours
    beam: list[tuple[str, float]] = field(default_factory=list)
    seen: set = field(default_factory=set)
    history: list[tuple[str, float]] = field(default_factory=list)
    encodes: int = 0
    idle: int = 0  # rounds without a gain
    proposals: dict = field(default_factory=dict)  # hypothesis -> next-word proposals per position
    guided: dict = field(default_factory=dict)  # hypothesis -> the gradient's substitutions
    vectors: dict = field(default_factory=dict)  # beam hypothesis -> its vector
    rewritten: set = field(default_factory=set)  # hypotheses the trained corrector has rewritten already
    stopped: bool = False
    top: list = field(default_factory=list)  # the `shortlist` closest (text, cosine) found


def edits(words: list[str], pool: Sequence[str], n: int, rng: random.Random,
          proposals: Sequence[Sequence[str]] = ()) -> list[str]:
    """Single-word edits of a query: every deletion, then up to `n` distinct substitutions and insertions whose
    word comes from `pool` or, at position i, from `proposals[i]` (words proposed for that position)."""
    out = dict.fromkeys(" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))) if len(words) > 1 else {}
    original = " ".join(words)
    if pool or any(proposals):
        for _ in range(4 * n):
            if len(out) >= n + len(words):
                break
            i = rng.randrange(len(words) + 1)
            local = proposals[i] if i < len(proposals) and proposals[i] and rng.random() < 0.5 else pool
            if not local:
                continue
            word = rng.choice(local)
            if i < len(words) and rng.random() < 0.5:
                candidate = words[:i] + [word] + words[i + 1 :]
            else:
                candidate = words[:i] + [word] + words[i:]
            out[" ".join(candidate)] = None
    out.pop(original, None)
    return [t for t in out if t.strip()]


class GradientGuide:
    """Token substitutions ranked by the encoder's gradient (HotFlip's first-order estimate): one forward and
    backward pass over the hypotheses gives, at every token position j, the gradient g_j of the cosine to the
    target with respect to the input embedding; replacing token x_j by w changes the cosine by about
    g_j . (E[w] - E[x_j]). The best `k` (position, token) pairs of each hypothesis, over its words that are one
    token (written bare at the text's first position, after a space elsewhere), are returned as texts for the
    encoder to judge exactly. Works on a
    sentence-transformers model whose first module is a transformers model."""

    def __init__(self, model, precision=None):
        self.model, self.tokenizer, self.precision = model, model.tokenizer, precision
        self.embeddings = model[0].auto_model.get_input_embeddings()

    @classmethod
    def of(cls, embed) -> "GradientGuide | None":
        """The guide of an embedder from gemma_embed.encoder.load_embedder (None where it has no
        sentence-transformers model, a raw backbone's say)."""
        model = getattr(embed, "sentence_transformer", None)
        return cls(model, getattr(embed, "precision", None)) if model is not None else None

    def _tokens(self, words: Sequence[str], prefix: str) -> list[int]:
        """The words that are one token, written as at the start of a text ("") or after a space (" ")."""
        if not words:
            return []
        ids = self.tokenizer([prefix + w for w in words], add_special_tokens=False)["input_ids"]
        return sorted({row[0] for row in ids if len(row) == 1})

    def substitutions(self, texts: list[str], targets: torch.Tensor, words: list[Sequence[str]], k: int) -> list[list[str]]:
        features = dict(self.model.preprocess(texts))
        captured = {}

        def keep(module, inputs, output):
            output.retain_grad()
            captured["embeds"] = output

        hook = self.embeddings.register_forward_hook(keep)
        try:
            with torch.enable_grad(), autocast_of(self):  # in the embedder's precision
                # the targets' dimensions: a prefix's cosine (gemma_embed/encoder.py, prefix_embedder)
                out = self.model(features)["sentence_embedding"].float()[:, :targets.shape[-1]]
                F.cosine_similarity(out, targets.float(), dim=-1).sum().backward()
        finally:
            hook.remove()
            self.model.zero_grad(set_to_none=True)
        grads, embeds = captured["embeds"].grad.float(), captured["embeds"].detach().float()
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        special = set(self.tokenizer.all_special_ids)
        results = []
        for b, text in enumerate(texts):
            positions = [j for j in range(ids.shape[1]) if mask[b, j] and int(ids[b, j]) not in special]
            first, rest = self._tokens(words[b], ""), self._tokens(words[b], " ")
            pairs = [(j, c) for i, j in enumerate(positions) for c in (first if i == 0 else rest) if c != int(ids[b, j])]
            if not pairs:
                results.append([])
                continue
            tokens = sorted({c for _, c in pairs})
            column = {c: i for i, c in enumerate(tokens)}
            with torch.no_grad():
                table = self.embeddings(torch.tensor(tokens)).float()  # as the model sees them (Gemma scales them)
            at = torch.tensor([j for j, _ in pairs])
            g = grads[b, at]  # (pairs, H)
            gain = (g * table[torch.tensor([column[c] for _, c in pairs])]).sum(-1) - (g * embeds[b, at]).sum(-1)
            out = []
            for index in gain.argsort(descending=True).tolist():
                j, c = pairs[index]
                row = ids[b].clone()
                row[j] = c
                kept = [int(t) for t, m in zip(row, mask[b]) if m and int(t) not in special]
                candidate = " ".join(self.tokenizer.decode(kept, clean_up_tokenization_spaces=False).split())
                if candidate and candidate != text and candidate not in out:
                    out.append(candidate)
                if len(out) == k:
                    break
            results.append(out)
        return results


class Corrector:
    """See the module's docstring. `embed`: texts -> vectors in the target's space (the encoder the targets came
    from); `bank`, `bank_vectors`: existing queries and their vectors (encoded here if not given); `decoder` and
    `tokenizer`: a GemmaEmbedDecoder for the same encoder (optional). The decoder writes in the embedder's precision
    (`embed.precision` from gemma_embed.encoder.load_embedder: bf16 autocast where the CPU has native bf16)."""

    def __init__(self, embed: Embed, bank: Sequence[str] = (), bank_vectors=None, decoder=None, tokenizer=None,
                 settings: CorrectorSettings | None = None, progress: bool = True, trained=None):
        self.embed, self.decoder, self.tokenizer, self.trained = embed, decoder, tokenizer, trained
        self.settings = settings or CorrectorSettings()
        self.progress = progress
        self.bank = list(bank)
        self.bank_vectors = None
        if self.bank:
            vectors = embed(self.bank) if bank_vectors is None else torch.as_tensor(np.array(bank_vectors))
            if len(vectors) != len(self.bank):
                raise ValueError(f"{len(self.bank)} bank queries but {len(vectors)} bank vectors")
            self.bank_vectors = F.normalize(vectors.float(), dim=-1)
        if decoder is not None and tokenizer is None:
            raise ValueError("a decoder needs its tokenizer")
        if decoder is None and not self.bank:
            raise ValueError("the corrector needs a decoder or a bank of queries to start from")
        if self.settings.generated and trained is None:
            raise ValueError("corrector setting generated needs a trained corrector (train/corrector.py)")
        self.guide = GradientGuide.of(embed) if self.settings.guided and self.settings.word_edits else None

    # ----------------------------------------------------------------------------------------------- sources
    def _neighbours(self, targets: torch.Tensor, k: int) -> list[list[str]]:
        """The `k` nearest bank queries of each target."""
        if self.bank_vectors is None or k == 0:
            return [[] for _ in targets]
        top = (targets @ self.bank_vectors.T).topk(min(k, len(self.bank)), dim=1)
        return [[self.bank[i] for i in row] for row in top.indices.tolist()]

    def _decoded(self, targets: torch.Tensor, given=None) -> tuple[list[str], list[list[str]]]:
        """The decoder's greedy query per target, and its beams and samples (`given`: (greedy, samples) the caller
        has decoded already, used instead of decoding them again)."""
        s, n = self.settings, len(targets)
        if self.decoder is None:
            return [""] * n, [[] for _ in range(n)]
        if given is not None and (len(given[0]) != n or len(given[1]) != n):
            raise ValueError(f"{n} targets but {len(given[0])} decoded queries and {len(given[1])} sample groups")
        greedy, extra = [], []
        for i in range(0, n, 32):
            batch = targets[i : i + 32]
            none = [[] for _ in range(len(batch))]
            with autocast_of(self.embed):
                beams = (self.decoder.decode(batch, self.tokenizer, mode="beam", num_candidates=s.beams)
                         if s.beams else none)
                if given is not None:
                    samples = given[1][i : i + 32]
                else:
                    greedy += [c[0] for c in self.decoder.decode(batch, self.tokenizer)]
                    samples = (self.decoder.decode(batch, self.tokenizer, mode="sample", num_candidates=s.samples)
                               if s.samples else none)
            extra += [[*b, *c] for b, c in zip(beams, samples)]
        return (list(given[0]) if given is not None else greedy), extra

    def _proposals(self, states: list[_Target]) -> None:
        """The decoder's next-word proposals at each word position of each beam hypothesis, conditioned on the
        target (one teacher-forced pass over all hypotheses)."""
        k = self.settings.proposals
        if self.decoder is None or not k:
            return
        todo = [(st, text) for st in states for text, _ in st.beam if text not in st.proposals]
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            with autocast_of(self.embed):
                words = self.decoder.propose_words(torch.stack([st.vector for st, _ in chunk]), [t for _, t in chunk],
                                                   self.tokenizer, k)
            for (st, text), w in zip(chunk, words):
                st.proposals[text] = w

    def _guided(self, states: list[_Target]) -> None:
        """The encoder gradient's best substitutions of each beam hypothesis of every target (one batched pass per
        64 hypotheses; kept per hypothesis)."""
        todo = [(st, text) for st in states for text, _ in st.beam if text.strip() and text not in st.guided]
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            found = self.guide.substitutions([t for _, t in chunk], torch.stack([st.vector for st, _ in chunk]),
                                             [self._guide_words(st, t) for st, t in chunk], self.settings.guided)
            for (st, text), candidates in zip(chunk, found):
                st.guided[text] = candidates

    def _steered(self, states: list[_Target]) -> list[list[str]]:
        """Per target, the decoder's greedy queries from t + s (t - h) for s = 1 .. steer, h the vector of the best
        hypothesis so far."""
        k = self.settings.steer
        if self.decoder is None or not k:
            return [[] for _ in states]
        aims = [F.normalize(st.vector + s * (st.vector - st.vectors[st.beam[0][0]]), dim=-1)
                for st in states for s in range(1, k + 1)]
        with autocast_of(self.embed):
            texts = [c[0] for i in range(0, len(aims), 32)
                     for c in self.decoder.decode(torch.stack(aims[i : i + 32]), self.tokenizer)]
        return [texts[i * k : (i + 1) * k] for i in range(len(states))]

    def _rewritten(self, states: list[_Target]) -> list[list[str]]:
        """Per target, the trained corrector's `generated` rewrites (beam search) of each beam hypothesis it has not
        rewritten yet, given the target, the hypothesis and the hypothesis's vector."""
        k = self.settings.generated
        if self.trained is None or not k:
            return [[] for _ in states]
        todo = [(n, st, text) for n, st in enumerate(states) for text, _ in st.beam if text not in st.rewritten]
        out = [[] for _ in states]
        for i in range(0, len(todo), 32):
            chunk = todo[i : i + 32]
            with autocast_of(self.embed):
                written = self.trained.correct(
                    torch.stack([st.vector for _, st, _ in chunk]), [t for _, _, t in chunk],
                    torch.stack([st.vectors[t] for _, st, t in chunk]), self.tokenizer,
                    mode="beam" if k > 1 else "greedy", num_candidates=k)
            for (n, st, text), group in zip(chunk, written):
                st.rewritten.add(text)
                out[n] += group
        return out

    @staticmethod
    def _guide_words(st: _Target, text: str) -> list[str]:
        proposed = [w for position in st.proposals.get(text, ()) for w in position]
        return list(dict.fromkeys([*st.words, *proposed]))

    # -------------------------------------------------------------------------------------------------- loop
    def _score(self, states: list[_Target], proposals: list[list[str]], empty: bool = False) -> None:
        """Embed each target's new candidates (all targets together) and keep the `beam` closest. An empty
        candidate counts only with `empty` (round 0: what the decoder wrote, even if nothing)."""
        new = [[c for c in dict.fromkeys(group) if (empty or c.strip()) and c not in st.seen]
               for st, group in zip(states, proposals)]
        flat = [c for group in new for c in group]
        vectors = F.normalize(self.embed(flat).float(), dim=-1) if flat else None
        at = 0
        for st, group in zip(states, new):
            if not group:
                continue
            block = vectors[at : at + len(group)]
            sims = (block @ st.vector).tolist()
            at += len(group)
            st.seen.update(group)
            st.encodes += len(group)
            st.beam = sorted(st.beam + list(zip(group, sims)), key=lambda x: -x[1])[: self.settings.beam]
            st.top = sorted(st.top + list(zip(group, sims)), key=lambda x: -x[1])[: self.settings.shortlist]
            found = dict(zip(group, block))
            st.vectors = {t: found[t] if t in found else st.vectors[t] for t, _ in st.beam}

    def _record(self, st: _Target) -> None:
        best = st.beam[0] if st.beam else ("", float("nan"))
        gained = not st.history or best[1] > st.history[-1][1] + self.settings.min_gain
        st.idle = 0 if gained else st.idle + 1
        st.history.append(best)
        if st.idle >= max(1, self.settings.patience):
            st.stopped = True

    def correct(self, targets: torch.Tensor, decoded=None) -> list[Correction]:
        """Correct toward each row of `targets` ((n, d) vectors in the encoder's space). `decoded`: the decoder's
        greedy query and sampled queries per target, where the caller has them (they replace round 0's greedy
        decoding and round 1's samples). The decoder's sampling draws from a generator seeded by `seed`, so a run
        is repeatable."""
        s = self.settings
        with torch.random.fork_rng():
            torch.manual_seed(s.seed)
            return self._correct(F.normalize(torch.as_tensor(targets).float(), dim=-1), decoded)

    def _correct(self, targets: torch.Tensor, decoded) -> list[Correction]:
        from tqdm.auto import tqdm

        s = self.settings
        rng = random.Random(s.seed)
        greedy, decoded = self._decoded(targets, decoded)
        neighbours = self._neighbours(targets, max(1, s.neighbours))
        states = []
        for vector, g, extra, near in zip(targets, greedy, decoded, neighbours):
            sources = [g, *extra, *near[: s.neighbours]]
            words = list(dict.fromkeys(w for text in sources for w in text.split()))
            states.append(_Target(vector, words, [*extra, *near[: s.neighbours]]))
        # round 0: the decoder alone (without one: the nearest bank query)
        self._score(states, [[g] if self.decoder is not None else near[:1] for g, near in zip(greedy, neighbours)],
                    empty=True)
        for st in states:
            self._record(st)
            st.idle, st.stopped = 0, False
        for round_ in tqdm(range(1, s.rounds + 1), desc=f"correcting {len(states)} queries", unit="round",
                           disable=not self.progress or s.rounds < 2, dynamic_ncols=True):
            active = [st for st in states if not st.stopped]
            if not active:
                break
            self._proposals(active)
            candidates = []
            random_edits = s.edits + (s.guided if self.guide is None else 0)
            for st, steered, rewritten in zip(active, self._steered(active), self._rewritten(active)):
                group = (list(st.extra) if round_ == 1 else []) + steered + rewritten
                for text, _ in st.beam if s.word_edits else ():
                    group += edits(text.split(), st.words, random_edits, rng, st.proposals.get(text, ()))
                candidates.append(group)
            if self.guide is not None:
                self._guided(active)
                for st, group in zip(active, candidates):
                    group += [c for text, _ in st.beam for c in st.guided.get(text, [])]
            self._score(active, candidates)
            for st in active:
                self._record(st)
        return [Correction(st.history, st.encodes, len(st.history) - 1, st.top) for st in states]
