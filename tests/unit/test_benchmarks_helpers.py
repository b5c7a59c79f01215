"""The benchmarks' shared pieces: a GPU's peak is found by its exact name only (no MFU rather than a wrong one)."""

from launch import load_script


def test_peak_by_exact_device_name():
    gemma1b = load_script("gemma1b", "benchmarks")
    assert gemma1b.peak_flops("NVIDIA L4") == 121e12
    assert gemma1b.peak_flops("NVIDIA L40S") == 362e12  # not the L4's, which a substring match would give
    assert gemma1b.peak_flops("NVIDIA H200") == 989e12
    assert gemma1b.peak_flops("NVIDIA GeForce RTX 4090") is None and gemma1b.peak_flops("L4") is None


def test_gemma_1b_architecture_and_step_flops():
    gemma1b = load_script("gemma1b", "benchmarks")
    config = gemma1b.gemma3_1b_text_config()
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (1152, 26, 262144)
    assert config.layer_types.count("full_attention") == 4  # every sixth layer
    # 2 views x 4 rows x 8 tokens, P = 1000 non-embedding parameters
    expected = 64 * (4 * 1000 + 3 * 4 * 8 * config.num_attention_heads * config.head_dim * 26)
    assert gemma1b.lora_step_flops(config, 1000, rows=4, width=8) == expected


def test_the_results_page_is_generated_from_the_runs_records(tmp_path):
    """benchmarks/report.py: each decoder row carries its own figures and names what its training config changed
    against the demo's recipe; the embedded default's table comes from metrics.json; nothing else is invented."""
    import json

    import yaml

    report = load_script("report", "benchmarks")
    runs = tmp_path / "runs"
    folder = runs / "recipes/wide/decoder-model"
    folder.mkdir(parents=True)
    recipe = yaml.safe_load(report.RECIPE.read_text())
    (folder / "train_config.yaml").write_text(yaml.safe_dump({**recipe, "phase": "DecoderConfig", "max_rows": 0,
                                                              "output_dir": "elsewhere",
                                                              "model": {**recipe["model"], "prefix_length": 16}}))
    (folder / "train_summary.json").write_text(json.dumps({"rows": 14003}))
    modes = {"greedy": {"exact_match": 0.0, "token_f1": 41.5, "bleu": 5.0, "roundtrip_cosine": 0.7712},
             "nearest existing query (training pool)": {"exact_match": 0.0, "token_f1": 33.0, "bleu": 8.0,
                                                        "roundtrip_cosine": 0.7321}}
    (runs / "recipes/wide/compare.json").write_text(json.dumps({"runs/demo/model": {
        "decoder": str(folder), "steps": 240, "seconds_per_step": 1.234,
        "precision": {"cpu": "Some CPU", "name": "float32"},
        "sets": {"heldout_queries.tsv": {"floor_cosine": 0.25, "modes": modes, "conditioning": {"gap": 3.5}}}}}))
    (runs / "demo").mkdir()
    (runs / "demo/metrics.json").write_text(json.dumps({
        "hardware": "Some CPU, 2 cores, float32", "stages": {"raw": {"stsb_test_spearman_cosine": 37.8},
                                                           "final": {"stsb_test_spearman_cosine": 78.29}},
        "baselines": {"all-MiniLM-L6-v2, STS-B test": 82.04}}))
    text = report.render(runs)
    row = next(line for line in text.splitlines() if line.startswith("| recipes/wide "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "max_rows: 0, prefix_length: 16"  # the changes, and nothing the recipe already says
    assert cells[3:9] == ["240", "14,003", "3.500", "41.50", "0.771", "0.732"] and cells[9:11] == ["", ""]
    assert cells[12:14] == ["1.23", "Some CPU, float32"]
    assert "| final | | 78.29 |" in text.replace("|  |", "| |") and "Some CPU, 2 cores, float32" in text


def test_the_results_page_carries_each_encoder_comparison_column_by_column(tmp_path):
    """benchmarks/report.py on a benchmarks/word_weight.py record: one column per model, the figures as recorded."""
    import json

    report = load_script("report", "benchmarks")
    runs = tmp_path / "runs"
    (runs / "word_weight").mkdir(parents=True)
    (runs / "word_weight/results.json").write_text(json.dumps({
        "minilm": {"model": "minilm", "stsb_test_spearman_cosine": 82.03, "probe_f1": 39.3,
                   "invert_h.tsv_token_f1_corrected": 56.25, "invert_h.tsv_bleu_corrected": 9.0,
                   "precision": "float32", "cpu": "Some CPU"},
        "w0.1": {"model": "runs/x", "stsb_test_spearman_cosine": 78.11, "probe_f1": 45.0,
                 "invert_h.tsv_token_f1_corrected": 58.5, "invert_h.tsv_bleu_corrected": 10.0,
                 "precision": "float32", "cpu": "Some CPU"}}))
    text = report.render(runs)
    assert "| metric | minilm | w0.1 |" in text and "Some CPU, float32" in text
    assert "| STS-B test, Spearman | 82.03 | 78.11 |" in text
    assert "| inversion, h.tsv, after correction: token F1 | 56.25 | 58.50 |" in text
    assert "BLEU" not in text.split("## Encoders compared")[1].split("##")[0]  # F1 and cosine only


def test_the_results_page_sets_the_demo_runs_side_by_side(tmp_path):
    """benchmarks/report.py: train/demo.py's runs (the default, without the two terms, the long recipe) in one
    table, a column each, a metric missing from one left blank."""
    import json

    report = load_script("report", "benchmarks")
    runs = tmp_path / "runs"
    for name, final in (("demo_w0", {"stsb_test_spearman_cosine": 78.26}),
                        ("long", {"stsb_test_spearman_cosine": 80.5, "stsb_test_spearman_cosine@64": 79.25})):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text(json.dumps({
            "hardware": f"CPU {name}, bf16 autocast", "train_seconds": 785.4, "stages": {"final": final},
            "baselines": {"all-MiniLM-L6-v2, STS-B test": 82.04}, **({"decoder": {"sets": {"h.tsv": {
                "floor_cosine": 0.26, "conditioning": {"gap": 3.87},
                "modes": {"greedy": {"token_f1": 46.78, "roundtrip_cosine": 0.79}},
                "correction": {"rounds": {"1": {"token_f1": 50.0}, "10": {"token_f1": 62.18, "roundtrip_cosine": 0.92}}}}}}}
                if name == "demo_w0" else {})}))
    text = report.render(runs)
    assert "| metric | demo_w0 | long |" in text
    assert "| decoder, h.tsv: corrected token F1 | 62.18 |  |" in text and "| decoder, h.tsv: conditioning gap | 3.87 |  |" in text
    assert "| STS-B test, Spearman | 78.26 | 80.50 |" in text and "| STS-B test, Spearman at 64 dims |  | 79.25 |" in text
    assert "| all-MiniLM-L6-v2, STS-B test | 82.04 | 82.04 |" in text and "| encoder training, s | 785 | 785 |" in text
    assert "| CPU, precision | CPU demo_w0, bf16 autocast | CPU long, bf16 autocast |" in text
    (runs / "long/metrics.json").unlink()
    assert "side by side" not in report.render(runs)  # one run alone: nothing to set beside it
