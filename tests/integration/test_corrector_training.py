"""The trained corrector end to end on tiny models, as users run it: train/corrector.py with its smoke config under
`accelerate launch` from the smoke decoder (and killed and resumed), its hypotheses written once (and resumed), then
inversion with it through the Inverter and train/evaluate.py --corrector_model."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, train_smoke_corrector as _train

pytestmark = pytest.mark.slow


def test_the_smoke_config_trains_and_publishes_a_corrector_with_its_card(trained_corrector, trained):
    from transformers import AutoModel

    summary = json.loads((trained_corrector / "train_summary.json").read_text())
    # 64 queries, each with its greedy hypothesis and one sample (fewer where the two are the same)
    assert summary["phase"] == "CorrectorConfig" and summary["steps"] == 8 and 64 < summary["rows"] <= 128
    assert summary["heldout_f1_before"] is not None and summary["heldout_f1_after"] is not None
    config = json.loads((trained_corrector / "config.json").read_text())
    decoder = json.loads((trained / "config.json").read_text())
    assert config["model_type"] == "gemma_embed_corrector" and config["encoder"] == decoder["encoder"]
    assert config["vocab_ids"] == decoder["vocab_ids"] and config["hypothesis_prefix_length"] == 4
    assert len(config["started_from"]["fingerprint"]) == 64
    card = (trained_corrector / "README.md").read_text()
    assert "vec2text" in card and config["started_from"]["fingerprint"] in card and "8 steps on" in card
    assert "pipeline_tag: other" in card and "inference: false" in card
    model = AutoModel.from_pretrained(trained_corrector, trust_remote_code=True)
    assert type(model).__name__ == "GemmaEmbedCorrector" and not model.has_lora
    logged = [json.loads(line) for line in (trained_corrector / "logs/metrics.jsonl").read_text().splitlines()]
    assert [r["hypothesis_token_f1"] for r in logged if "heldout_token_f1" in r][0] >= 0


def test_a_corrector_folder_is_pushed_with_a_card_written_from_its_record(trained_corrector, tmp_path):
    from gemma_embed.publish.push import folder_kind, push_folder

    folder = tmp_path / "corrector"
    shutil.copytree(trained_corrector, folder)
    (folder / "README.md").unlink()
    assert folder_kind(folder) == "corrector"
    sent = push_folder(folder, "org/gemma-embed-corrector", dry_run=True)
    assert {"model.safetensors", "config.json", "modeling_gemma_embed_decoder.py", "README.md"} <= set(sent)
    assert "org/gemma-embed-corrector" in (folder / "README.md").read_text()
    assert not any(n.startswith(("checkpoints/", "logs/")) for n in sent)


@pytest.mark.precision
def test_killed_and_resumed_equals_uninterrupted(queries, trained, trained_corrector):
    """Bit for bit, in either precision."""
    root, db, heldout = queries
    out = root / "corrector-killed"
    killed = _train(root, db, heldout, trained, out, "--save_every", "2", env={"GEMMA_EMBED_KILL_AT_STEP": "5"})
    assert killed.returncode != 0 and not (out / "model.safetensors").exists()
    resumed = _train(root, db, heldout, trained, out, "--save_every", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(str(trained_corrector / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_hypotheses_pass_resumes_where_it_was_cut(trained, tmp_path):
    """A pass cut inside a line (a kill mid-write) drops that line and writes from there what an uninterrupted pass
    writes: each chunk samples from its own seed."""
    from gemma_embed.backbones import load_tokenizer
    from gemma_embed.data.hypotheses import CHUNK, write_hypotheses
    from gemma_embed.precision import resolve
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    decoder = GemmaEmbedDecoder.from_pretrained(trained).eval()
    tokenizer, precision = load_tokenizer(trained), resolve("auto", "cpu")
    vectors = np.random.default_rng(0).standard_normal((2 * CHUNK + 5, decoder.config.embedding_dim)).astype("float32")
    whole = write_hypotheses(decoder, tokenizer, vectors, tmp_path / "whole.jsonl", 1, 0, precision)
    assert len(whole) == len(vectors) and all(1 <= len(g) <= 2 for g in whole)
    cut = tmp_path / "cut.jsonl"
    first_line = (tmp_path / "whole.jsonl").read_bytes().split(b"\n")[0]
    cut.write_bytes(first_line + b"\n" + b'[["half a li')
    resumed = write_hypotheses(decoder, tokenizer, vectors, cut, 1, 0, precision)
    assert resumed == whole and cut.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_rounds_with_the_trained_corrector_never_lower_the_cosine(queries, trained, trained_corrector, tmp_path):
    from gemma_embed.corrector import Corrector
    from gemma_embed.data.query_files import read_queries
    from gemma_embed.inverter import Inverter
    from gemma_embed.recipes import TRAINED_CORRECTION

    root, _, heldout = queries
    inverter = Inverter.from_pretrained(trained, corrector=trained_corrector, cache=root / "cache")
    assert inverter.recipe == TRAINED_CORRECTION
    texts = read_queries(heldout)[:12]
    results = inverter.invert(inverter.embed(texts))
    assert len(results) == 12
    for r in results:
        cosines = [c for _, c in r.rounds]
        assert cosines == sorted(cosines)
        assert r.encodes > 1  # the trained corrector's rewrites were judged beside the decoder's query
    with pytest.raises(ValueError, match="needs a trained corrector"):
        Corrector(inverter.embed, decoder=inverter.decoder, tokenizer=inverter.tokenizer, settings=TRAINED_CORRECTION)
    # a corrector of another encoder is refused
    other = tmp_path / "other"
    shutil.copytree(trained_corrector, other)
    config = json.loads((other / "config.json").read_text())
    config["encoder"]["fingerprint"] = "0" * 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trained for another encoder"):
        Inverter.from_pretrained(trained, corrector=other)


def test_evaluate_with_the_trained_corrector_reports_its_rounds_with_standard_errors(queries, trained,
                                                                                   trained_corrector, tmp_path):
    root, _, heldout = queries
    env = {"GEMMA_EMBED_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "train/evaluate.py", "--decoder", str(trained), "--heldout", str(heldout),
                          "--n", "16", "--candidates", "2", "--rounds", "3", "--corrector_model", str(trained_corrector),
                          "--corrector", "beam=2", "--json", str(tmp_path / "eval.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "with the trained corrector" in run.stdout
    result = json.loads((tmp_path / "eval.json").read_text())["sets"]["heldout.tsv"]
    correction = result["correction"]
    assert correction["trained"] and correction["settings"]["generated"] == 4 and correction["settings"]["beam"] == 2
    assert correction["settings"]["word_edits"] == 0  # the trained recipe, with --corrector on top
    table = correction["rounds"]
    assert list(table) == ["0", "1", "3"]
    for metrics in table.values():
        assert metrics["token_f1_se"] >= 0 and metrics["exact_match_se"] >= 0
    means = [table[r]["roundtrip_cosine"] for r in table]
    assert means == sorted(means)
    from gemma_embed.publish.card import render_decoder_eval

    assert "Correction by the trained corrector" in render_decoder_eval(json.loads((tmp_path / "eval.json").read_text()))
    # benchmarks/report.py renders the round table from the report, standard errors beside the means
    from launch import load_script

    (tmp_path / "runs/inversion").mkdir(parents=True)
    shutil.copy(tmp_path / "eval.json", tmp_path / "runs/inversion/trained.json")
    page = load_script("report", "benchmarks").inversion_runs(tmp_path / "runs")
    m = table["3"]
    assert "trained corrector, 4 rewrite(s) per hypothesis (beam search), beam of 2" in page
    assert f"| corrected | 3 | {m['exact_match']:.1f} ± {m['exact_match_se']:.1f} | {m['token_f1']:.1f} ± " \
           f"{m['token_f1_se']:.1f} |" in page


def test_a_missing_decoder_is_refused_naming_the_field(queries, tmp_path):
    root, db, heldout = queries
    run = subprocess.run([sys.executable, "train/corrector.py", "--config", "train/configs/smoke/corrector.yaml",
                          "--data", str(db), "--heldout", str(heldout), "--decoder", str(tmp_path / "none"),
                          "--output_dir", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "GEMMA_EMBED_CACHE": str(root / "cache")})
    assert run.returncode != 0
    last = (run.stdout + run.stderr).strip().splitlines()[-1]
    assert last == f"error: field 'decoder': {tmp_path / 'none'} holds no trained decoder (no config.json); train one " \
                   "with train/decoder.py"
