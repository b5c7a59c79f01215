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
