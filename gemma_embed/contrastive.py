"""The three contrastive phases' task for the loop (gemma_embed/loop.py): the model a phase starts from, rows of
texts or token lists, the InfoNCE loss (through GradCache with `grad_cache_chunk`), STS Spearman on `eval_sts`,
and the phase's card. train/phase1.py, phase2.py and phase3.py call `run_phase` with their reader.

    run_phase(cfg, resume, read_rows, self_contrast=True)   # phases 1 and 3: each row is its own positive
    run_phase(cfg, resume, read_rows, self_contrast=False)  # phase 2: rows carry a positive and a hard negative
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch

from gemma_embed.config import ConfigError, PhaseConfig, read_previous_config
from gemma_embed.data.batches import ShuffledBatches
from gemma_embed.data.collate import Collator
from gemma_embed.loop import NonFiniteLoss, Task, adapter_and_head_groups, run_task
from gemma_embed.losses import contrastive_loss, encode_streams, gather, grad_cache_step, word_loss


def run_phase(
    cfg: PhaseConfig, resume: bool, read_rows: Callable, self_contrast: bool, batch_order: Callable = ShuffledBatches
) -> dict:
    """Train one contrastive phase. `read_rows(cfg, tokenizer)` returns the rows (anything with len and indexing);
    `batch_order(rows, batch_size, seed)` decides which rows form each global batch (see data/batches.py)."""
    return run_task(cfg, resume, contrastive_task(read_rows, self_contrast, batch_order))


def contrastive_task(read_rows: Callable, self_contrast: bool, batch_order: Callable = ShuffledBatches) -> Task:
    from gemma_embed.publish.card import write_phase_card

    return Task(
        start=encoder_start,
        read_rows=read_rows,
        collate=lambda cfg, tokenizer, model: Collator(tokenizer, cfg.max_length, self_contrast),
        param_groups=encoder_param_groups,
        forward_backward=lambda cfg, accelerator, model, batch: forward_backward(cfg, accelerator, model, *batch),
        write_card=write_phase_card,
        metric="sts",
        log_key="sts_spearman",
        evaluate=sts_score,
        batch_order=batch_order,
        same_evaluation=("eval_sts", "eval_max_pairs"),
    )


def encoder_start(cfg: PhaseConfig):
    """How to build the model a phase starts from (a function of the rows), its tokenizer, and the previous
    phase's resolved config (if any)."""
    from gemma_embed.backbones import load_tokenizer, resolve_backbone
    from modeling_gemma_embed import GemmaEmbedModel

    if cfg.init_from:
        folder = Path(cfg.init_from)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"init_from: {folder} is not a published Gemma-Embed folder (no config.json)")
        tokenizer = load_tokenizer(folder)
        build = lambda: GemmaEmbedModel.from_pretrained(folder, attn_implementation="sdpa")  # noqa: E731
        previous = read_previous_config(folder)
    else:
        path = resolve_backbone(cfg.backbone)
        tokenizer = load_tokenizer(path)
        build, previous = (lambda: GemmaEmbedModel.from_gemma(path, **cfg.model)), {}
    # the word head is the loss's, trained from zero in each phase that weighs it and never published
    return (lambda rows: build().attach_word_head() if cfg.word_loss_weight > 0 else build()), tokenizer, previous


def encoder_param_groups(cfg: PhaseConfig, model) -> list[dict]:
    """The LoRA adapters at `lr` (after `adapter_delay` steps), the projection head (and the word head, with
    `word_loss_weight`) at `head_lr`."""
    return adapter_and_head_groups(cfg, model, model.head, *([model.word_head] if cfg.word_loss_weight > 0 else []))


def sts_score(cfg: PhaseConfig, model, tokenizer) -> float | None:
    from gemma_embed.scores import sts_spearman

    if not cfg.eval_sts:
        return None
    return sts_spearman(lambda t: model.encode(t, tokenizer, progress=True), cfg.eval_sts, cfg.eval_max_pairs)


def forward_backward(cfg: PhaseConfig, accelerator, model, streams, groups) -> torch.Tensor:
    """The loss of one batch's streams, backpropagated (through GradCache with grad_cache_chunk): the contrastive
    loss, plus `word_loss_weight` times the mean word loss of every row (the word head reading each text's words
    back from its vector)."""
    words = cfg.word_loss_weight > 0
    unwrapped = accelerator.unwrap_model(model)
    special = tuple({unwrapped.config.text_config.pad_token_id, unwrapped.config.text_config.bos_token_id,
                     unwrapped.config.text_config.eos_token_id} - {None})

    def encode(batch):
        if not words:
            return model(batch["input_ids"], batch["attention_mask"])
        embeddings, states = model(batch["input_ids"], batch["attention_mask"], return_word_states=True)
        token_embeddings = unwrapped.model.get_input_embeddings().weight
        return embeddings, word_loss(states, token_embeddings, batch["input_ids"], batch["attention_mask"], special)

    def loss_fn(outputs, groups_, temperature):
        embeddings = [o[0] for o in outputs] if words else outputs
        loss = contrastive_loss(embeddings, groups_, temperature, cfg.symmetric, cfg.matryoshka())
        if words:  # every row of every stream, gathered: the global batch's mean, as one process would compute it
            loss = loss + cfg.word_loss_weight * gather(torch.cat([o[1] for o in outputs])).mean()
        if not torch.isfinite(loss):
            raise NonFiniteLoss
        return loss

    if cfg.grad_cache_chunk:
        return grad_cache_step(
            encode, streams, groups, cfg.temperature, cfg.grad_cache_chunk, accelerator.backward,
            no_sync=lambda: accelerator.no_sync(model) if accelerator.num_processes > 1 else contextlib.nullcontext(),
            loss_fn=loss_fn,
        )
    loss = loss_fn(encode_streams(encode, streams), groups, cfg.temperature)
    accelerator.backward(loss)
    return loss.detach()
