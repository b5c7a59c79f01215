"""The query decoder's data: its training queries (the same sources as phase 3) with their vectors from the frozen
encoder (computed once and cached), the decoder's restricted vocabulary, the queries tokenised and batched, and
what a published decoder was trained on.

    rows = read_decoder_rows(cfg, tokenizer)     # rows[i] -> (token ids ending in <eos>, vector)
    rows.vocab, rows.dim, rows.encoder           # what the decoder is built with
    batch = DecoderCollator(decoder.config)([rows[i] for i in ids])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gemma_embed.config import DecoderConfig
from gemma_embed.data.query_files import read_queries
from gemma_embed.data.readers import DataError, iter_queries, load_pretokenized
from gemma_embed.encoder import cached_vectors, encoder_identity


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
    vocab = sorted({t for row in ids for t in row} | {t for t in specials if t is not None})
    return DecoderRows(ids, vectors, vocab, encoder_identity(cfg.encoder, int(vectors.shape[1]), cfg.output_dir), texts)


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


# ------------------------------------------------------------------------------------------------ batches
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
