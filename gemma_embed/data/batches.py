"""Batch orders: which rows form each global batch.

A batch order has `per_epoch` (batches in one pass) and `batch(index) -> row indices` of global batch number
`index`, a pure function of the index, so that resuming needs only the step number.

    ShuffledBatches(rows, batch_size, seed)         a fresh permutation of the rows every epoch (the default)
    SourceBatches(sources, batch_size, seed)        every batch from one source (phase 2's `batch_by_source`)
    LengthBucketedBatches(store, batch_size, seed)  rows of one length together (phase 3's token store)

Length-bucketed batches: rows of one length share a batch, so dynamic padding pads almost nothing. Epoch e is
planned from (seed, e) alone, so `batch(index)` is a pure function of the index and resuming needs only
the step number. A plan: a random permutation of the rows (the n % batch_size left over sit the epoch out), sorted
by length, so each length is one bucket of consecutive batch slots; within a bucket the rows are in a random order
of queries with the copies of a repeated query next to each other, and are dealt to the bucket's batches round
robin, so copies go to different batches; finally the batches are shuffled. A batch is thus a random set of
queries of one length (the few at a bucket's edge hold two lengths).

No batch holds the same query twice (equal id lists, compared by hash). The deal separates the copies of any query
that has no more copies than its bucket has batches; the copies of a query more frequent than that (a one-word
query repeated across a whole data set) are swapped, one by one, with rows of other batches that lack it. A plan
costs two sorts of the rows (~3 s for 7.1M rows); the current epoch's plan is cached.
"""

from __future__ import annotations

import numpy as np
import torch

from gemma_embed.data.collate import stable_id
from gemma_embed.data.readers import DataError
from gemma_embed.data.store import mix64


class ShuffledBatches:
    """The default batch order: a fresh permutation of the rows every epoch (see global_batch_indices)."""

    def __init__(self, rows, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = len(rows), batch_size, seed
        self.per_epoch = self.n // batch_size

    def batch(self, index: int) -> list[int]:
        return global_batch_indices(self.n, self.batch_size, self.seed, index)


class SourceBatches:
    """Each batch drawn from one source (dataset), as sentence-transformers' big training runs do: in-batch
    negatives from the same source (caption against caption) are harder than a caption against a Wikipedia
    sentence. Per epoch, rows are permuted within each source and cut into full batches, and the batches of all
    sources are put in one permuted order; a pure function of (seed, epoch), so resuming needs only the step.

    With `lengths` (tokens per row), each source's rows for the epoch (a random selection of whole batches' worth)
    are sorted by length before they are cut, so a batch holds rows of about one length and dynamic padding pads
    little (SNLI's random batches of 16 are about 56% real tokens)."""

    def __init__(self, sources: list, batch_size: int, seed: int, lengths: list[int] | None = None):
        self.members: dict = {}
        for i, source in enumerate(sources):
            self.members.setdefault(source, []).append(i)
        self.batch_size, self.seed, self.lengths = batch_size, seed, lengths
        self.per_epoch = sum(len(m) // batch_size for m in self.members.values())
        if self.per_epoch == 0:
            raise DataError(f"no source has a full batch of {batch_size} rows")
        self._epoch, self._batches = -1, []

    def batch(self, index: int) -> list[int]:
        epoch, i = divmod(index, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            batches = []
            for source in sorted(self.members):
                rows, size = self.members[source], self.batch_size
                picked = [rows[j] for j in torch.randperm(len(rows), generator=g).tolist()]
                picked = picked[: len(rows) // size * size]
                if self.lengths is not None:  # stable: rows of one length keep their random order
                    picked.sort(key=lambda r: self.lengths[r])
                batches += [picked[k : k + size] for k in range(0, len(picked), size)]
            self._epoch, self._batches = epoch, [batches[j] for j in torch.randperm(len(batches), generator=g)]
        return self._batches[i]


def global_batch_indices(n_rows: int, batch_size: int, seed: int, index: int) -> list[int]:
    """Row indices of global batch number `index`: epoch e's order is a permutation seeded by (seed, e), so a
    position is just a number and resuming needs no sampler state. The incomplete last batch is dropped."""
    per_epoch = n_rows // batch_size
    if per_epoch == 0:
        raise DataError(f"{n_rows} rows are fewer than one batch of {batch_size}")
    epoch, i = divmod(index, per_epoch)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[i * batch_size : (i + 1) * batch_size].tolist()



class LengthBucketedBatches:
    def __init__(self, rows_or_lengths, batch_size: int, seed: int, keys=None):
        """rows_or_lengths: a TokenStore (its `lengths`, and `row_hashes()` to find repeated queries), rows (tuples
        whose first item is a token list or a text: its len, and data.stable_id for repeats), or a sequence of
        lengths (repeats are not looked for unless `keys` gives one integer id per row)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if hasattr(rows_or_lengths, "lengths"):
            lengths = np.asarray(rows_or_lengths.lengths)
            if keys is None and hasattr(rows_or_lengths, "row_hashes"):
                keys = rows_or_lengths.row_hashes()
        elif len(rows_or_lengths) and isinstance(rows_or_lengths[0], (int, np.integer)):
            lengths = np.asarray(rows_or_lengths)
        else:
            lengths = np.fromiter((len(r[0]) for r in rows_or_lengths), np.int64, len(rows_or_lengths))
            if keys is None:
                keys = np.fromiter((stable_id(r[0]) for r in rows_or_lengths), np.uint64, len(rows_or_lengths))
        self.n, self.batch_size, self.seed = len(lengths), batch_size, seed
        self.per_epoch = self.n // batch_size
        if self.per_epoch == 0:
            raise DataError(f"{self.n} rows are fewer than one batch of {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.keys = None if keys is None else np.asarray(keys).astype(np.uint64)
        if self.keys is not None and self.keys.shape != (self.n,):
            raise ValueError(f"keys: {self.keys.shape} for {self.n} rows")
        self._epoch, self._plan = None, None
        if self.keys is not None:
            values, first, counts = np.unique(self.keys, return_index=True, return_counts=True)
            if counts.max() > self.per_epoch:
                raise DataError(
                    f"row {int(first[counts.argmax()])}'s query occurs {int(counts.max())} times, more often than the "
                    f"{self.per_epoch} batches of an epoch, so its copies cannot all go to different batches: "
                    "deduplicate the data or use a smaller batch_size"
                )

    def batch(self, index: int) -> list[int]:
        epoch, i = divmod(index, self.per_epoch)
        if epoch != self._epoch:
            self._plan, self._epoch = self.plan(epoch), epoch
        return self._plan[i].tolist()

    def plan(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s batches: a (per_epoch, batch_size) array of row indices. Stable sorts throughout, so the
        plan is the same on every machine."""
        rng = np.random.default_rng([self.seed, epoch])
        bs, nb = self.batch_size, self.per_epoch
        used = nb * bs
        perm = rng.permutation(self.n)[:used]
        if self.keys is None:
            spread = rng.integers(0, 2**63, size=used, dtype=np.int64).astype(np.uint64)
        else:  # a random order of queries, the same for each copy: copies end up next to each other
            spread = mix64(self.keys[perm] ^ np.uint64(rng.integers(2**63)))
        length = self.lengths[perm]
        if length.max() < 2**16:
            order = np.argsort((length.astype(np.uint64) << np.uint64(48)) | (spread >> np.uint64(16)), kind="stable")
        else:
            order = np.lexsort((spread, length))
        seq, length = perm[order], length[order]
        # deal each length's rows round robin over the batch slots it occupies: slot by slot, batch by batch
        pos = np.arange(used, dtype=np.int64)
        dealt = np.argsort(length * used + (pos % bs) * nb + pos // bs, kind="stable")
        flat = np.empty(used, dtype=np.int64)
        flat[dealt] = seq
        plan = flat.reshape(nb, bs)
        if self.keys is not None:
            self._separate_repeats(plan, rng)
        return plan[rng.permutation(nb)]

    def _separate_repeats(self, plan: np.ndarray, rng: np.random.Generator) -> None:
        """Swap each second copy of a query in a batch with a row of another batch that lacks that query, trying
        batches from the nearest length outwards (identical queries have one length, so batches of other lengths
        lack it): every batch ends free of repeats, and as little padded as can be. Each query walks the batches
        once, however many copies it has."""
        keys, lengths, bs = self.keys, self.lengths, self.batch_size
        batch_keys = np.sort(keys[plan], axis=1)
        crowded = np.flatnonzero((batch_keys[:, 1:] == batch_keys[:, :-1]).any(axis=1))
        if not crowded.size:
            return
        batch_length = lengths[plan].max(axis=1)
        nearest: dict[int, np.ndarray] = {}  # length -> batches, nearest length first
        cursor: dict = {}  # key -> how far along its length's batches it has looked
        for b in crowded:
            seen = set()
            for j in range(bs):
                row = plan[b, j]
                key = keys[row]
                if key not in seen:
                    seen.add(key)
                    continue
                length = int(lengths[row])
                if length not in nearest:
                    nearest[length] = np.argsort(np.abs(batch_length - length), kind="stable")
                order, at = nearest[length], cursor.get(key, 0)
                while at < order.size:
                    c = int(order[at])
                    at += 1
                    if c == b or (keys[plan[c]] == key).any():
                        continue
                    start = int(rng.integers(bs))
                    k = next((k % bs for k in range(start, start + bs) if keys[plan[c, k % bs]] not in seen), None)
                    if k is None:
                        continue
                    other = plan[c, k]
                    plan[b, j], plan[c, k] = other, row
                    seen.add(keys[other])
                    break
                else:
                    raise DataError(f"row {row}: its query is in every batch; it repeats too often to separate")
                cursor[key] = at
