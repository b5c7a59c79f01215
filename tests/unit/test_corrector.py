"""Correction guided by the encoder (gemma_embed/corrector.py): the edits it tries, a loop that never lowers the
cosine and starts no lower than the bank's nearest query, that inverts where the words are within reach, that uses
the decoder's candidates and proposals (tiny random decoder), and the refusal of held-out sets that leak into the
bank."""

import random

import pytest
import torch
import torch.nn.functional as F

from gemma_embed.corrector import Corrector, CorrectorSettings, edits
from gemma_embed.eval.inversion import check_no_leak, heldout_sets

VOCAB = ["cheap", "flights", "to", "rome", "hotels", "in", "paris", "best", "running", "shoes", "for", "flat", "feet",
         "how", "tall", "is", "everest", "what", "the", "a"]


def bag_of_words(texts: list[str]) -> torch.Tensor:
    """A toy encoder whose space is exactly invertible up to word order: word counts with position weights (so
    that order matters a little), plus a constant to keep the empty text off the origin."""
    out = torch.zeros(len(texts), len(VOCAB) + 1)
    for i, text in enumerate(texts):
        for j, w in enumerate(text.split()):
            if w in VOCAB:
                out[i, VOCAB.index(w)] += 1.0 + 0.05 * j
        out[i, -1] = 0.1
    return out


def test_edits_are_every_deletion_then_substitutions_and_insertions_from_the_pool():
    rng = random.Random(0)
    out = edits(["cheap", "hotels", "rome"], ["flights", "to"], 20, rng)
    assert {"hotels rome", "cheap rome", "cheap hotels"} <= set(out)  # every deletion
    assert "cheap hotels rome" not in out and len(out) == len(set(out))
    assert all(len(t.split()) in (2, 3, 4) and set(t.split()) <= {"cheap", "hotels", "rome", "flights", "to"} for t in out)
    assert any(len(t.split()) == 4 for t in out) and any(len(t.split()) == 3 for t in out)  # insertions, substitutions
    assert edits(["cheap", "hotels", "rome"], ["flights", "to"], 20, random.Random(0)) == out  # seeded
    # words proposed for a position are offered there
    proposed = edits(["a"], [], 10, random.Random(1), proposals=[["best"], ["shoes"]])
    assert set(proposed) <= {"best", "shoes", "best a", "a shoes", "shoes a", "a best"} and proposed


def test_the_loop_never_lowers_the_cosine_and_starts_from_the_nearest_bank_query():
    bank = ["cheap hotels in rome", "flights to paris", "best running shoes", "how tall is everest", "what is a cat"]
    targets = ["cheap flights to rome", "running shoes for flat feet", "how tall is the everest"]
    vectors = bag_of_words(targets)
    corrector = Corrector(bag_of_words, bank, settings=CorrectorSettings(rounds=6, beam=3, neighbours=3, edits=30),
                          progress=False)
    results = corrector.correct(vectors)
    sims = F.normalize(vectors, dim=-1) @ F.normalize(bag_of_words(bank), dim=-1).T
    for c, best_bank in zip(results, sims.max(dim=1).values.tolist()):
        cosines = [cos for _, cos in c.rounds]
        assert all(b >= a for a, b in zip(cosines, cosines[1:])), cosines  # never lower
        assert c.rounds[0][1] == pytest.approx(best_bank)  # no decoder: round 0 is the nearest bank query
        assert c.cosine >= best_bank - 1e-6 and c.encodes > 0
    # the target's words are all in reach (bank neighbours' words): the loop finds it, or a reordering of it
    assert sorted(results[0].text.split()) == sorted("cheap flights to rome".split())
    assert results[0].cosine > 0.99 > sims[0].max()
    assert results[0].at(100) == results[0].rounds[-1] and results[0].at(0) == results[0].rounds[0]


def test_a_target_stops_when_its_cosine_stops_rising():
    corrector = Corrector(bag_of_words, ["cheap flights to rome"], settings=CorrectorSettings(rounds=10, patience=2),
                          progress=False)
    [c] = corrector.correct(bag_of_words(["cheap flights to rome"]))  # round 0 is already exact
    assert c.stopped_at == 2 and c.cosine == pytest.approx(1.0)


def test_the_decoder_supplies_round_zero_its_candidates_and_its_proposals(tiny_backbone, tokenizer):
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    queries = ["best running shoes", "cheap flights to rome", "how tall is everest"]
    ids = tokenizer(queries)["input_ids"]
    vocab = sorted({t for row in ids for t in row} | {0, 1, 2, 3})
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, tokenizer=tokenizer, embedding_dim=len(VOCAB) + 1,
                                           prefix_length=2).eval()
    vectors = bag_of_words(queries)
    proposals = decoder.propose_words(vectors[:2], ["best running", "a"], tokenizer, k=3)
    assert [len(p) for p in proposals] == [3, 2]  # one list per word position, and one after the last word
    words = {tokenizer.decode([t]).strip() for t in vocab} - {""}
    assert all(len(p) <= 3 and set(p) <= words for row in proposals for p in row)
    settings = CorrectorSettings(rounds=2, beam=2, neighbours=2, beams=2, samples=2, edits=8, proposals=2)
    corrector = Corrector(bag_of_words, ["flights to paris", "best shoes"], decoder=decoder, tokenizer=tokenizer,
                          settings=settings, progress=False)
    results = corrector.correct(vectors)
    greedy = [c[0] for c in decoder.decode(vectors, tokenizer)]
    for c, g in zip(results, greedy):
        assert c.rounds[0][0] == g  # round 0: the decoder alone, even where it wrote nothing
        cosines = [cos for _, cos in c.rounds]
        assert all(b >= a for a, b in zip(cosines, cosines[1:]))
    # each result lists the closest queries it found, best first, its best among them
    for c in results:
        assert c.shortlist[0] == c.rounds[-1] and len(c.shortlist) <= settings.shortlist
        assert [cos for _, cos in c.shortlist] == sorted((cos for _, cos in c.shortlist), reverse=True)


def test_the_callers_decoded_queries_replace_the_decoders_and_a_run_repeats(tiny_backbone, tokenizer):
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    queries = ["best running shoes", "cheap flights to rome"]
    vocab = sorted({t for row in tokenizer(queries)["input_ids"] for t in row} | {0, 1, 2, 3})
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, tokenizer=tokenizer, embedding_dim=len(VOCAB) + 1,
                                           prefix_length=2).eval()
    vectors = bag_of_words(queries)
    settings = CorrectorSettings(rounds=2, beam=2, neighbours=0, beams=0, samples=3, edits=4, proposals=0, guided=0)
    corrector = Corrector(bag_of_words, ["flights to paris"], decoder=decoder, tokenizer=tokenizer,
                          settings=settings, progress=False)
    # sampling is seeded: the same run twice gives the same queries, whatever the global generator did between
    first = corrector.correct(vectors)
    torch.manual_seed(123)
    assert [c.rounds for c in corrector.correct(vectors)] == [c.rounds for c in first]
    # given (greedy, samples), round 0 is the given greedy query and round 1 scores the given samples
    given = (["best shoes", "rome"], [["best running shoes"], ["cheap flights to rome"]])
    out = corrector.correct(vectors, decoded=given)
    assert [c.rounds[0][0] for c in out] == given[0]
    assert [c.rounds[1] for c in out] == [(q, pytest.approx(1.0)) for q in queries]  # each sample is exact
    with pytest.raises(ValueError, match="2 targets but 1 decoded queries"):
        corrector.correct(vectors, decoded=(["x"], [[]]))


class RecordingDecoder:
    """A stand-in decoder: writes `first` for round 0, `later` for every steered aim, and records the aims."""

    def __init__(self, first: str, later: str):
        self.first, self.later, self.aims, self.autocast = first, later, [], []

    def decode(self, vectors, tokenizer, mode="greedy", num_candidates=1):
        self.autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        if not self.aims and self.first is not None:
            self.aims.append(None)  # round 0's greedy call
            return [[self.first] for _ in vectors]
        self.aims.append(vectors.clone())
        return [[self.later] for _ in vectors]


def test_steering_decodes_from_the_target_pushed_away_from_the_best_hypothesis():
    target = bag_of_words(["cheap flights to rome"])
    decoder = RecordingDecoder("cheap flights", "cheap flights to rome")
    settings = CorrectorSettings(rounds=1, beam=1, neighbours=0, beams=0, samples=0, edits=0, proposals=0, guided=0,
                                 steer=2)
    [c] = Corrector(bag_of_words, decoder=decoder, tokenizer=object(), settings=settings, progress=False).correct(target)
    t, h = F.normalize(target[0], dim=-1), F.normalize(bag_of_words(["cheap flights"])[0], dim=-1)
    aims = decoder.aims[1]
    assert aims.shape == (2, t.shape[0])
    for s, aim in zip((1, 2), aims):
        assert torch.allclose(aim, F.normalize(t + s * (t - h), dim=-1), atol=1e-5)
    assert c.rounds[0][0] == "cheap flights" and c.rounds[1] == ("cheap flights to rome", pytest.approx(1.0))
    # without steering, nothing else in this run could have found it
    decoder = RecordingDecoder("cheap flights", "cheap flights to rome")
    [c] = Corrector(bag_of_words, decoder=decoder, tokenizer=object(), settings=settings.update("steer=0"),
                    progress=False).correct(target)
    assert c.cosine < 0.99 and decoder.aims == [None]


def test_without_word_edits_every_candidate_is_written_by_the_decoder_or_a_bank_query():
    target = bag_of_words(["cheap flights to rome"])
    settings = CorrectorSettings(rounds=3, beam=2, neighbours=1, beams=0, samples=0, edits=4, proposals=0, guided=0,
                                 steer=1, word_edits=0, patience=5)
    decoder = RecordingDecoder("cheap flights", "cheap rome")
    [c] = Corrector(bag_of_words, ["flights to rome"], decoder=decoder, tokenizer=object(), settings=settings,
                    progress=False).correct(target)
    assert {t for t, _ in c.shortlist} == {"cheap flights", "cheap rome", "flights to rome"}
    # with them, the edits of those hypotheses are candidates too
    [c] = Corrector(bag_of_words, ["flights to rome"], decoder=RecordingDecoder("cheap flights", "cheap rome"),
                    tokenizer=object(), settings=settings.update("word_edits=1"), progress=False).correct(target)
    assert {t for t, _ in c.shortlist} - {"cheap flights", "cheap rome", "flights to rome"}


def test_the_decoder_writes_in_the_embedders_precision():
    """bf16 autocast around every decoder call where the embedder computes in it (a CPU with native bf16), none
    where it computes in float32; the cosines themselves stay float32 either way."""
    from gemma_embed.precision import Decision

    settings = CorrectorSettings(rounds=2, beam=1, neighbours=0, beams=0, samples=2, edits=0, proposals=0, guided=0,
                                 steer=1, patience=5)
    for precision, expected in (("bf16", True), ("no", False)):
        def embed(texts):
            return bag_of_words(texts)

        embed.precision = Decision(precision, "test")
        decoder = RecordingDecoder("cheap flights", "cheap rome")
        [c] = Corrector(embed, decoder=decoder, tokenizer=object(), settings=settings, progress=False).correct(
            bag_of_words(["cheap flights to rome"]))
        assert len(decoder.autocast) == 4 and set(decoder.autocast) == {expected}  # greedy, samples, 2 steered
        assert isinstance(c.cosine, float) and c.cosine == pytest.approx(float(F.cosine_similarity(
            bag_of_words([c.text]), bag_of_words(["cheap flights to rome"]))[0]), abs=1e-6)


def test_held_out_sets_that_leak_into_the_bank_are_refused(tmp_path):
    with pytest.raises(ValueError, match="1 held-out queries are in the pool .*'Cheap Flights'"):
        check_no_leak({"set": ["how tall", "Cheap Flights"]}, ["cheap  flights", "other"])
    check_no_leak({"set": ["how tall"]}, ["cheap flights"])
    path = tmp_path / "q.tsv"
    path.write_text("query\tsource\nCheap Flights\tx\nhow tall\tx\nhow tall\tx\n")
    assert heldout_sets([str(path)], 0, exclude={"cheap  flights"}) == {"q.tsv": ["how tall"]}  # up to case, once


def test_settings_are_checked():
    with pytest.raises(ValueError, match="needs a decoder or a bank"):
        Corrector(bag_of_words, [])
    with pytest.raises(ValueError, match="rounds must be >= 0"):
        CorrectorSettings(rounds=-1)
    with pytest.raises(ValueError, match="beam must be >= 1"):
        CorrectorSettings(beam=0)
    with pytest.raises(ValueError, match="shortlist must be >= 1"):
        CorrectorSettings(shortlist=0)
    # from a command line (examples/fan_out.py --corrector, benchmarks/corrector_sweep.py --setting)
    base = CorrectorSettings(rounds=5)
    assert base.update("beams=0, proposals=0") == CorrectorSettings(rounds=5, beams=0, proposals=0)
    assert base.update("") == base and base.update("min_gain=0.01").min_gain == 0.01
    assert base.update("shortlist=3") == CorrectorSettings(rounds=5, shortlist=3)
    for text, message in (("beems=0", "'beems=0': expected FIELD=VALUE, FIELD one of"), ("beams", "expected FIELD"),
                          ("beams=x", "'x' is not a number"), ("beam=0", "beam must be >= 1")):
        with pytest.raises(ValueError, match=message):
            base.update(text)


def test_the_gradient_guide_offers_single_token_substitutions_from_the_given_words(make_model, tokenizer, tmp_path):
    from gemma_embed.corrector import GradientGuide
    from gemma_embed.encoder import load_embedder

    folder = tmp_path / "enc"
    make_model(seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    embed = load_embedder(str(folder), precision="no")
    guide = GradientGuide.of(embed)
    assert guide is not None and GradientGuide.of(bag_of_words) is None  # only a sentence-transformers embedder
    words = ["woman", "guitar", "dog"]
    [out] = guide.substitutions(["a man plays music"], embed(["a dog plays guitar"]), [words], k=100)
    # every position, every word: 4 positions x 3 words, none equal to the text itself
    expected = {" ".join(w if i == j else x for i, x in enumerate("a man plays music".split()))
                for j in range(4) for w in words}
    assert set(out) == expected and len(out) == 12
    # ranked by the first-order gain: the best few, re-embedded, beat the worst few on average
    sims = F.cosine_similarity(embed(out), embed(["a dog plays guitar"]).expand(len(out), -1)).tolist()
    assert sum(sims[:3]) / 3 > sum(sims[-3:]) / 3
    settings = CorrectorSettings(rounds=3, beam=2, neighbours=2, edits=4, guided=4)
    results = Corrector(embed, ["a man plays music", "the city"], settings=settings, progress=False).correct(
        embed(["a dog plays guitar"]))
    cosines = [c for _, c in results[0].rounds]
    assert cosines == sorted(cosines) and results[0].cosine > cosines[0]


def test_a_prefix_embedder_is_guided_by_the_gradient_of_its_own_prefix(make_model, tokenizer, tmp_path):
    """train/evaluate.py --dims: the inversion at d dimensions ranks its substitutions by the cosine of the first d
    dimensions, the space it is judged in, not the full vector's."""
    from gemma_embed.corrector import GradientGuide
    from gemma_embed.encoder import load_embedder, prefix_embedder

    folder = tmp_path / "enc"
    make_model(seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    embed = load_embedder(str(folder), precision="no")
    prefix = prefix_embedder(embed, 8)
    target = prefix(["a dog plays guitar"])
    assert target.shape == (1, 8) and torch.allclose(target, F.normalize(embed(["a dog plays guitar"])[:, :8]))
    guide = GradientGuide.of(prefix)
    assert guide is not None and GradientGuide.of(prefix_embedder(bag_of_words, 8)) is None
    words = ["woman", "guitar", "dog", "the", "cat", "sings"]
    [out] = guide.substitutions(["a man plays music"], target, [words], k=100)
    assert len(out) == 24
    sims = F.cosine_similarity(prefix(out), target.expand(len(out), -1)).tolist()
    assert sum(sims[:4]) / 4 > sum(sims[-4:]) / 4


def test_bank_inversion_reports_the_nearest_query_and_the_corrected_one_for_any_encoder():
    """The decoder-free yardstick of train/evaluate.py --invert: round 0 is the nearest bank query, the last round
    what the encoder-judged edits reached (exact here, where the target's words are in the neighbours' reach)."""
    from gemma_embed.eval.inversion import bank_inversion

    bank = ["cheap hotels in rome", "flights to paris", "best running shoes", "how tall is everest", "what is a cat"]
    sets = {"held": ["cheap flights to rome", "how tall is the everest"]}
    settings = CorrectorSettings(rounds=6, beam=3, neighbours=3, edits=30, guided=0)
    out = bank_inversion(bag_of_words, sets, bank, settings)
    assert out["invert_held_exact_match_nearest"] == 0.0 and out["invert_held_exact_match_corrected"] >= 50.0
    assert out["invert_held_token_f1_corrected"] > out["invert_held_token_f1_nearest"]
    assert out["invert_held_roundtrip_cosine_corrected"] > out["invert_held_roundtrip_cosine_nearest"]
    with pytest.raises(ValueError, match="leak"):
        bank_inversion(bag_of_words, sets, bank + ["Cheap flights to Rome"], settings)
