"""From rows to model inputs: a process-independent id of each text, left padding, and the collator that turns a
batch of rows into its streams of token tensors."""

from __future__ import annotations

import hashlib

import torch


def stable_id(item: str | list[int]) -> int:
    """A 63-bit id of a text or token list, the same in every process (unlike Python's salted hash)."""
    data = item.encode("utf-8") if isinstance(item, str) else torch.tensor(item, dtype=torch.int64).numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def pad_left(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


class Collator:
    """Rows -> the streams of one batch ([queries, positives] for self-contrast, [anchors, positives, negatives]
    otherwise) and the group id of each query. Texts are tokenised here with truncation; token lists are truncated
    and padded. Padding is dynamic (to the longest in the stream) and on the left, like Gemma's tokenizer.

    The number of streams depends only on `self_contrast`, never on the rows: with several processes each gathers
    every stream, so every process must hold the same streams. A process whose rows have no hard negative holds an
    empty negatives stream (0 rows)."""

    def __init__(self, tokenizer, max_length: int, self_contrast: bool):
        self.tokenizer, self.max_length, self.self_contrast = tokenizer, max_length, self_contrast

    def encode(self, items: list) -> dict[str, torch.Tensor]:
        if items and isinstance(items[0], str):
            seqs = self.tokenizer(items, truncation=True, max_length=self.max_length)["input_ids"]
        else:
            seqs = [s[: self.max_length] for s in items]
        return pad_left(seqs, self.tokenizer.pad_token_id)

    def __call__(self, rows: list[tuple]) -> tuple[list[dict], torch.Tensor]:
        anchors = [r[0] for r in rows]
        first = self.encode(anchors)
        streams = [first, first] if self.self_contrast else [first, self.encode([r[1] for r in rows])]
        if not self.self_contrast:
            streams.append(self.encode([r[2] for r in rows if len(r) > 2]))
        groups = torch.tensor([stable_id(a) for a in anchors], dtype=torch.long)
        return streams, groups


def text_lengths(rows, encode, max_length: int) -> list[list[int]]:
    """Tokens of every text of every row, truncated to max_length as the collator truncates: texts through `encode`
    (texts -> id lists, e.g. data.store.batch_encoder at max_length or more), pre-tokenised texts as written."""
    counts = iter(map(len, encode([x for r in rows for x in r if isinstance(x, str)])))
    return [[min(next(counts) if isinstance(x, str) else len(x), max_length) for x in r] for r in rows]


def row_lengths(rows, tokenizer, max_length: int) -> list[int]:
    """Tokens per row, every text of it counted (truncated to max_length): what a batch of such rows costs."""
    from gemma_embed.data.store import batch_encoder

    return list(map(sum, text_lengths(rows, batch_encoder(tokenizer, max_length), max_length)))
