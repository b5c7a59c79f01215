"""Configuration of Gemma-Embed: a Gemma 3 text backbone, pooling, a projection head and L2 normalisation.

Every architectural setting lives here and is saved with the weights in `config.json`.
"""

from __future__ import annotations

from transformers import Gemma3TextConfig, PretrainedConfig

POOLING_MODES = ("mean", "last")
HEAD_TYPES = ("linear", "mlp")
HEAD_ACTIVATIONS = ("gelu", "tanh", "relu", "silu")
ATTENTION_MODES = ("causal", "bidirectional")


class GemmaEmbedConfig(PretrainedConfig):
    r"""
    Configuration of a [`GemmaEmbedModel`].

    Args:
        text_config (`dict` or `Gemma3TextConfig`, *optional*):
            The Gemma 3 text backbone. `attention_dropout` and `use_bidirectional_attention` inside it are set from
            `view_dropout` and `attention` below, so those two are the single place to change them.
        projection_dim (`int`, *optional*, defaults to 256):
            Size of the output embedding.
        head (`str`, *optional*, defaults to `"linear"`):
            `"linear"`: one linear layer hidden_size -> projection_dim. `"mlp"`: two linear layers
            hidden_size -> head_hidden_dim -> projection_dim with `head_activation` between them (the original's head).
        head_hidden_dim (`int`, *optional*, defaults to 512):
            Width of the hidden layer of the `"mlp"` head.
        head_activation (`str`, *optional*, defaults to `"gelu"`):
            Activation between the two layers of the `"mlp"` head: one of `gelu`, `tanh`, `relu`, `silu`.
        head_bias (`bool`, *optional*, defaults to `True`):
            Whether the head's linear layers have a bias.
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: mean of the hidden states of the real (attention-mask 1) tokens, `<bos>` included.
            `"last"`: the hidden state of the last real token.
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise the output, so that a dot product is a cosine similarity.
        attention (`str`, *optional*, defaults to `"causal"`):
            `"causal"` as Gemma 3 was pretrained, or `"bidirectional"` through Gemma 3's own
            `use_bidirectional_attention` (every token attends to every other token within the sliding window).
        view_dropout (`float`, *optional*, defaults to 0.1):
            Attention dropout of the backbone, active in training mode only. Gemma 3 ships with none, so without it
            the two SimCSE views of a sentence would be identical.
        lora_r (`int`, *optional*, defaults to 8):
            Rank of the LoRA adapters attached for training.
        lora_alpha (`int`, *optional*, defaults to 16):
            LoRA scaling numerator (the update is scaled by `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the LoRA input, active in training mode only (a second source of SimCSE view noise).
        lora_target_modules (`list[str]`, *optional*, defaults to `["q_proj", "v_proj"]`):
            Names of the backbone's linear layers that get adapters.
        max_seq_length (`int`, *optional*, defaults to 128):
            Longest input, in tokens (`<bos>` included); longer texts are truncated.
        query_prompt (`str`, *optional*):
            Text put before queries by `encode_query` in sentence-transformers (and `prompt="query"` here).
        document_prompt (`str`, *optional*):
            Text put before documents by `encode_document`.
    """

    model_type = "gemma_embed"
    sub_configs = {"text_config": Gemma3TextConfig}

    def __init__(
        self,
        text_config: dict | Gemma3TextConfig | None = None,
        projection_dim: int = 256,
        head: str = "linear",
        head_hidden_dim: int = 512,
        head_activation: str = "gelu",
        head_bias: bool = True,
        pooling: str = "mean",
        normalize: bool = True,
        attention: str = "causal",
        view_dropout: float = 0.1,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "v_proj"),
        max_seq_length: int = 128,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        **kwargs,
    ):
        _check_choice("pooling", pooling, POOLING_MODES)
        _check_choice("head", head, HEAD_TYPES)
        _check_choice("head_activation", head_activation, HEAD_ACTIVATIONS)
        _check_choice("attention", attention, ATTENTION_MODES)
        _check_positive_ints("GemmaEmbedConfig", projection_dim=projection_dim, head_hidden_dim=head_hidden_dim,
                             lora_r=lora_r, lora_alpha=lora_alpha, max_seq_length=max_seq_length)
        for name, value in (("view_dropout", view_dropout), ("lora_dropout", lora_dropout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"GemmaEmbedConfig: {name} must be a number in [0, 1), got {value!r}")
        for name, value in (("normalize", normalize), ("head_bias", head_bias)):
            if not isinstance(value, bool):
                raise ValueError(f"GemmaEmbedConfig: {name} must be true or false, got {value!r}")
        _check_module_names(lora_target_modules)
        for name, value in (("query_prompt", query_prompt), ("document_prompt", document_prompt)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"GemmaEmbedConfig: {name} must be a string or null, got {value!r}")

        self.projection_dim = projection_dim
        self.head = head
        self.head_hidden_dim = head_hidden_dim
        self.head_activation = head_activation
        self.head_bias = head_bias
        self.pooling = pooling
        self.normalize = normalize
        self.attention = attention
        self.view_dropout = float(view_dropout)
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = float(lora_dropout)
        self.lora_target_modules = list(lora_target_modules)
        self.max_seq_length = max_seq_length
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.text_config = self._build_text_config(text_config)
        super().__init__(**kwargs)

    def _build_text_config(self, text_config: dict | Gemma3TextConfig | None) -> Gemma3TextConfig:
        if text_config is None:
            text_config = {}
        elif isinstance(text_config, Gemma3TextConfig):
            # to_dict stores the sliding window as it was before Gemma 3's bidirectional rewrite, so rebuilding
            # from it applies the rewrite exactly once.
            text_config = text_config.to_dict()
        elif not isinstance(text_config, dict):
            raise ValueError(
                f"GemmaEmbedConfig: text_config must be a dict or a Gemma3TextConfig, got {type(text_config).__name__}"
            )
        model_type = text_config.get("model_type", "gemma3_text")
        if model_type != "gemma3_text":
            raise ValueError(
                f"GemmaEmbedConfig: text_config must describe a Gemma 3 text model (model_type 'gemma3_text'), "
                f"got model_type {model_type!r}"
            )
        text_config = {k: v for k, v in text_config.items() if k not in ("model_type", "transformers_version")}
        text_config["attention_dropout"] = self.view_dropout
        text_config["use_bidirectional_attention"] = self.attention == "bidirectional"
        return Gemma3TextConfig(**text_config)


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GemmaEmbedConfig: {name} must be one of {list(choices)}, got {value!r}")


def _check_positive_ints(owner: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _check_module_names(modules) -> None:
    if isinstance(modules, str) or not modules or not all(isinstance(m, str) and m for m in modules):
        raise ValueError(
            "GemmaEmbedConfig: lora_target_modules must be a non-empty list of module names such as "
            f"['q_proj', 'v_proj'], got {modules!r}"
        )


__all__ = ["GemmaEmbedConfig"]
