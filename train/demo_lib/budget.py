"""The demo's decoder stage by precision: how much of train/configs/demo/decoder.yaml runs, so that the stage keeps
to its time limit on either kind of CPU (docs/embedded_default.md: the limits and how the shares were measured)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gemma_embed.config import DecoderConfig


@dataclass(frozen=True)
class DecoderBudget:
    """How much of the decoder stage runs on a CPU of one precision. The stage's limit is 10 minutes where bf16 is
    native and 20 in float32 on an AVX2-only CPU, where the same work is slower: float32 trains for a share of
    decoder.yaml's steps on that share of its queries, corrects fewer held-out queries and walks fewer pairs, and its
    steps also stop at a time limit, so that a slower CPU of the same kind trains fewer steps rather than overrun
    the limit (the runs that set these: docs/embedded_default.md)."""

    share: float  # of decoder.yaml's max_steps and max_rows
    heldout: int  # held-out queries per set in the evaluation (each corrected for CORRECTION.rounds rounds)
    pairs: int  # bundled pairs the fan-out walks (train/fan_out.py)
    # the training's time limit (max_train_seconds; None: decoder.yaml's): a slower CPU of the same kind trains
    # fewer steps rather than overrun the stage's limit
    seconds: float | None = None

    def apply(self, cfg: DecoderConfig) -> DecoderConfig:
        return replace(cfg, max_steps=max(1, round(cfg.max_steps * self.share)),
                       max_rows=max(1, round(cfg.max_rows * self.share)) if cfg.max_rows else 0,
                       max_train_seconds=cfg.max_train_seconds if self.seconds is None else self.seconds)

    def line(self, cfg: DecoderConfig, precision) -> str:
        rows = f"{cfg.max_rows:,}" if cfg.max_rows else "all"
        return (f"decoder stage in {precision.name}: {cfg.max_steps} steps on {rows} training queries (at most "
                f"{cfg.max_train_seconds:.0f} s of steps), {self.heldout} held-out queries per set "
                f"({self.share:.0%} of the native-bf16 stage's training)")


BUDGETS = {"bf16": DecoderBudget(share=1.0, heldout=30, pairs=12),
           "no": DecoderBudget(share=0.5, heldout=15, pairs=6, seconds=450)}
