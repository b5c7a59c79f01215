"""The main job's orchestration (train/demo.py) on the tiny backbone: given the smoke chain's three phases (so no
training here; the phases themselves are tested in test_phases.py), it evaluates, writes metrics.json, the model
card and the plots, prints the summary and runs the examples against the new model."""

import json
import shutil
from dataclasses import asdict

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow


@pytest.mark.precision  # the figures recorded in metrics.json and the card are copies: equal in either precision
def test_demo_writes_metrics_card_and_plots(chain, tmp_path, monkeypatch, capsys):
    from launch import load_script

    demo = load_script("demo")

    _, env, outs = chain
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "demo"
    for n, folder in outs.items():
        shutil.copytree(folder, out / f"phase{n}")
    metrics = demo.main(["--configs", "train/configs/smoke", "--out", str(out), "--backbone", "tiny"])

    printed = capsys.readouterr().out
    for n in (1, 2, 3):
        assert f"phase {n}: already done" in printed
    assert "after phase 2" in printed and "all-MiniLM-L6-v2" in printed
    saved = json.loads((out / "metrics.json").read_text())
    summary = printed.split("] summary")[1]
    assert next(line for line in summary.splitlines() if line.startswith("STS-B test, Spearman")).split()[-1] == \
        f"{saved['baselines']['all-MiniLM-L6-v2, STS-B test, Spearman']:.2f}"
    assert saved == json.loads(json.dumps(metrics))
    summaries = [json.loads((outs[n] / "train_summary.json").read_text()) for n in (1, 2, 3)]
    assert [saved[f"phase{n}_stsb_dev"] for n in (1, 2, 3)] == [s["sts_after"] for s in summaries]
    assert saved["train_seconds"] == pytest.approx(sum(s["train_seconds"] for s in summaries))
    # the final STS-B test figure is the published model's: scored again here through sentence-transformers
    from sentence_transformers import SentenceTransformer

    from gemma_embed.scores import sts_spearman
    from gemma_embed.precision import resolve
    from conftest import REPO

    decision, model = resolve("auto", "cpu"), SentenceTransformer(str(out / "model"), device="cpu")

    def embed(texts):
        with decision.autocast("cpu"):
            return torch.as_tensor(model.encode(texts, batch_size=64)).float()

    score = sts_spearman(embed, REPO / "examples/data/sts-test.csv")
    # float32: batches of other lengths move the tiny model's near-equal similarities by ~1e-7, which can swap a
    # near tie among the 1,379 pairs (0.001 of Spearman x 100)
    assert score == pytest.approx(saved["stsb_test_spearman_cosine"], abs=0.5 if decision.precision == "bf16" else 0.01)
    assert -100 <= saved["raw_stsb_test_spearman_cosine"] <= 100 and saved["raw_stsb_test_spearman_cosine"] != score
    assert saved["baselines"]["all-MiniLM-L6-v2, STS-B test, Spearman"] > 75  # the real MiniLM, by the same code
    final = saved["stages"]["final"]
    assert {"alignment", "uniformity", "stsb_test_spearman_cosine@128", "stsb_test_spearman_cosine@64"} <= set(final)
    # the decoder-free inversion of the held-out queries, for the model and for MiniLM alike
    key = "invert_heldout_queries.tsv_roundtrip_cosine_corrected"  # the correction never lowers the cosine
    assert final[key] >= final[key.replace("corrected", "nearest")] - 1e-3  # (bf16: batches differ)
    assert 0 <= saved["baselines"]["all-MiniLM-L6-v2, inversion, heldout_queries.tsv, after correction: token F1"] <= 100

    card = (out / "model/README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    values = [r["metrics"][0]["value"] for r in front["model-index"][0]["results"]]
    assert values == [round(saved["stsb_test_spearman_cosine"], 2)]  # dev is a subset during training: not in the index
    assert saved["stages"]["final"]["stsb_dev_spearman_cosine"] == saved["phase3_stsb_dev"]
    for png in ("loss_per_phase.png", "stsb_dev_across_run.png", "fan_out.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "model/checkpoints").exists()
    # the query decoder: trained on the new encoder's vectors, evaluated on held-out queries no training run saw
    decoder = saved["decoder"]
    # its budget is the precision's: float32 (AVX2-only CPUs) trains a share of decoder.yaml's steps on that share
    budget, smoke = decoder["budget"], yaml.safe_load(open("train/configs/smoke/decoder.yaml"))
    planned = asdict(demo.BUDGETS[decision.precision])
    seconds = smoke.get("max_train_seconds", 0) if planned["seconds"] is None else planned["seconds"]
    assert budget["precision"] == decision.name and budget == {**budget, **planned, "seconds": seconds}
    assert json.loads((out / "decoder/train_summary.json").read_text())["steps"] == budget["max_steps"] == \
        max(1, round(smoke["max_steps"] * budget["share"]))
    assert "heldout_queries.tsv" in decoder["sets"]
    for result in decoder["sets"].values():
        assert {"greedy", "re-ranked (8 sampled + greedy)", "nearest existing query (training pool)"} == set(result["modes"])
    # the fan-out: the bundled pairs through train/fan_out.py, its quality table in the decoder's card
    fanned = decoder["fan_out"]
    assert fanned["pairs"] == planned["pairs"] and fanned["reformulations"] == planned["pairs"] * 6
    assert 0 <= fanned["distinct"][0] <= 1 and len(fanned["rank_by_step"]) == 6
    assert (out / "bank.tsv").is_file() and (out / "fan_out/kept.jsonl").is_file()
    card = (out / "decoder/README.md").read_text()
    assert "| greedy |" in card and "**Reformulations**" in card and f"| {fanned['recipe']['mode']} |" in card
    from gemma_embed.data.query_files import read_queries
    from gemma_embed.data.readers import read_queries_db

    pool = {q for q, in read_queries_db(out / "queries.db", "queries", "query")}
    heldout = read_queries(out / "heldout_queries.tsv")
    assert heldout and not pool & set(heldout)
    # the corrector's bank is the whole pool, not the decoder's share of it; the decoder's training vectors are rows
    # of the pool's vectors, which the evaluation cached
    from gemma_embed.data.decoder_queries import training_queries

    training = training_queries(out / "decoder")
    assert json.loads((out / "decoder/decoder_eval.json").read_text())["pool"] == len(pool) > len(training)
    import numpy as np

    cached = {json.loads(m.read_text())["rows"]: m for m in (out / "vector_cache").glob("vectors-*.json")
              if json.loads(m.read_text())["encoder"] == str(out / "model")}
    listed = json.loads(cached[len(pool)].with_name(cached[len(pool)].name.replace("vectors-", "texts-")).read_text())
    row = {t: i for i, t in enumerate(listed)}
    np.testing.assert_array_equal(np.load(cached[len(training)].with_suffix(".npy")),
                                  np.load(cached[len(pool)].with_suffix(".npy"))[[row[t] for t in training]])
    # the summary prints the fan-out's quality table
    assert f"reformulations of {planned['pairs']} bundled pairs x 6 steps" in printed
    assert f"| {fanned['recipe']['mode']} |" in printed.split("] summary")[1]


def test_demo_with_unbuilt_data_says_how_to_build_it_before_training(tmp_path):
    from launch import load_script

    demo = load_script("demo")
    configs = tmp_path / "configs"
    shutil.copytree("train/configs/smoke", configs)
    cfg = yaml.safe_load((configs / "phase2.yaml").read_text())
    cfg["data"] = str(tmp_path / "long_data/triplets.csv")
    (configs / "phase2.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match=r"phase2.yaml: its data .*long_data/triplets.csv is missing: write it with "
                                         r"python examples/data/build_bundle.py --full --out .*long_data"):
        demo.main(["--configs", str(configs), "--out", str(tmp_path / "out"), "--backbone", "tiny"])
    assert not (tmp_path / "out").exists()
