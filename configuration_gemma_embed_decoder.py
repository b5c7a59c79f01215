"""Configuration of the Gemma-Embed query decoder: a Gemma 3 causal LM conditioned on an embedding through a learned
prefix, writing search queries back from vectors.

Every architectural setting lives here and is saved with the weights in `config.json`, together with the identity
of the encoder whose vectors the decoder inverts.
"""

from __future__ import annotations

from transformers import Gemma3TextConfig, PretrainedConfig


RETIRED = {"prefix_hidden_dim": 0, "prefix_activation": "gelu"}  # removed fields, at the only values built


class GemmaEmbedDecoderConfig(PretrainedConfig):
    r"""
    Configuration of a [`GemmaEmbedDecoder`].

    Args:
        text_config (`dict` or `Gemma3TextConfig`, *optional*):
            The Gemma 3 causal LM. Its `vocab_size` is the size of the decoder's own (restricted) vocabulary,
            `len(vocab_ids)`.
        vocab_ids (`list[int]`, *optional*):
            The decoder's vocabulary as token ids of the Gemma tokenizer, in the decoder's own order: local id `i`
            is tokenizer id `vocab_ids[i]`. Restricting the 262,144-token vocabulary to the tokens of the training
            queries (about 18,000 for 20,000 queries) makes the output projection and softmax cheap. Empty: the
            full vocabulary (local id = tokenizer id).
        bos_token_id, eos_token_id, pad_token_id, unk_token_id (`int`, *optional*):
            The special tokens in local ids (`unk_token_id` may be None).
        embedding_dim (`int`, *optional*, defaults to 256):
            Size of the vectors the decoder reads (the encoder's output dimension).
        prefix_length (`int`, *optional*, defaults to 8):
            K: the vector becomes K soft tokens placed after `<bos>` and before the query.
        prefix_norm (`str`, *optional*, defaults to `"rms"`):
            `rms`: each soft token is rescaled to a per-element RMS of 1, the scale of Gemma's (scaled) token
            embeddings beside it, so that the residual stream carries the vector; `none`: the MLP's raw output (about
            200 times smaller than a token row at initialisation).
        noise_std (`float`, *optional*, defaults to 0.3):
            The norm (about) of the Gaussian noise added to each unit input vector in training mode (per dimension
            noise_std / sqrt(embedding_dim)); the noisy vector is renormalised onto the sphere, at a cosine of about
            1 / sqrt(1 + noise_std^2) to the original. Points between a query and a document, which no real query
            maps to, then still decode.
        max_query_length (`int`, *optional*, defaults to 32):
            Longest query, in tokens (without `<bos>`, with `<eos>`); also the default generation length.
        lora_r (`int`, *optional*, defaults to 16), lora_alpha (`int`, *optional*, defaults to 32),
        lora_dropout (`float`, *optional*, defaults to 0.0):
            The LoRA adapters attached for training (merged into the weights when published).
        lora_target_modules (`list[str]`, *optional*):
            The LM's linear layers that get adapters; empty: the LM stays frozen and only the prefix MLP trains.
        encoder (`dict`, *optional*):
            The encoder this decoder inverts: `name_or_path`, `dim` and `fingerprint` (sha256 of its weight files);
            loading the decoder beside a different encoder is refused.
    """

    model_type = "gemma_embed_decoder"
    sub_configs = {"text_config": Gemma3TextConfig}

    def __init__(
        self,
        text_config: dict | Gemma3TextConfig | None = None,
        vocab_ids: list[int] | None = None,
        bos_token_id: int = 2,
        eos_token_id: int = 1,
        pad_token_id: int = 0,
        unk_token_id: int | None = None,
        embedding_dim: int = 256,
        prefix_length: int = 8,
        prefix_norm: str = "rms",
        noise_std: float = 0.3,
        max_query_length: int = 32,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
        encoder: dict | None = None,
        **kwargs,
    ):
        for name, kept in RETIRED.items():  # a folder saved before these were removed holds them at these values
            if kwargs.pop(name, kept) != kept:
                raise ValueError(f"GemmaEmbedDecoderConfig: {name} was removed; this code builds only {name}={kept!r}")
        vocab_ids = [int(i) for i in (vocab_ids or [])]
        _check_positive_ints("GemmaEmbedDecoderConfig", embedding_dim=embedding_dim, prefix_length=prefix_length,
                             max_query_length=max_query_length, lora_r=lora_r, lora_alpha=lora_alpha)
        if prefix_norm not in ("none", "rms"):
            raise ValueError(f"GemmaEmbedDecoderConfig: prefix_norm must be none or rms, got {prefix_norm!r}")
        for name, value, top in (("noise_std", noise_std, 10.0), ("lora_dropout", lora_dropout, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < top:
                raise ValueError(f"GemmaEmbedDecoderConfig: {name} must be a number in [0, {top}), got {value!r}")
        if isinstance(lora_target_modules, str) or not all(isinstance(m, str) and m for m in lora_target_modules):
            raise ValueError("GemmaEmbedDecoderConfig: lora_target_modules must be a list of module names, got "
                             f"{lora_target_modules!r}")
        encoder = dict(encoder or {})
        if encoder and encoder.get("dim") not in (None, embedding_dim):
            raise ValueError(f"GemmaEmbedDecoderConfig: the encoder's dim ({encoder['dim']}) is not embedding_dim "
                             f"({embedding_dim})")
        self.text_config = _build_text_config(text_config, vocab_ids)
        self.vocab_ids = vocab_ids
        _check_in_vocabulary(self.text_config.vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                             pad_token_id=pad_token_id, unk_token_id=unk_token_id)
        self.embedding_dim = embedding_dim
        self.prefix_length = prefix_length
        self.prefix_norm = prefix_norm
        self.noise_std = float(noise_std)
        self.max_query_length = max_query_length
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = float(lora_dropout)
        self.lora_target_modules = list(lora_target_modules)
        self.encoder = encoder
        self.unk_token_id = unk_token_id
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)


class GemmaEmbedCorrectorConfig(GemmaEmbedDecoderConfig):
    r"""
    Configuration of a [`GemmaEmbedCorrector`]: a decoder's configuration, and the second conditioning path that
    reads a hypothesis (vec2text's corrector).

    Args:
        hypothesis_prefix_length (`int`, *optional*, defaults to 0):
            The soft tokens of the hypothesis's vector, and as many of the difference between the target and it; 0:
            `prefix_length` (the hypothesis's MLP then starts as a copy of the decoder's prefix).
        max_hypothesis_length (`int`, *optional*, defaults to 0):
            Longest hypothesis read, in tokens; 0: `max_query_length`.
        started_from (`dict`, *optional*):
            The decoder the corrector was trained from: `name_or_path` and `fingerprint` (sha256 of its weights).
        noise_std (`float`, *optional*, defaults to 0.0):
            As the decoder's, on the target vector only; none by default (a corrector aims at the exact point).
        kwargs:
            Every other [`GemmaEmbedDecoderConfig`] field.
    """

    model_type = "gemma_embed_corrector"

    def __init__(self, hypothesis_prefix_length: int = 0, max_hypothesis_length: int = 0,
                 started_from: dict | None = None, noise_std: float = 0.0, **kwargs):
        for name, value in (("hypothesis_prefix_length", hypothesis_prefix_length),
                            ("max_hypothesis_length", max_hypothesis_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"GemmaEmbedCorrectorConfig: {name} must be an integer >= 0, got {value!r}")
        self.max_hypothesis_length = max_hypothesis_length
        self.started_from = dict(started_from or {})
        super().__init__(noise_std=noise_std, **kwargs)
        self.hypothesis_prefix_length = hypothesis_prefix_length or self.prefix_length


def _build_text_config(text_config: dict | Gemma3TextConfig | None, vocab_ids: list[int]) -> Gemma3TextConfig:
    """The LM's config; with `vocab_ids`, its vocabulary is theirs."""
    if isinstance(text_config, Gemma3TextConfig):
        text_config = text_config.to_dict()
    if text_config is not None and not isinstance(text_config, dict):
        raise ValueError(f"GemmaEmbedDecoderConfig: text_config must be a dict or a Gemma3TextConfig, got "
                         f"{type(text_config).__name__}")
    text_config = {k: v for k, v in (text_config or {}).items() if k not in ("model_type", "transformers_version")}
    if vocab_ids:
        if len(set(vocab_ids)) != len(vocab_ids):
            raise ValueError("GemmaEmbedDecoderConfig: vocab_ids repeats a token id")
        text_config["vocab_size"] = len(vocab_ids)
    return Gemma3TextConfig(**text_config)


def _check_in_vocabulary(vocab_size: int, **token_ids) -> None:
    for name, value in token_ids.items():
        if value is not None and not 0 <= value < vocab_size:
            raise ValueError(f"GemmaEmbedDecoderConfig: {name} {value} is outside the vocabulary (0..{vocab_size - 1})")


# Copied from configuration_gemma_embed._check_positive_ints
def _check_positive_ints(owner: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


__all__ = ["GemmaEmbedCorrectorConfig", "GemmaEmbedDecoderConfig"]
