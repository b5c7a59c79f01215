"""The trained corrector's data (vec2text's second model): each training query of the decoder with the decoder's own
hypotheses for its vector (greedy, plus `samples` sampled), and the encoder's vectors of both. The hypotheses are
written once, a chunk at a time (an interrupted pass resumes at its first missing chunk), and read back by every
later run; their vectors go through the same vector cache as the queries'.

    rows = read_corrector_rows(cfg, tokenizer)   # rows[i] -> (query ids, query vector, hypothesis ids, its vector)
    batch = CorrectorCollator(corrector)([rows[i] for i in ids])
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from gemma_embed.data.decoder_queries import DecoderCollator, read_decoder_rows, vector_cache
from gemma_embed.data.readers import DataError

CHUNK = 64  # queries decoded together, and written together


class CorrectorRows:
    """Row j -> (query token ids ending in <eos>, the query's vector, the hypothesis's token ids, its vector): every
    query once per hypothesis. `queries`: the decoder's rows (vocab, dim, encoder, texts)."""

    def __init__(self, queries, hypotheses: list[list[str]], ids: dict[str, list[int]], vectors: np.ndarray,
                 index: dict[str, int]):
        self.queries, self.ids, self.vectors, self.index = queries, ids, vectors, index
        self.pairs = [(q, h) for q, group in enumerate(hypotheses) for h in group]
        self.vocab, self.dim, self.encoder = queries.vocab, queries.dim, queries.encoder

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, j: int):
        q, h = self.pairs[j]
        ids, vector = self.queries[q]
        return ids, vector, self.ids[h], self.vectors[self.index[h]]


def hypotheses_file(cfg, decoder_fingerprint: str, texts: list[str]) -> Path:
    """Where the hypotheses of these queries by this decoder (and this many samples, this seed) are kept."""
    key = hashlib.sha256("\0".join([decoder_fingerprint, str(cfg.samples), str(cfg.seed), *texts]).encode())
    folder = Path(cfg.hypotheses) if cfg.hypotheses else vector_cache(cfg)
    return folder / f"hypotheses-{key.hexdigest()[:20]}.jsonl"


def write_hypotheses(decoder, tokenizer, vectors: np.ndarray, path: Path, samples: int, seed: int,
                     precision) -> list[list[str]]:
    """The decoder's greedy query and `samples` sampled ones for each vector, `CHUNK` vectors at a time, each chunk
    appended to `path` as one line and flushed (a cut last line is dropped and redone); chunk c samples from seed
    `seed + c`, so a resumed pass writes what an uninterrupted one would."""
    from tqdm.auto import tqdm

    data = path.read_bytes() if path.is_file() else b""
    whole = data[: data.rfind(b"\n") + 1]  # a cut last line is dropped
    done = [group for line in whole.splitlines() for group in json.loads(line)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if not whole else "r+b") as f:
        f.truncate(len(whole))
    began, first = time.time(), len(done)
    with open(path, "ab") as f, tqdm(total=len(vectors), initial=first, unit="q", dynamic_ncols=True,
                                     desc=f"the decoder's hypotheses (greedy + {samples} sampled)") as bar:
        for start in range(first, len(vectors), CHUNK):
            chunk = torch.from_numpy(np.array(vectors[start : start + CHUNK], dtype=np.float32))
            with torch.random.fork_rng(), precision.autocast("cpu"):
                torch.manual_seed(seed + start // CHUNK)
                greedy = decoder.decode(chunk, tokenizer)
                sampled = (decoder.decode(chunk, tokenizer, mode="sample", num_candidates=samples) if samples
                           else [[] for _ in greedy])
            groups = [list(dict.fromkeys([g, *s])) for [g], s in zip(greedy, sampled)]
            f.write((json.dumps(groups) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
            done += groups
            bar.update(len(groups))
    if len(done) > first:
        print(f"wrote the hypotheses of {len(done) - first:,} queries in {time.time() - began:.0f} s to {path}",
              flush=True)
    return done


def read_corrector_rows(cfg, tokenizer) -> CorrectorRows:
    """The corrector's training rows of a CorrectorConfig: the decoder's training queries (read as the decoder
    read them), its hypotheses for their vectors (written once), and the hypotheses' vectors (cached)."""
    from gemma_embed.encoder import cached_vectors
    from gemma_embed.precision import resolve
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder, fingerprint

    queries = read_decoder_rows(cfg, tokenizer)
    path = hypotheses_file(cfg, fingerprint(cfg.decoder), queries.texts)
    finished = path.with_suffix(".done")
    if int(os.environ.get("RANK", "0")) == 0 and not finished.is_file():
        decoder = GemmaEmbedDecoder.from_pretrained(cfg.decoder).eval()
        write_hypotheses(decoder, tokenizer, queries.vectors, path, cfg.samples, cfg.seed,
                         resolve(cfg.mixed_precision, "cpu"))
        finished.write_text("")
    while not finished.is_file():  # the other processes wait for the main one's hypotheses
        time.sleep(2)
    hypotheses = [json.loads(line) for line in path.read_text().splitlines()]
    hypotheses = [group for line in hypotheses for group in line]
    if len(hypotheses) != len(queries):
        raise DataError(f"{path}: hypotheses of {len(hypotheses)} queries, but there are {len(queries)}; delete it")
    unique = list(dict.fromkeys(h for group in hypotheses for h in group))
    vectors = cached_vectors(cfg.encoder, unique, vector_cache(cfg), cfg.encode_batch_size)
    rows = tokenizer(unique, add_special_tokens=False)["input_ids"]
    return CorrectorRows(queries, hypotheses, dict(zip(unique, rows)), vectors, {h: i for i, h in enumerate(unique)})


class CorrectorCollator:
    """Rows -> the corrector's batch: the decoder's (vectors, input_ids, attention_mask) and the hypotheses'
    (hypothesis_vectors, hypothesis_ids left-padded between <bos> and <eos>, hypothesis_mask)."""

    def __init__(self, corrector):
        self.corrector, self.queries = corrector, DecoderCollator(corrector.config)

    def __call__(self, rows) -> dict:
        batch = self.queries([(ids, vector) for ids, vector, _, _ in rows])
        local = [self.queries.local(h) if h else [] for _, _, h, _ in rows]
        ids, mask = self.corrector.hypothesis_ids(local)
        vectors = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for _, _, _, v in rows]))
        return {**batch, "hypothesis_vectors": vectors, "hypothesis_ids": ids, "hypothesis_mask": mask}
