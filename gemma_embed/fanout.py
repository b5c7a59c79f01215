"""Query fan-out: walk from a query's embedding toward a document's and decode each step into a query.

The decoder here is nearest-neighbour search over a bank of real queries. A trained query decoder replaces it by
implementing the same one-method interface, `decode(vectors) -> list[(text, score)]`, and being passed to fan_out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

Embed = Callable[[list[str]], torch.Tensor]


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """`steps` unit vectors strictly between a and b, at t = 1/(steps+1) ... steps/(steps+1).

    linear: (1-t) a + t b, renormalised onto the sphere. slerp: the great-circle arc, evenly spaced in angle."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    t = torch.arange(1, steps + 1, dtype=torch.float32)[:, None] / (steps + 1)
    if mode == "linear":
        return F.normalize((1 - t) * a + t * b, dim=-1)
    if mode != "slerp":
        raise ValueError(f"interpolation mode must be linear or slerp, got {mode!r}")
    omega = torch.arccos((a @ b).clamp(-1 + 1e-7, 1 - 1e-7))
    if omega < 1e-4:  # (nearly) the same direction: the arc is the chord
        return F.normalize((1 - t) * a + t * b, dim=-1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class Decoder(Protocol):
    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]: ...


class NearestNeighbourDecoder:
    """Decodes a vector into the bank query whose embedding is closest (cosine). The bank's embeddings are cached
    in `cache_dir`, keyed by the model and the bank's content."""

    def __init__(self, texts: list[str], embed: Embed, cache_dir: str | Path | None = None, model_key: str = ""):
        self.texts = texts
        key = hashlib.sha256(("\n".join(texts) + "\0" + model_key).encode("utf-8")).hexdigest()[:16]
        cache = Path(cache_dir) / f"bank-{key}.pt" if cache_dir else None
        if cache is not None and cache.exists():
            self.vectors = torch.load(cache, weights_only=True)
        else:
            self.vectors = F.normalize(embed(texts).float(), dim=-1)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(self.vectors, cache)

    def decode(self, vectors: torch.Tensor) -> list[tuple[str, float]]:
        scores = F.normalize(vectors.float(), dim=-1) @ self.vectors.T
        best = scores.max(dim=1)
        return [(self.texts[i], float(s)) for s, i in zip(best.values, best.indices)]


def fan_out(embed: Embed, query: str, document: str, decoder: Decoder, steps: int = 8, mode: str = "linear") -> list[dict]:
    """The path from the query to the document: one row per point (the seed, `steps` intermediate points, the
    target), with its similarity to seed and target and the decoded query."""
    seed, target = F.normalize(embed([query, document]).float(), dim=-1)
    points = torch.cat([seed[None], interpolate(seed, target, steps, mode), target[None]])
    decoded = decoder.decode(points)
    return [
        {"step": i, "t": i / (steps + 1), "sim_seed": float(p @ seed), "sim_target": float(p @ target),
         "decoded": text, "decoded_sim": score}
        for i, (p, (text, score)) in enumerate(zip(points, decoded))
    ]


def plot_path(path: list[dict], png: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in path]
    ax.plot(steps, [r["sim_seed"] for r in path], "o-", label="similarity to the seed query")
    ax.plot(steps, [r["sim_target"] for r in path], "s-", label="similarity to the target document")
    ax.plot(steps, [r["decoded_sim"] for r in path], "^:", label="similarity of the decoded query")
    ax.set_xlabel("step")
    ax.set_ylabel("cosine similarity")
    ax.set_title(title or "query fan-out path")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
