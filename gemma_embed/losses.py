"""The contrastive loss (InfoNCE with in-batch and hard negatives), cross-process gathering that keeps gradients,
and GradCache for large batches in small memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.05,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each query against all keys, its positive being the key with its own index.

    queries: (B, d). keys: (B + M, d): row i < B is query i's positive; rows >= B are hard negatives, valid for
    every query. groups: (B,) ids; a positive of another query in the same group (the same text, say) is
    masked out rather than counted as a negative, since it is not one.
    """
    n = queries.shape[0]
    if keys.shape[0] < n:
        raise ValueError(f"info_nce: {keys.shape[0]} keys for {n} queries; need one positive per query")
    logits = queries.float() @ keys.float().T / temperature
    if groups is not None:
        same = groups[:, None] == groups[None, :]
        same.fill_diagonal_(False)
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[:, :n] = same
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, torch.arange(n, device=logits.device))


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums each process's gradient for this process's shard (gloo and nccl alike)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world)[ctx.rank]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every process, rank order, keeping the gradient path to each local shard.

    Rows may differ in number between processes (hard negatives that some rows lack): they are padded to the
    largest count for the collective and dropped again.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    most = max(counts)
    if most == 0:  # every process holds an empty stream (no hard negatives anywhere): nothing to exchange
        return x
    if x.dtype == torch.bool or not x.is_floating_point():
        parts = [torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in counts]
        dist.all_gather(parts, F.pad(x, (0, 0) * (x.dim() - 1) + (0, most - x.shape[0])).contiguous())
        return torch.cat([p[:c] for p, c in zip(parts, counts)])
    padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, most - x.shape[0]))
    full = _GatherWithGrad.apply(padded)
    return torch.cat([full[i * most : i * most + c] for i, c in enumerate(counts)])


def contrastive_loss(
    embeddings: list[torch.Tensor], groups: torch.Tensor | None, temperature: float, symmetric: bool = False,
    dims: tuple[tuple[int, float], ...] = (),
) -> torch.Tensor:
    """The loss of one batch from its streams of embeddings: [queries, positives, (hard negatives)].

    symmetric: average it with the reverse direction, each positive against all queries (no hard negatives there).
    dims: (d, weight) pairs (Matryoshka): the weighted mean, over them, of the loss on every vector's first d
    dimensions renormalised, so that each prefix is an embedding itself; empty: the whole vectors.

    Each stream is gathered across processes on its own, so hard negatives stay aligned whatever each process
    holds; the result is the loss of the global batch, the same on every process.
    """
    streams = [gather(e) for e in embeddings]
    groups = gather(groups) if groups is not None else None

    def loss_of(vectors: list[torch.Tensor]) -> torch.Tensor:
        loss = info_nce(vectors[0], torch.cat(vectors[1:]), temperature, groups)
        if symmetric:
            loss = (loss + info_nce(vectors[1], vectors[0], temperature, groups)) / 2
        return loss

    if not dims:
        return loss_of(streams)
    total = sum(w * loss_of([F.normalize(s[:, :d].float(), dim=-1) for s in streams]) for d, w in dims)
    return total / sum(w for _, w in dims)


def word_loss(
    states: torch.Tensor, token_embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    ignore_ids: tuple[int, ...] = (), scale: float = 20.0,
) -> torch.Tensor:
    """Per row, how well a vector tells which words its text holds: the cross-entropy of a softmax over the
    vocabulary (`scale * states @ token_embeddings.T`, the word head's reading scored against every token) against
    the uniform distribution over the text's distinct tokens, padding and `ignore_ids` (special tokens) left out; 0
    for a row without any. Computed in float32 whatever the autocast. `scale` lets a word head of small weights
    (Gemma's token embeddings have norm about 1) still peak on a handful of the vocabulary's 262,144 tokens.

    states: (B, hidden). token_embeddings: (V, hidden). input_ids, attention_mask: (B, T).
    """
    with torch.autocast(states.device.type, enabled=False):
        logits = scale * states.float() @ token_embeddings.float().T
        keep = attention_mask.bool()
        for special in ignore_ids:
            keep &= input_ids != special
        bag = torch.zeros_like(logits).scatter_reduce_(1, input_ids, keep.float(), reduce="amax")
        count = bag.sum(-1)
        return -(bag * logits.log_softmax(-1)).sum(-1) / count.clamp(min=1)


# What an encode function returns for a chunk of rows: the embeddings, or a tuple of per-row tensors (embeddings and
# per-row word losses, say); GradCache caches and backpropagates each.
Output = torch.Tensor | tuple[torch.Tensor, ...]


def encode_streams(encode: Callable[[dict], Output], streams: list[dict]) -> list[Output]:
    """Each stream's outputs (`encode`'s: an embedding tensor, or a tuple of per-row tensors); an empty stream
    (0 rows) gets empty tensors of the same widths without calling the model. They require a gradient when the
    others do, so that their gather's backward (a collective) runs on this process as it does on processes whose
    stream is not empty."""
    out = [encode(s) if s["input_ids"].shape[0] else None for s in streams]
    first = next(e for e in out if e is not None)
    return [e if e is not None else _rebuild(first, [_empty_like(p).requires_grad_(p.requires_grad)
                                                      for p in _parts(first)]) for e in out]


def _empty_like(p: torch.Tensor) -> torch.Tensor:
    """No rows, the same width and dtype: an empty stream's output."""
    return p.new_zeros((0, *p.shape[1:]))


def _parts(output: Output) -> tuple[torch.Tensor, ...]:
    return output if isinstance(output, tuple) else (output,)


def _rebuild(like: Output, parts: list[torch.Tensor]) -> Output:
    return tuple(parts) if isinstance(like, tuple) else parts[0]


class _RandState:
    """The CPU (and CUDA) generator state at creation; `replay()` restores it, so a recomputation draws the
    same dropout masks as the first pass (GradCache's RandContext)."""

    def __init__(self, device: torch.device):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    @contextlib.contextmanager
    def replay(self):
        with torch.random.fork_rng(devices=[self.device] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def grad_cache_step(
    encode: Callable[[dict], Output],
    streams: list[dict],
    groups: torch.Tensor | None,
    temperature: float,
    chunk: int,
    backward: Callable[..., None],
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    loss_fn: Callable[..., torch.Tensor] = contrastive_loss,
) -> torch.Tensor:
    """One GradCache step (Gao et al., 2021): the loss and the gradients of the whole batch, holding only one
    chunk's activations at a time.

    1. encode every chunk of every stream without a graph, remembering the RNG state before each;
    2. compute the loss on those embeddings as leaves, and its gradient with respect to each embedding;
    3. re-encode each chunk with a graph under the same RNG state (same dropout) and backpropagate the cached
       embedding gradient through it.
    `backward(scalar)` is the accelerator's; `no_sync` defers the DDP all-reduce to the last chunk;
    `loss_fn(embeddings, groups, temperature)` may raise to stop before any gradient is computed.

    When every stream fits in one chunk there is nothing to save: the batch is encoded once with a graph and
    backpropagated directly (the same gradients, a third less compute). Empty streams (a process without hard
    negatives) are never encoded.
    """
    # The same choice on every process: the anchors stream holds the local batch, the same size everywhere, and no
    # stream holds more. Processes may still run different numbers of chunks (negatives differ); DDP's all-reduce
    # happens once each, on the last chunk.
    if all(stream["input_ids"].shape[0] <= chunk for stream in streams):
        loss = loss_fn(encode_streams(encode, streams), groups, temperature)
        backward(loss)
        return loss.detach()
    pieces = [(s, i) for s, stream in enumerate(streams) for i in range(0, stream["input_ids"].shape[0], chunk)]
    states, outs = [], [[] for _ in streams]
    with torch.no_grad():
        for s, i in pieces:
            states.append(_RandState(streams[s]["input_ids"].device))
            outs[s].append(encode({k: v[i : i + chunk] for k, v in streams[s].items()}))
    like = next(o[0] for o in outs if o)

    def cached(chunks: list[torch.Tensor], template: torch.Tensor) -> torch.Tensor:
        whole = torch.cat(chunks) if chunks else _empty_like(template)
        return whole.detach().requires_grad_(True)

    # per stream, per output of encode: the whole stream's values as one leaf
    leaves = [[cached([_parts(o)[k] for o in outs[s]], t) for k, t in enumerate(_parts(like))]
              for s in range(len(streams))]
    loss = loss_fn([_rebuild(like, stream) for stream in leaves], groups, temperature)
    loss.backward()  # gradients with respect to the cached outputs only
    for n, ((s, i), state) in enumerate(zip(pieces, states)):
        sync = n == len(pieces) - 1
        with (contextlib.nullcontext() if sync else no_sync()), state.replay():
            parts = _parts(encode({k: v[i : i + chunk] for k, v in streams[s].items()}))
            # one backward through every output of the chunk, each against its cached gradient
            surrogate = sum((p * leaf.grad[i : i + chunk]).sum() for p, leaf in zip(parts, leaves[s])
                            if leaf.grad is not None)
            backward(surrogate)
    return loss.detach()
