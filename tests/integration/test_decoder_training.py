"""The query decoder end to end on tiny models, as users run it: train/decoder.py with its smoke config under
`accelerate launch` (and killed and resumed), then train/evaluate.py --decoder and examples/fan_out.py --decoder."""

import json
import subprocess
import sys

import pytest
import yaml
import torch
from safetensors.torch import load_file

from conftest import REPO, train_smoke_decoder as _train
from launch import load_script
from tolerance import assert_scalars_close

pytestmark = pytest.mark.slow


def test_the_smoke_config_trains_and_publishes_a_decoder_with_its_card(trained):
    from transformers import AutoModel

    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["steps"] == 12 and summary["rows"] == 256 and summary["phase"] == "DecoderConfig"
    assert summary["heldout_f1_before"] is not None and summary["heldout_f1_after"] is not None
    config = json.loads((trained / "config.json").read_text())
    assert config["model_type"] == "gemma_embed_decoder" and config["encoder"]["name_or_path"] == "raw:tiny"
    assert len(config["vocab_ids"]) == config["text_config"]["vocab_size"] < 4000  # the training queries' tokens
    assert config["embedding_dim"] == 32 and len(config["encoder"]["fingerprint"]) == 64
    card = (trained / "README.md").read_text()
    assert "The encoder it inverts" in card and config["encoder"]["fingerprint"] in card and "12 steps on 256" in card
    front = yaml.safe_load(card.split("---")[1])  # a vector goes in: no text pipeline, no widget
    saved = json.loads((trained / "tokenizer_config.json").read_text())  # what the tokenizer is, not how it loaded
    assert not {"is_local", "local_files_only"} & set(saved) and saved["tokenizer_class"]
    assert front["pipeline_tag"] == "other" and front["inference"] is False
    decoder = AutoModel.from_pretrained(trained, trust_remote_code=True)
    assert type(decoder).__name__ == "GemmaEmbedDecoder" and not decoder.has_lora
    assert [p.name for p in (trained / "checkpoints").iterdir()] and (trained / "logs/metrics.jsonl").is_file()
    # the score during training comes with the conditioning gap: how much the decoder uses its input
    logged = [json.loads(line) for line in (trained / "logs/metrics.jsonl").read_text().splitlines()]
    gaps = [r["conditioning_gap"] for r in logged if "heldout_token_f1" in r]
    assert len(gaps) == 2 and all(isinstance(g, float) for g in gaps)


@pytest.mark.precision
def test_killed_and_resumed_equals_uninterrupted(queries, trained):
    """Bit for bit, in either precision: the resumed run repeats the same operations on the same shapes."""
    root, db, heldout = queries
    out = root / "killed"
    killed = _train(root, db, heldout, out, "--save_every", "2", env={"GEMMA_EMBED_KILL_AT_STEP": "5"})
    assert killed.returncode != 0 and not (out / "model.safetensors").exists()
    resumed = _train(root, db, heldout, out, "--save_every", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(str(trained / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_time_limit_cuts_the_steps_after_the_first_ten_and_publishes_the_model(queries):
    """max_train_seconds (the demo's decoder stage on a slow CPU): a limit the first 10 steps already spent leaves
    those 10 of the 30 planned, and the model is published as usual (the schedule's cut: test_train_config.py)."""
    root, db, heldout = queries
    out = root / "timed"
    run = _train(root, db, heldout, out, "--max_steps", "30", "--max_train_seconds", "0.01")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "so 10 steps instead of 30" in run.stdout
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 10 and summary["planned_steps"] == 30 and (out / "model.safetensors").is_file()
    logged = [json.loads(line) for line in (out / "logs/metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in logged if "loss" in r) == 10
    assert max(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir()) == 10  # the last step is saved


@pytest.mark.precision
def test_the_same_decoder_whether_the_vectors_were_cached_or_not(queries, make_model, tokenizer, tmp_path):
    """The first run encodes the held-out queries' vectors during its first evaluation (loading a published
    encoder, whose modules draw random numbers as they are built), the second reads them back: the evaluation must
    not move the training's random stream (the noise on the vectors), so both publish the same weights."""
    root, db, heldout = queries
    encoder, vectors = tmp_path / "encoder", tmp_path / "vectors"
    make_model(seed=1).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    for name in ("first", "second"):
        run = _train(root, db, heldout, tmp_path / name, "--encoder", str(encoder), "--vectors", str(vectors),
                     "--max_steps", "4")
        assert run.returncode == 0, run.stderr[-3000:]
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("first", "second"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the decoder records its encoder relative to itself: moved elsewhere side by side, the pair still loads (and a
    # moved decoder without its encoder beside it is refused naming it)
    import shutil

    from gemma_embed.inverter import Inverter

    assert json.loads((tmp_path / "first/config.json").read_text())["encoder"]["name_or_path"] == "../encoder"
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(str(tmp_path / "first"), moved / "first")
    shutil.move(str(encoder), moved / "encoder")
    inverter = Inverter.from_pretrained(moved / "first")
    assert inverter.encoder == str(moved / "first" / "../encoder") and len(inverter.decode(torch.randn(2, inverter.decoder.config.embedding_dim))) == 2


@pytest.mark.precision
def test_evaluate_and_fan_out_with_the_decoder(queries, trained, tmp_path):
    """The relations asserted hold exactly in either precision: the round table, the nearest query and the
    corrector's beam all read one memoised embedding per text."""
    root, db, heldout = queries
    env = {"GEMMA_EMBED_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "train/evaluate.py", "--decoder", str(trained), "--heldout", str(heldout),
                          "--n", "20", "--candidates", "2", "--rounds", "3", "--corrector", "edits=8,steer=1",
                          "--write", "--json", str(tmp_path / "eval.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    result = report["sets"]["heldout.tsv"]
    assert result["queries"] == 20 and -1 <= result["floor_cosine"] <= 1
    # trained on the tiny model's vectors, the decoder uses them: its loss is lower with each query's own vector
    assert result["conditioning"]["gap"] > 0, result["conditioning"]
    assert set(result["modes"]) == {"greedy", "re-ranked (2 sampled + greedy)", "nearest existing query (training pool)"}
    for metrics in result["modes"].values():
        assert 0 <= metrics["token_f1"] <= 100 and 0 <= metrics["exact_match"] <= 100 and metrics["bleu"] >= 0
    # the nearest query of the pool is the pool query closest to the target: its round trip beats greedy's here
    nn = result["modes"]["nearest existing query (training pool)"]["roundtrip_cosine"]
    assert nn >= result["modes"]["greedy"]["roundtrip_cosine"]
    # the round table: round 0 is greedy decoding; correction never lowers a query's cosine, and from round 1 on
    # starts from the pool's nearest query
    table = result["correction"]["rounds"]
    assert list(table) == ["0", "1", "3"] and table["0"] == result["modes"]["greedy"]
    means = [table[r]["roundtrip_cosine"] for r in table]
    assert means == sorted(means) and means[-1] >= nn - 1e-6
    for e in result["examples"]:
        assert e["cosine_by_round"] == sorted(e["cosine_by_round"]) and e["corrected_cosine"] == e["cosine_by_round"][-1]
    assert result["correction"]["seconds_per_query"] > 0 and result["correction"]["encodes_per_query"] > 0
    assert result["correction"]["settings"]["steer"] == 1  # --corrector reaches the loop that ran
    card = (trained / "README.md").read_text()
    assert (trained / "decoder_eval.json").is_file() and "| greedy |" in card and "| corrected, round 3 |" in card
    assert "corrected, round 3" in run.stdout and "encodes per query" in run.stdout

    one = tmp_path / "one.tsv"  # a set of one query: no floor (no pair), everything else as usual
    one.write_text("query\tsource\nwho wrote the song all about that bass\tnq-dev\n")
    small = subprocess.run([sys.executable, "train/evaluate.py", "--decoder", str(trained), "--heldout", str(one),
                            "--candidates", "2", "--rounds", "1", "--corrector", "edits=4"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert small.returncode == 0, small.stderr[-3000:]
    assert "1 queries" in small.stdout and "floor cosine n/a (one query)" in small.stdout
    bad = subprocess.run([sys.executable, "train/evaluate.py", "--decoder", str(trained), "--heldout", str(one),
                          "--rounds", "1", "--corrector", "steer=one"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--corrector: corrector setting 'steer=one': 'one' is not a number" in bad.stderr

    fan = subprocess.run([sys.executable, "examples/fan_out.py", "--decoder", str(trained), "--query", "cheap flights",
                          "--document", "Low-cost airlines fly to Rome every day.", "--steps", "3", "--candidates", "2",
                          "--corrector", "beams=0,proposals=0",
                          "--png", str(tmp_path / "fan.png"), "--json", str(tmp_path / "fan.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert fan.returncode == 0, fan.stderr[-3000:]
    walk = json.loads((tmp_path / "fan.json").read_text())
    assert len(walk["paths"][0]) == 5 and (tmp_path / "fan.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= walk["metrics"]["novel"] <= 1 and len(walk["metrics"]["roundtrip_cosine_by_step"]) == 5
    assert 0 <= walk["metrics"]["closer_distinct"] <= 1 and 0 <= walk["metrics"]["novel_steps"] <= 1
    assert walk["metrics"]["step_cosine"] == sum(r["decoded_sim"] for r in walk["paths"][0][1:-1]) / 3
    assert "distinct steps closer to the document than the seed" in fan.stdout


@pytest.mark.precision
def test_the_pool_vectors_are_read_from_the_training_cache(queries, trained, monkeypatch):
    """The cache is read, not recomputed, and chooses the same nearest queries as vectors encoded afresh. The
    figures that depend only on the chosen texts are equal; the round-trip cosine is the same texts encoded in
    other batches (bf16 autocast moves such a cosine by up to a few ulps: tests/helpers/tolerance.py)."""
    from gemma_embed.data.decoder_queries import training_queries, training_vectors
    from gemma_embed.eval.inversion import evaluate_decoder, heldout_sets
    from gemma_embed.inverter import Inverter

    root, db, heldout = queries
    monkeypatch.setenv("GEMMA_EMBED_CACHE", str(root / "cache"))
    cache, pool = training_vectors(trained), training_queries(trained)
    assert cache == root / "vector_cache"
    files = sorted(cache.glob("*.npy"))
    sets = heldout_sets([str(heldout)], 6, exclude=set(pool))
    cached = evaluate_decoder(Inverter.from_pretrained(trained), sets, candidates=1)  # the cache is the default
    assert sorted(cache.glob("*.npy")) == files  # read back, not encoded and stored again
    uncached = Inverter.from_pretrained(trained)
    uncached.cache = None
    fresh = evaluate_decoder(uncached, sets, candidates=1)
    name = "nearest existing query (training pool)"
    assert [e["nearest"] for e in cached["sets"]["heldout.tsv"]["examples"]] == \
        [e["nearest"] for e in fresh["sets"]["heldout.tsv"]["examples"]]
    a, b = cached["sets"]["heldout.tsv"]["modes"][name], fresh["sets"]["heldout.tsv"]["modes"][name]
    assert {k: a[k] for k in ("exact_match", "token_f1", "bleu")} == {k: b[k] for k in ("exact_match", "token_f1", "bleu")}
    assert_scalars_close(a["roundtrip_cosine"], b["roundtrip_cosine"])


def test_the_walker_takes_the_correctors_settings_whole(queries, trained, monkeypatch, tmp_path):
    """The walker takes the settings it is given; without settings it corrects at the measured recipe, and 0 rounds
    is decoding alone. Its bank is the decoder's training queries, or the one given."""
    from gemma_embed.corrector import CorrectorSettings
    from gemma_embed.fanout import CorrectingDecoder, GenerativeDecoder, decoder_walker
    from gemma_embed.recipes import CORRECTION

    monkeypatch.setenv("GEMMA_EMBED_CACHE", str(queries[0] / "cache"))
    settings = CorrectorSettings(rounds=2, beams=0, proposals=0, samples=3)
    _, walker, pool = decoder_walker(trained, settings=settings)
    assert isinstance(walker, CorrectingDecoder) and walker.corrector.settings == settings and len(pool) == 256
    _, walker, _ = decoder_walker(trained)
    assert walker.corrector.settings == CORRECTION  # the measured recipe, from its one place
    _, walker, _ = decoder_walker(trained, settings=CorrectorSettings(rounds=0, samples=3))
    assert isinstance(walker, GenerativeDecoder) and walker.candidates == 3
    # a bank of other queries (a larger pool): the corrector starts from it, its vectors cached where asked; the
    # queries known to the walk (for novelty) are the bank's and the decoder's training queries
    bank = ["cheap flights to rome", "how do vaccines work", *pool[:3]]
    _, walker, known = decoder_walker(trained, settings=settings, bank=bank, cache=tmp_path / "bank")
    assert walker.corrector.bank == bank and len(walker.corrector.bank_vectors) == len(bank)
    assert set(known) == set(bank) | set(pool) and len(known) == len(pool) + 2
    assert len(list((tmp_path / "bank").glob("vectors-*.npy"))) == 1


def test_evaluate_refuses_an_encoder_the_decoder_does_not_invert(queries, trained, monkeypatch, capsys):
    """train/evaluate.py --decoder reads the encoder at the path the decoder's config records, or at --encoder; a
    different model there (a demo trained again, say) is refused, not silently used. --corrector sets a corrector
    field over the recipe's."""
    evaluate = load_script("evaluate")
    root, _, heldout = queries
    monkeypatch.setenv("GEMMA_EMBED_CACHE", str(root / "cache"))
    with pytest.raises(ValueError, match="another space"):
        evaluate.main(["--decoder", str(trained), "--encoder", "minilm", "--heldout", str(heldout), "--n", "2"])
    report = evaluate.main(["--decoder", str(trained), "--encoder", "raw:tiny", "--heldout", str(heldout), "--n", "2",
                            "--corrector", "rounds=1,samples=2"])
    correction = report["sets"]["heldout.tsv"]["correction"]
    assert correction["settings"]["rounds"] == 1 and "encodes per query" in capsys.readouterr().out


@pytest.mark.parametrize("extra,expected", [
    (["--heldout", "missing.tsv"], "missing.tsv: file not found"),
    (["--encoder", "no/such/encoder"], "encoder no/such/encoder: not a folder"),
    (["--table", "searches"], "no table 'searches'"),
])
def test_bad_input_is_refused_naming_the_place(queries, tmp_path, monkeypatch, extra, expected):
    from gemma_embed.data.readers import DataError

    root, db, heldout = queries
    monkeypatch.setenv("GEMMA_EMBED_CACHE", str(root / "cache"))
    decoder = load_script("decoder")
    args = ["--config", "train/configs/smoke/decoder.yaml", "--data", str(db), "--heldout", str(heldout),
            "--output_dir", str(tmp_path / "out"), *extra]
    with pytest.raises(DataError, match=expected):
        decoder.main(args)
    assert not (tmp_path / "out/model.safetensors").exists()
