"""The one training loop behind the three phases: Accelerate, LoRA, the contrastive loss, checkpoints, logging.

A phase script supplies its config class, a reader (config, tokenizer) -> rows, and whether each row is its own
positive (self-contrast, phases 1 and 3) or carries one (phase 2). Everything else happens here, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import checkpoint  # noqa: E402
from train.config import ConfigError, PhaseConfig, read_previous_config, save_config  # noqa: E402
from train.data import Collator, ShuffledBatches  # noqa: E402
from train.losses import contrastive_loss, grad_cache_step  # noqa: E402


class NonFiniteLoss(RuntimeError):
    pass


def check_finite(model, what: str, trainable_only: bool = True) -> None:
    """Never write poisoned weights."""
    bad = [n for n, p in model.named_parameters() if (p.requires_grad or not trainable_only) and not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLoss(f"refusing to write {what}: non-finite values in {bad[:3]}")


def load_start(cfg: PhaseConfig):
    """The model and tokenizer a phase starts from, and the previous phase's resolved config (if any)."""
    from transformers import AutoTokenizer

    from modeling_gemma_embed import GemmaEmbedModel
    from train.backbones import resolve_backbone

    if cfg.init_from:
        folder = Path(cfg.init_from)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"init_from: {folder} is not a published Gemma-Embed folder (no config.json)")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return (lambda: GemmaEmbedModel.from_pretrained(folder, attn_implementation="sdpa")), tokenizer, (
            read_previous_config(folder)
        )
    path = resolve_backbone(cfg.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return (lambda: GemmaEmbedModel.from_gemma(path, **cfg.model)), tokenizer, {}


def _previous_score(cfg: PhaseConfig, previous: dict) -> float | None:
    """The previous phase's final score on the same evaluation, which is this phase's starting score: reused
    rather than computed again."""
    same = previous and cfg.eval_sts and all(previous.get(k) == getattr(cfg, k) for k in ("eval_sts", "eval_max_pairs"))
    path = Path(cfg.init_from) / "train_summary.json"
    return json.loads(path.read_text()).get("sts_after") if same and path.is_file() else None


def check_output_dir(out: Path, resume: bool) -> None:
    """Refuse to start over a finished model or over checkpoints that --resume would continue."""
    if resume:
        return
    if (out / "config.json").exists():
        raise ConfigError(f"output_dir {out} already holds a published model; choose another output_dir or delete it")
    if checkpoint.latest(out / "checkpoints") is not None:
        raise ConfigError(f"output_dir {out} has checkpoints: pass --resume to continue, or delete {out}/checkpoints")


def publish(model, tokenizer, out: Path, cfg: PhaseConfig, previous: dict, summary: dict) -> None:
    """Write the published folder into `out`: first beside it, then moved in, so a crash leaves no half model."""
    tmp = out / ".publish-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_config(cfg, tmp / "train_config.yaml")
    if previous:
        (tmp / "previous_phases.json").write_text(json.dumps(_lineage(cfg.init_from, previous), indent=2) + "\n")
    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def _lineage(init_from: str, previous: dict) -> list[dict]:
    """The resolved configs of every earlier phase, oldest first: the previous folder's own lineage, then it."""
    earlier = Path(init_from) / "previous_phases.json"
    return (json.loads(earlier.read_text()) if earlier.exists() else []) + [previous]


class MetricsLog:
    def __init__(self, accelerator, folder: Path):
        self.accelerator, self.path = accelerator, folder / "metrics.jsonl"
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, **values) -> None:
        if self.accelerator.is_main_process:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        self.accelerator.log(values, step=step)


def run_phase(
    cfg: PhaseConfig, resume: bool, read_rows: Callable, self_contrast: bool, batch_order: Callable = ShuffledBatches
) -> dict:
    """Train one phase. `read_rows(cfg, tokenizer)` returns the rows (anything with len and indexing);
    `batch_order(rows, batch_size, seed)` decides which rows form each global batch (see data.ShuffledBatches)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    out = Path(cfg.output_dir)
    check_output_dir(out, resume)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # several CPU processes then form one gloo group, not separate runs
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        # batch_size is global and the loop splits it itself, so the scheduler steps once per optimizer step
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with="tensorboard",
        project_dir=str(out / "logs"),
    )
    main = accelerator.is_main_process
    build_model, tokenizer, previous = load_start(cfg)
    rows = read_rows(cfg, tokenizer)  # every input check happens before the model is loaded
    set_seed(cfg.seed)
    model = build_model()
    model.attach_lora()
    if cfg.gradient_checkpointing:
        model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    adapters = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [{"params": adapters, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr or cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    order = batch_order(rows, cfg.batch_size, cfg.seed)
    per_epoch = order.per_epoch
    if per_epoch == 0:
        raise ConfigError(f"{cfg.data}: {len(rows)} rows are fewer than one batch of {cfg.batch_size}")
    steps = cfg.max_steps or max(1, int(cfg.epochs * per_epoch) // cfg.grad_accum_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    start = 0
    if resume:
        last = checkpoint.latest(out / "checkpoints")
        if last is None:
            raise ConfigError(f"--resume: no checkpoint in {out}/checkpoints")
        start = checkpoint.load(accelerator, last, model, optimizer, scheduler)["step"]
        if main:
            print(f"resuming from {last} (step {start} of {steps})", flush=True)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train_config.yaml")
    accelerator.init_trackers("train")
    log = MetricsLog(accelerator, out / "logs")
    collate = Collator(tokenizer, cfg.max_length, self_contrast)
    local = cfg.batch_size // accelerator.num_processes
    unwrapped = accelerator.unwrap_model(model)

    def evaluate(step: int) -> float | None:
        if not cfg.eval_sts:
            return None
        score = None
        if main:
            from train.evaluate import sts_spearman

            began = time.time()
            with accelerator.autocast():
                score = sts_spearman(lambda t: unwrapped.encode(t, tokenizer), cfg.eval_sts, cfg.eval_max_pairs)
            log.write(step, sts_spearman=score, eval_seconds=round(time.time() - began, 1))
        accelerator.wait_for_everyone()
        return score

    summary = {"phase": type(cfg).__name__, "rows": len(rows), "steps": steps, "batch_size": cfg.batch_size,
               "num_processes": accelerator.num_processes, "start_step": start}
    if start == 0:
        summary["sts_before"] = _previous_score(cfg, previous)
        if summary["sts_before"] is None:
            summary["sts_before"] = evaluate(0)
        else:
            log.write(0, sts_spearman=summary["sts_before"], from_previous_phase=True)
    model.train()
    bar = tqdm(total=steps, initial=start, disable=not main, desc=type(cfg).__name__, dynamic_ncols=True)
    t0, window = time.time(), []
    kill_at = int(os.environ.get("GEMMA_EMBED_KILL_AT_STEP", "0"))  # fault injection for the crash tests
    for step in range(start, steps):
        if kill_at and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        for micro in range(cfg.grad_accum_steps):
            index = step * cfg.grad_accum_steps + micro
            ids = order.batch(index)
            ids = ids[accelerator.process_index * local : (accelerator.process_index + 1) * local]
            streams, groups = collate([rows[i] for i in ids])
            streams = [{k: v.to(accelerator.device) for k, v in s.items()} for s in streams]
            groups = groups.to(accelerator.device)
            with accelerator.accumulate(model):
                try:
                    loss = _forward_backward(cfg, accelerator, model, streams, groups)
                except NonFiniteLoss:
                    where = f"step {step + 1}, global batch {index} (epoch {index // per_epoch})"
                    if cfg.nonfinite_loss == "stop":
                        raise NonFiniteLoss(
                            f"non-finite loss at {where} of {cfg.data}; nothing was saved from this step. Lower lr, "
                            "or set nonfinite_loss: skip to skip such batches"
                        ) from None
                    optimizer.zero_grad(set_to_none=True)
                    log.write(step + 1, skipped_batch=index)
                    continue
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window.append(loss.item())
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == steps:
            avg = sum(window) / max(1, len(window))
            log.write(done, loss=avg, lr=scheduler.get_last_lr()[0], seconds=time.time() - t0)
            bar.set_postfix(loss=f"{avg:.4f}")
            window = []
        if cfg.eval_every and done % cfg.eval_every == 0 and done != steps:
            evaluate(done)
        if (cfg.save_every and done % cfg.save_every == 0) or done == steps:
            # the last step is always saved, so a failed publish below can be retried with --resume
            check_finite(unwrapped, f"checkpoint step-{done}")
            checkpoint.save(accelerator, out / "checkpoints", done, model, optimizer, scheduler, cfg.keep_checkpoints)
    bar.close()
    train_seconds = time.time() - t0
    summary.update(train_seconds=round(train_seconds, 1),
                   seconds_per_step=round(train_seconds / max(1, steps - start), 3))
    accelerator.wait_for_everyone()
    unwrapped.merge_lora()
    unwrapped.eval()
    summary["sts_after"] = evaluate(steps)
    if main:
        losses = [json.loads(l) for l in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in losses if "loss" in r]
        summary.update(first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
        check_finite(unwrapped, "the published model", trainable_only=False)
        try:
            publish(unwrapped, tokenizer, out, cfg, previous, summary)
        except OSError as e:
            raise RuntimeError(
                f"could not write the published model to {out} ({e}); training is saved in {out}/checkpoints: "
                "free space or fix permissions, then run the same command with --resume"
            ) from e
        print(json.dumps(summary), flush=True)
        if cfg.push_to_hub:
            from train.push import push_folder

            push_folder(out, cfg.push_to_hub)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _forward_backward(cfg, accelerator, model, streams, groups) -> torch.Tensor:
    def encode(batch):
        return model(batch["input_ids"], batch["attention_mask"])

    if cfg.grad_cache_chunk:
        def guarded(embeddings, groups_, temperature):
            loss = contrastive_loss(embeddings, groups_, temperature, cfg.symmetric)
            if not torch.isfinite(loss):
                raise NonFiniteLoss
            return loss

        return grad_cache_step(
            encode, streams, groups, cfg.temperature, cfg.grad_cache_chunk, accelerator.backward,
            no_sync=lambda: accelerator.no_sync(model) if accelerator.num_processes > 1 else contextlib.nullcontext(),
            loss_fn=guarded,
        )
    loss = contrastive_loss([encode(s) for s in streams], groups, cfg.temperature, cfg.symmetric)
    if not torch.isfinite(loss):
        raise NonFiniteLoss
    accelerator.backward(loss)
    return loss.detach()
