"""Shared by the benchmarks: google/gemma-3-1b-pt's text architecture (random weights: nothing is downloaded), the
peak bf16 throughput of known GPUs by exact device name, and the FLOPs of a LoRA training step."""

from __future__ import annotations

# Dense bf16 tensor-core peaks (no sparsity), keyed by the exact torch.cuda.get_device_name(): a name not listed
# gets no MFU rather than a wrong one (a substring would match "NVIDIA L4" inside "NVIDIA L40S").
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L4": 121e12,
}


def peak_flops(device_name: str) -> float | None:
    return PEAK_BF16_FLOPS.get(device_name.strip())


def gemma3_1b_text_config(**overrides):
    """google/gemma-3-1b-pt's published text architecture."""
    from transformers import Gemma3TextConfig

    layers = overrides.pop("num_hidden_layers", 26)
    kwargs = dict(
        vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)],
        max_position_embeddings=32768, query_pre_attn_scalar=256,
    )
    kwargs.update(overrides)
    return Gemma3TextConfig(**kwargs)


def lora_step_flops(text_config, params_non_embedding: int, rows: int, width: int, views: int = 2) -> float:
    """FLOPs of one LoRA training step on `views` x `rows` sequences padded to `width` (padded tokens are computed
    too). The frozen weights need no weight gradients, so forward 2P and backward (input gradients) 2P per token,
    P the non-embedding parameters; attention adds 4 S heads head_dim per token and layer forward, twice that
    backward."""
    c = text_config
    tokens = views * rows * width
    attention = 4 * width * c.num_attention_heads * c.head_dim * c.num_hidden_layers
    return tokens * (4 * params_non_embedding + 3 * attention)
