"""The trained corrector's task for the one loop (gemma_embed/loop.py): a copy of a trained decoder that also reads a
hypothesis learns to write the query (vec2text's second model), on the decoder's own hypotheses for its training
queries (gemma_embed/data/hypotheses.py). train/corrector.py runs it.

    run_task(cfg, resume, corrector_task())
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gemma_embed.config import ConfigError, CorrectorConfig
from gemma_embed.data.batches import ShuffledBatches
from gemma_embed.data.hypotheses import CorrectorCollator, read_corrector_rows
from gemma_embed.decoder_task import HeldoutScore, decoder_forward_backward
from gemma_embed.loop import Task, adapter_and_head_groups


def corrector_task() -> Task:
    from gemma_embed.publish.card import write_corrector_card

    return Task(
        start=corrector_start,
        read_rows=read_corrector_rows,
        collate=lambda cfg, tokenizer, model: CorrectorCollator(model),
        param_groups=lambda cfg, model: adapter_and_head_groups(cfg, model, *model.heads),
        forward_backward=decoder_forward_backward,
        write_card=write_corrector_card,
        metric="heldout_f1",
        log_key="heldout_token_f1",
        evaluate=OneStepScore(),
        batch_order=ShuffledBatches,
    )


def corrector_start(cfg: CorrectorConfig):
    """The corrector built from the trained decoder (or, with init_from, a corrector trained further), its
    tokenizer, and the previous corrector's config."""
    from gemma_embed.backbones import load_tokenizer
    from gemma_embed.config import read_previous_config
    from gemma_embed.encoder import encoder_fingerprint
    from modeling_gemma_embed_decoder import GemmaEmbedCorrector, GemmaEmbedDecoder, fingerprint

    if cfg.init_from:
        return (lambda rows: GemmaEmbedCorrector.from_pretrained(cfg.init_from)), load_tokenizer(
            cfg.init_from), read_previous_config(cfg.init_from)
    if not (Path(cfg.decoder) / "config.json").is_file():
        raise ConfigError(f"field 'decoder': {cfg.decoder} holds no trained decoder (no config.json); train one with "
                          "train/decoder.py")
    tokenizer = load_tokenizer(cfg.decoder)

    def build(rows):
        decoder = GemmaEmbedDecoder.from_pretrained(cfg.decoder)
        decoder.verify_encoder(encoder_fingerprint(cfg.encoder), f"the encoder {cfg.encoder}")
        started = {"name_or_path": cfg.decoder, "fingerprint": fingerprint(cfg.decoder)}
        return GemmaEmbedCorrector.from_decoder(decoder, started_from=started, **cfg.model)

    return build, tokenizer, {}


class OneStepScore(HeldoutScore):
    """The score during training on the first `eval_queries` held-out queries: the decoder's greedy hypothesis,
    then one greedy step of the corrector; its token F1 x 100, logged beside the hypothesis's."""

    def __call__(self, cfg: CorrectorConfig, model, tokenizer) -> dict | None:
        from gemma_embed.data.decoder_queries import vector_cache
        from gemma_embed.encoder import cached_vectors
        from modeling_gemma_embed_decoder import GemmaEmbedDecoder

        if self.texts is None and self.load(cfg):  # the hypotheses of the held-out vectors, once
            decoder = GemmaEmbedDecoder.from_pretrained(cfg.decoder).eval()
            self.hypotheses = [c[0] for i in range(0, len(self.texts), 64)
                               for c in decoder.decode(self.vectors[i : i + 64], tokenizer)]
            self.hypothesis_vectors = torch.from_numpy(np.array(cached_vectors(
                cfg.encoder, list(dict.fromkeys(self.hypotheses)), vector_cache(cfg), cfg.encode_batch_size)))
            index = {h: i for i, h in enumerate(dict.fromkeys(self.hypotheses))}
            self.hypothesis_vectors = self.hypothesis_vectors[[index[h] for h in self.hypotheses]]
        if self.texts is None:
            return None
        corrected = [c[0] for i in range(0, len(self.texts), 64)
                     for c in model.correct(self.vectors[i : i + 64], self.hypotheses[i : i + 64],
                                            self.hypothesis_vectors[i : i + 64], tokenizer)]
        return {"heldout_token_f1": self.f1(corrected), "hypothesis_token_f1": self.f1(self.hypotheses)}
