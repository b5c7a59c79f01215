"""The Gemma-Embed query decoder: a Gemma 3 causal LM that writes a search query back from an embedding vector.

    decoder = GemmaEmbedDecoder.from_gemma(folder, vocab_ids, encoder={...})   # from any Gemma 3 text checkpoint
    decoder.attach_lora()   ... train ...   decoder.merge_lora()
    texts = decoder.decode(vectors, tokenizer)                                  # greedy; or beam / sample

The vector (L2-normalised; in training mode with Gaussian noise, renormalised) goes through a two-layer MLP to
K soft tokens, placed after `<bos>` and before the query:  [<bos>] [p_1 .. p_K] [q_1 .. q_n] [<eos>].  The LM is
the stock `Gemma3ForCausalLM` (no forked code) over a restricted vocabulary: local id i is tokenizer id
`config.vocab_ids[i]`, so its embedding and (tied) output projection hold only the tokens of the training queries.

The folder written by `save_pretrained` loads with `from_pretrained` and with
`AutoModel.from_pretrained(folder, trust_remote_code=True)`. The config names the encoder the decoder inverts (its
path, dimension and the sha256 of its weight files); `verify_encoder` refuses any other.

This file imports only torch, transformers, the standard library and its config, so that it runs as Hub custom
code; peft is imported only by the LoRA methods used in training.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, Gemma3ForCausalLM, GenerationConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

try:
    from .configuration_gemma_embed_decoder import GemmaEmbedCorrectorConfig, GemmaEmbedDecoderConfig
except ImportError:  # imported as an installed top-level module rather than as Hub custom code
    from configuration_gemma_embed_decoder import GemmaEmbedCorrectorConfig, GemmaEmbedDecoderConfig

# Copied from modeling_gemma_embed.FP16_MESSAGE
FP16_MESSAGE = (
    "Gemma-Embed refuses float16: Gemma 3's activations overflow in float16 and the embeddings become inf/NaN. "
    "Use torch.bfloat16 or torch.float32."
)


# Copied from modeling_gemma_embed.refuse_fp16
def refuse_fp16(dtype: torch.dtype | None) -> None:
    if dtype == torch.float16:
        raise ValueError(FP16_MESSAGE)


# Copied from modeling_gemma_embed.wrap_with_lora
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


# Copied from modeling_gemma_embed.init_linear_layers
def init_linear_layers(module: nn.Module, std: float) -> None:
    """The fresh heads' initialisation: every linear layer in `module` (itself included) gets weights drawn from
    N(0, std) and zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def fingerprint(folder: str | os.PathLike) -> str:
    """sha256 over a model folder's weight files (*.safetensors, by relative path and content): the identity of an
    encoder, checked before its vectors are decoded."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*.safetensors") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weight files to fingerprint")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


class GemmaEmbedDecoder(PreTrainedModel):
    """Embedding -> K soft tokens -> Gemma 3 causal LM -> a query, in the decoder's own (restricted) vocabulary."""

    config: GemmaEmbedDecoderConfig
    config_class = GemmaEmbedDecoderConfig
    base_model_prefix = "decoder"
    supports_gradient_checkpointing = True
    input_modalities = ("text",)
    _supports_sdpa = True

    def __init__(self, config: GemmaEmbedDecoderConfig):
        super().__init__(config)
        text = config.text_config
        self.lm = Gemma3ForCausalLM(text)
        self.prefix = self._mlp(config.prefix_length)
        self._set_generation_config()
        self.post_init()

    def _mlp(self, k: int) -> nn.Sequential:
        """The two-layer MLP turning a vector into k soft tokens: embedding_dim -> hidden_size, GELU,
        -> k x hidden_size."""
        hidden = self.config.text_config.hidden_size
        return nn.Sequential(nn.Linear(self.config.embedding_dim, hidden), nn.GELU(), nn.Linear(hidden, k * hidden))

    @property
    def heads(self) -> tuple[nn.Module, ...]:
        """The modules around the LM that turn vectors into soft tokens (they train in full)."""
        return (self.prefix,)

    def _set_generation_config(self) -> None:
        c = self.config
        self.causal_lm.generation_config = GenerationConfig(
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
            max_new_tokens=c.max_query_length)

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_gemma(cls, name_or_path: str, vocab_ids: list[int] | None = None, *, tokenizer=None, num_layers: int = 0,
                   dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                   **config_kwargs) -> "GemmaEmbedDecoder":
        """A decoder with a fresh prefix MLP on a pretrained Gemma 3 text checkpoint (a folder or Hub id holding a
        `Gemma3ForCausalLM`), its vocabulary restricted to `vocab_ids` (tokenizer ids; the special tokens must be
        among them) and, with `num_layers`, only its first that many layers kept. The special tokens are the `tokenizer`'s (else the
        checkpoint config's). `config_kwargs`: any other config field."""
        refuse_fp16(dtype)
        base = AutoConfig.from_pretrained(name_or_path)
        if base.model_type != "gemma3_text":
            raise ValueError(f"{name_or_path}: needs a Gemma 3 text checkpoint, got model_type {base.model_type!r}")
        lm = Gemma3ForCausalLM.from_pretrained(name_or_path, dtype=dtype, attn_implementation=attn_implementation)
        text = lm.config.to_dict()
        if num_layers:
            total = base.num_hidden_layers
            if not 0 < num_layers <= total:
                raise ValueError(f"num_layers must be in 1..{total}, got {num_layers}")
            kept = range(num_layers)
            lm.model.layers = nn.ModuleList(lm.model.layers[i] for i in kept)
            for index, layer in enumerate(lm.model.layers):  # the cache's slot of each kept layer
                layer.layer_idx = layer.self_attn.layer_idx = index
            text["num_hidden_layers"] = num_layers
            text["layer_types"] = [text["layer_types"][i] for i in kept]
        vocab_ids = list(vocab_ids or [])
        source = tokenizer if tokenizer is not None else base
        specials = {name: getattr(source, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
        unk = getattr(source, "unk_token_id", None)
        if vocab_ids:
            local = {t: i for i, t in enumerate(vocab_ids)}
            missing = [f"{n}={t}" for n, t in specials.items() if t not in local]
            if missing:
                raise ValueError(f"vocab_ids lacks the special tokens {missing}")
            specials = {n: local[t] for n, t in specials.items()}
            unk = local.get(unk)
        specials["unk_token_id"] = unk
        config = GemmaEmbedDecoderConfig(text_config=text, vocab_ids=vocab_ids, **specials, **config_kwargs)
        with torch.device("meta"):  # the LM is replaced below: do not allocate a random one
            model = cls(config)
        if vocab_ids:  # keep only the rows of the restricted vocabulary (embedding and tied output alike)
            rows = lm.model.embed_tokens.weight.data[torch.tensor(vocab_ids)].clone()
            lm.model.embed_tokens.weight = nn.Parameter(rows)
            lm.model.embed_tokens.num_embeddings = len(vocab_ids)
            lm.config.vocab_size = len(vocab_ids)
            lm.tie_weights()
        lm.config.num_hidden_layers = config.text_config.num_hidden_layers
        lm.config.layer_types = config.text_config.layer_types
        model.lm = lm
        model.prefix.to_empty(device=lm.device)
        init_linear_layers(model.prefix, config.text_config.initializer_range)
        model.prefix.to(dtype)
        model._set_generation_config()
        model.config._attn_implementation = lm.config._attn_implementation
        return model

    def _init_weights(self, module):
        if not any(module is m for head in self.heads for m in head.modules()):
            self.lm._init_weights(module)  # Gemma 3's own initialisation for the LM's modules
        elif isinstance(module, nn.Linear):
            init_linear_layers(module, self.config.text_config.initializer_range)

    # ---------------------------------------------------------------------------------------------------- ids
    @property
    def _vocab(self) -> torch.Tensor | None:
        if not self.config.vocab_ids:
            return None
        if getattr(self, "_vocab_tensor", None) is None:
            self._vocab_tensor = torch.tensor(self.config.vocab_ids, dtype=torch.long)
        return self._vocab_tensor

    def to_local(self, token_ids: torch.Tensor, unknown: int | None = None) -> torch.Tensor:
        """Tokenizer ids -> local ids; an id outside the vocabulary becomes `unknown` (or raises if None)."""
        vocab = self._vocab
        if vocab is None:
            return token_ids
        sorted_ids, order = vocab.sort()
        pos = torch.searchsorted(sorted_ids, token_ids.cpu()).clamp(max=len(vocab) - 1)
        found = sorted_ids[pos] == token_ids.cpu()
        if not found.all() and unknown is None:
            raise ValueError(f"token ids {token_ids.cpu()[~found][:5].tolist()} are outside the decoder's vocabulary")
        return torch.where(found, order[pos], torch.full_like(pos, unknown or 0)).to(token_ids.device)

    def to_tokenizer_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        vocab = self._vocab
        return local_ids if vocab is None else vocab.to(local_ids.device)[local_ids]

    # --------------------------------------------------------------------------------------------------- forward
    def _unit(self, vectors: torch.Tensor) -> torch.Tensor:
        """The input vectors, checked and L2-normalised; in training mode with Gaussian noise, renormalised."""
        c = self.config
        if vectors.dim() != 2 or vectors.shape[-1] != c.embedding_dim:
            encoder = (c.encoder or {}).get("name_or_path", "its encoder")
            raise ValueError(f"this model writes queries from {c.embedding_dim}-dimensional vectors of {encoder}; got "
                             f"a tensor of shape {tuple(vectors.shape)}")
        v = F.normalize(vectors.float(), dim=-1)
        if self.training and c.noise_std > 0:  # noise of norm about noise_std, whatever the dimension
            v = F.normalize(v + c.noise_std / v.shape[-1] ** 0.5 * torch.randn_like(v), dim=-1)
        return v

    def _soft_tokens(self, mlp: nn.Module, v: torch.Tensor, k: int) -> torch.Tensor:
        """(B, d) -> (B, k, hidden) through `mlp`, each soft token at the scale of the token rows beside it with
        prefix_norm rms (Gemma scales its embeddings)."""
        soft = mlp(v.to(mlp[0].weight.dtype)).view(v.shape[0], k, -1)
        if self.config.prefix_norm == "rms":
            soft = soft * torch.rsqrt(soft.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(soft.dtype)
        return soft

    def prefix_embeds(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) vectors -> (B, 1 + K, hidden): the `<bos>` embedding, then the K soft tokens. In
        training mode the unit vectors get Gaussian noise and are renormalised first."""
        v = self._unit(vectors)
        soft = self._soft_tokens(self.prefix, v, self.config.prefix_length)
        bos = torch.full((v.shape[0], 1), self.config.bos_token_id, dtype=torch.long, device=v.device)
        return torch.cat([self.lm.get_input_embeddings()(bos).to(soft.dtype), soft], dim=1)

    def context(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the query is written after: its (B, T, hidden) embeddings and their (B, T) mask (the corrector adds
        a hypothesis to it)."""
        embeds = self.prefix_embeds(vectors)
        return embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)

    def forward(self, vectors: torch.Tensor, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                **conditioning) -> CausalLMOutput:
        """Teacher-forced cross-entropy of the queries `input_ids` (local ids, right-padded, each ending in
        `<eos>`) given their vectors (and the corrector's `conditioning`). `logits` are those of the query
        positions: (B, n, vocab)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        context, context_mask = self.context(vectors, **conditioning)
        tokens = self.lm.get_input_embeddings()(input_ids).to(context.dtype)
        embeds = torch.cat([context, tokens], dim=1)
        mask = torch.cat([context_mask.to(attention_mask.dtype), attention_mask], dim=1)
        # counted from the first real token, as generate numbers a left-padded context (right padding changes nothing)
        leading = (mask.cumsum(-1) == 0).sum(-1, keepdim=True)
        positions = (torch.arange(mask.shape[1], device=mask.device) - leading).clamp(min=0)
        lm = self.causal_lm
        hidden = lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                          use_cache=False).last_hidden_state
        t = context.shape[1]
        logits = lm.lm_head(hidden[:, t - 1 : t - 1 + input_ids.shape[1]])  # the context's last predicts the first
        cap = self.config.text_config.final_logit_softcapping
        if cap:
            logits = torch.tanh(logits / cap) * cap
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    # -------------------------------------------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate_ids(self, vectors: torch.Tensor, conditioning: dict | None = None, **generate_kwargs) -> torch.Tensor:
        """Local ids of generated queries (`<eos>` and padding after it included); `generate_kwargs` go to
        transformers' generate: num_beams, do_sample, top_p, temperature, num_return_sequences, max_new_tokens."""
        was_training = self.training
        self.eval()
        conditioning = {k: v.to(self.device) for k, v in (conditioning or {}).items()}
        embeds, mask = self.context(vectors.to(self.device), **conditioning)
        out = self.causal_lm.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)
        self.train(was_training)
        return out

    def decode(self, vectors: torch.Tensor, tokenizer, mode: str = "greedy", num_candidates: int = 1,
               conditioning: dict | None = None, **generate_kwargs) -> list[list[str]]:
        """Queries written from `vectors`: `num_candidates` per vector, by `mode` greedy (one), beam (the best
        `num_candidates` beams of max(4, num_candidates)) or sample (nucleus sampling, top_p 0.9 by default)."""
        kwargs = dict(generate_kwargs)
        if mode == "beam":
            kwargs.setdefault("num_beams", max(4, num_candidates))
            kwargs["num_return_sequences"] = num_candidates
        elif mode == "sample":
            kwargs.update(do_sample=True, num_return_sequences=num_candidates)
            kwargs.setdefault("top_p", 0.9)
        elif mode != "greedy" or num_candidates != 1:
            raise ValueError(f"mode must be greedy (one candidate), beam or sample, got {mode!r}")
        local = self.generate_ids(vectors, conditioning, **kwargs)
        eos, pad = self.config.eos_token_id, self.config.pad_token_id
        texts = []
        for row in local.tolist():
            row = row[: row.index(eos)] if eos in row else row
            ids = self.to_tokenizer_ids(torch.tensor([t for t in row if t != pad], dtype=torch.long))
            texts.append(tokenizer.decode(ids.tolist(), skip_special_tokens=True).strip())
        return [texts[i : i + num_candidates] for i in range(0, len(texts), num_candidates)]

    @property
    def _unknown(self) -> int:
        """The local id a token outside the vocabulary is read as (<unk>, else <pad>)."""
        return self.config.unk_token_id if self.config.unk_token_id is not None else self.config.pad_token_id

    def _teacher_forced(self, vectors: torch.Tensor, rows: list[list[int]], tokenizer):
        """The logits (B, n, vocab) of tokenizer-id `rows` (each ending in <eos>) read given their vectors, with the
        local ids and mask they were read as."""
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tokenizer.eos_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        local, mask = self.to_local(input_ids, unknown=self._unknown).to(self.device), mask.to(self.device)
        return self.forward(vectors.to(self.device), local, mask).logits.float(), local, mask

    @torch.no_grad()
    def log_likelihood(self, vectors: torch.Tensor, texts: list[str], tokenizer) -> torch.Tensor:
        """Each text's mean log-probability per token (its <eos> included) given its vector, teacher-forced: how
        readily the decoder writes that text from that vector (a corrector's fluency term)."""
        was_training = self.training
        self.eval()
        eos, cap = tokenizer.eos_token_id, self.config.max_query_length - 1
        rows = [r[:cap] + [eos] for r in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        logits, local, mask = self._teacher_forced(vectors, rows, tokenizer)
        picked = logits.log_softmax(-1).gather(-1, local.unsqueeze(-1)).squeeze(-1) * mask
        self.train(was_training)
        return (picked.sum(1) / mask.sum(1)).cpu()

    @torch.no_grad()
    def propose_words(self, vectors: torch.Tensor, texts: list[str], tokenizer, k: int = 4) -> list[list[list[str]]]:
        """For each text (split on spaces into n words) and its vector, the `k` words the decoder finds likeliest
        to start at each word position 0..n, given the vector and the words before that position (one
        teacher-forced pass): what a corrector offers to substitute or insert there."""
        was_training = self.training
        self.eval()
        words = [t.split() for t in texts]
        pieces = [w if i == 0 else " " + w for ws in words for i, w in enumerate(ws)]
        ids = iter(tokenizer(pieces, add_special_tokens=False)["input_ids"]) if pieces else iter(())
        rows, starts = [], []
        for ws in words:
            row, begin = [], []
            for _ in ws:
                begin.append(len(row))
                row += next(ids)
            row = row[: self.config.max_query_length - 1]
            rows.append(row + [tokenizer.eos_token_id])
            starts.append([min(b, len(row)) for b in begin] + [len(row)])
        unk = self._unknown
        logits = self._teacher_forced(vectors, rows, tokenizer)[0]
        specials = {self.config.bos_token_id, self.config.eos_token_id, self.config.pad_token_id, unk}
        top = logits.topk(min(logits.shape[-1], 4 * k), dim=-1).indices  # (B, n, 4k): room for specials
        spaced = "▁" in "".join(tokenizer.convert_ids_to_tokens(tokenizer(" a", add_special_tokens=False)["input_ids"]))
        out = []
        for row_top, begin in zip(top.tolist(), starts):
            per_position = []
            for position, j in enumerate(begin):
                kept = []
                for t in row_top[j]:
                    if t in specials:
                        continue
                    token = int(self.to_tokenizer_ids(torch.tensor([t]))[0])
                    piece = tokenizer.convert_ids_to_tokens(token)
                    if spaced and position > 0 and not piece.startswith("▁"):
                        continue  # the rest of a word, not the start of one
                    word = tokenizer.decode([token]).strip()
                    if word and any(ch.isalnum() for ch in word) and word not in kept:
                        kept.append(word)
                    if len(kept) == k:
                        break
                per_position.append(kept)
            out.append(per_position)
        self.train(was_training)
        return out

    # ------------------------------------------------------------------------------------------------ encoder
    def verify_encoder(self, encoder_fingerprint: str, what: str = "the encoder given") -> None:
        """Refuse an encoder other than the one this decoder was trained to invert."""
        mine = (self.config.encoder or {}).get("fingerprint")
        if not mine:
            raise ValueError("this decoder's config names no encoder fingerprint, so no encoder can be verified")
        if encoder_fingerprint != mine:
            name = self.config.encoder.get("name_or_path", "?")
            raise ValueError(
                f"this decoder inverts {name} (weights sha256 {mine[:12]}), but {what} has weights sha256 "
                f"{encoder_fingerprint[:12]}: its vectors live in another space and would decode to nonsense. Use "
                "the encoder the decoder was trained with, or train a decoder for this one")

    # ------------------------------------------------------------------------------------------------------ LoRA
    @property
    def has_lora(self) -> bool:
        return hasattr(self.lm, "peft_config")

    @property
    def causal_lm(self) -> Gemma3ForCausalLM:
        """The stock Gemma3ForCausalLM (inside peft's wrapper while adapters are attached; they act in place)."""
        return self.lm.get_base_model() if self.has_lora else self.lm

    def attach_lora(self) -> "GemmaEmbedDecoder":
        """LoRA adapters on the LM's `lora_target_modules` (none: the LM stays frozen); the prefix MLP trains."""
        for p in self.lm.parameters():
            p.requires_grad_(False)
        if self.config.lora_target_modules:
            if self.has_lora:
                raise RuntimeError("LoRA adapters are already attached; call merge_lora() first")
            self.lm = wrap_with_lora(self.lm, self.config)
            self.train(self.training)
        for p in (p for head in self.heads for p in head.parameters()):
            p.requires_grad_(True)
        return self

    def merge_lora(self) -> "GemmaEmbedDecoder":
        if self.has_lora:
            self.lm = self.lm.merge_and_unload()
            self._set_generation_config()
        return self

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.has_lora:
            raise RuntimeError("save_pretrained needs merged weights: call merge_lora() first")
        return super().save_pretrained(save_directory, *args, **kwargs)


class GemmaEmbedCorrector(GemmaEmbedDecoder):
    """vec2text's corrector on a trained decoder: it writes the query of a target vector e from e, a hypothesis h
    (a query written for e, whose vector is h_vec) and their difference, reading

        [<pad>..] [<bos>] [h tokens] [<eos>]  [S(h_vec)] [S(e - h_vec)]  [P(e)]  [q_1 .. q_n] [<eos>]

    S, S are two more soft-token MLPs (hypothesis_prefix, difference_prefix; RMS-normalised as the decoder's
    prefix) and P(e) the decoder's own prefix, last, so that the query follows it as in the decoder. Hypotheses
    of a batch are padded on the left. `from_decoder` starts it from a trained decoder's weights (the hypothesis's
    MLP a copy of the decoder's prefix, the difference's fresh)."""

    config: GemmaEmbedCorrectorConfig
    config_class = GemmaEmbedCorrectorConfig

    def __init__(self, config: GemmaEmbedCorrectorConfig):
        super().__init__(config)
        self.hypothesis_prefix = self._mlp(config.hypothesis_prefix_length)
        self.difference_prefix = self._mlp(config.hypothesis_prefix_length)
        for head in (self.hypothesis_prefix, self.difference_prefix):
            init_linear_layers(head, config.text_config.initializer_range)

    @property
    def heads(self) -> tuple[nn.Module, ...]:
        extra = ("hypothesis_prefix", "difference_prefix")  # not there yet while the decoder's part initialises
        return (self.prefix, *(self._modules[n] for n in extra if n in self._modules))

    @classmethod
    def from_decoder(cls, decoder: GemmaEmbedDecoder, started_from: dict | None = None,
                     **config_kwargs) -> "GemmaEmbedCorrector":
        """A corrector holding a copy of `decoder`'s weights (merged, without adapters); `config_kwargs`: the
        corrector's own fields (hypothesis_prefix_length, ...) or any decoder field to change."""
        if decoder.has_lora:
            raise ValueError("from_decoder needs a decoder without adapters: call merge_lora() first")
        fields = {k: v for k, v in decoder.config.to_dict().items()
                  if k not in ("model_type", "architectures", "auto_map", "transformers_version", "dtype",
                               "noise_std")}  # the corrector's own noise: none unless given
        config = GemmaEmbedCorrectorConfig(**{**fields, "started_from": started_from or {}, **config_kwargs})
        config._attn_implementation = decoder.config._attn_implementation
        model = cls(config).to(decoder.dtype)
        missing, unexpected = model.load_state_dict(decoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("hypothesis_prefix.", "difference_prefix.")) for k in missing):
            raise ValueError(f"the decoder's weights do not fit the corrector: missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}")
        if config.hypothesis_prefix_length == config.prefix_length:  # the hypothesis read as the decoder reads a vector
            model.hypothesis_prefix.load_state_dict(decoder.prefix.state_dict())
        model._set_generation_config()
        return model

    def hypothesis_ids(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hypotheses as local ids (without <bos>/<eos>) -> `[<bos>] h [<eos>]` left-padded with <pad>, cut to
        max_hypothesis_length tokens, and its mask."""
        c = self.config
        cap = c.max_hypothesis_length or c.max_query_length
        rows = [[c.bos_token_id, *r[:cap], c.eos_token_id] for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), c.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
        return ids, mask

    def context(self, vectors: torch.Tensor, hypothesis_vectors: torch.Tensor, hypothesis_ids: torch.Tensor,
                hypothesis_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        e, h = self._unit(vectors), self._unit_hypothesis(hypothesis_vectors)
        soft = torch.cat([self._soft_tokens(self.hypothesis_prefix, h, c.hypothesis_prefix_length),
                          self._soft_tokens(self.difference_prefix, e - h, c.hypothesis_prefix_length),
                          self._soft_tokens(self.prefix, e, c.prefix_length)], dim=1)
        text = self.lm.get_input_embeddings()(hypothesis_ids).to(soft.dtype)
        ones = torch.ones(soft.shape[:2], dtype=hypothesis_mask.dtype, device=hypothesis_mask.device)
        return torch.cat([text, soft], dim=1), torch.cat([hypothesis_mask, ones], dim=1)

    def _unit_hypothesis(self, vectors: torch.Tensor) -> torch.Tensor:
        if vectors.shape != (vectors.shape[0], self.config.embedding_dim):
            raise ValueError(f"hypothesis vectors must be (B, {self.config.embedding_dim}), got {tuple(vectors.shape)}")
        return F.normalize(vectors.float(), dim=-1)

    def conditioning(self, hypotheses: list[str], hypothesis_vectors: torch.Tensor, tokenizer) -> dict:
        """The keyword inputs of `forward`, `generate_ids` and `decode` for hypotheses given as text."""
        rows = tokenizer(list(hypotheses), add_special_tokens=False)["input_ids"]
        local = [self.to_local(torch.tensor(r, dtype=torch.long), unknown=self._unknown).tolist() for r in rows]
        ids, mask = self.hypothesis_ids(local)
        return {"hypothesis_vectors": torch.as_tensor(hypothesis_vectors), "hypothesis_ids": ids,
                "hypothesis_mask": mask}

    def correct(self, vectors: torch.Tensor, hypotheses: list[str], hypothesis_vectors: torch.Tensor, tokenizer,
                mode: str = "greedy", num_candidates: int = 1, **generate_kwargs) -> list[list[str]]:
        """Per target vector and hypothesis (its text and vector), `num_candidates` corrected queries (as
        `decode`'s modes)."""
        return self.decode(vectors, tokenizer, mode, num_candidates,
                           conditioning=self.conditioning(hypotheses, hypothesis_vectors, tokenizer),
                           **generate_kwargs)


GemmaEmbedDecoderConfig.register_for_auto_class()
GemmaEmbedDecoder.register_for_auto_class("AutoModel")
GemmaEmbedCorrectorConfig.register_for_auto_class()
GemmaEmbedCorrector.register_for_auto_class("AutoModel")

__all__ = ["GemmaEmbedCorrector", "GemmaEmbedDecoder", "fingerprint"]
