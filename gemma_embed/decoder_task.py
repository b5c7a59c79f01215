"""The query decoder's task for the one loop (gemma_embed/loop.py): the decoder it starts from, its rows and batches
(gemma_embed/data/decoder_queries.py), which parameters train at which rate, the loss, the score during training
and the card. train/decoder.py runs it.

    run_task(cfg, resume, decoder_task())
"""

from __future__ import annotations

import numpy as np
import torch

from gemma_embed.config import DecoderConfig
from gemma_embed.data.batches import ShuffledBatches
from gemma_embed.data.query_files import read_queries
from gemma_embed.data.decoder_queries import DecoderCollator, DecoderRows, read_decoder_rows, vector_cache
from gemma_embed.encoder import cached_vectors
from gemma_embed.scores import conditioning_gap
from gemma_embed.text_metrics import token_f1
from gemma_embed.loop import NonFiniteLoss, Task, adapter_and_head_groups


def decoder_task() -> Task:
    """What the decoder brings to the loop: its rows, batches, loss, score during training, start and card."""
    from gemma_embed.publish.card import write_decoder_card

    return Task(
        start=decoder_start,
        read_rows=read_decoder_rows,
        collate=lambda cfg, tokenizer, model: DecoderCollator(model.config),
        param_groups=decoder_param_groups,
        forward_backward=decoder_forward_backward,
        write_card=write_decoder_card,
        metric="heldout_f1",
        log_key="heldout_token_f1",
        evaluate=HeldoutScore(),
        batch_order=ShuffledBatches,
    )


def decoder_param_groups(cfg: DecoderConfig, model) -> list[dict]:
    """The LoRA adapters at `lr` (after `adapter_delay` steps: the prefix learns alone first), the prefix MLP at
    `head_lr`."""
    return adapter_and_head_groups(cfg, model, model.prefix)


def decoder_forward_backward(cfg, accelerator, model, batch: dict) -> torch.Tensor:
    loss = model(**batch).loss
    if not torch.isfinite(loss):
        raise NonFiniteLoss
    accelerator.backward(loss)
    return loss.detach()


class HeldoutScore:
    """The score during training on the first `eval_queries` held-out queries (vectors from the same encoder, cached
    like the training vectors): greedy token F1 x 100, logged with the conditioning gap (nats per token)."""

    def __init__(self):
        self.texts, self.vectors = None, None

    def load(self, cfg: DecoderConfig) -> bool:
        """Read the held-out queries and their vectors once; False where the config asks for no score."""
        if not cfg.heldout or not cfg.eval_queries:
            return False
        if self.texts is None:
            self.texts = read_queries(cfg.heldout)[: cfg.eval_queries]
            self.vectors = torch.from_numpy(np.array(cached_vectors(cfg.encoder, self.texts, vector_cache(cfg),
                                                                      cfg.encode_batch_size)))
        return True

    def f1(self, written: list[str]) -> float:
        """Token F1 x 100 of `written` against the held-out queries."""
        return 100 * sum(token_f1(d, t) for d, t in zip(written, self.texts)) / len(self.texts)

    def __call__(self, cfg: DecoderConfig, model, tokenizer) -> dict | None:
        if not self.load(cfg):
            return None
        decoded = [c[0] for batch in range(0, len(self.texts), 64)
                   for c in model.decode(self.vectors[batch : batch + 64], tokenizer)]
        return {"heldout_token_f1": self.f1(decoded), "conditioning_gap": conditioning_gap(
            model, tokenizer, self.texts, self.vectors)["gap"]}


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
