"""The one training loop behind every training script: Accelerate, LoRA, checkpoints, resume, logging, the
non-finite policy, evaluation, publishing.

A script supplies a `Task`: the model it starts from, its rows, how rows become a batch, which parameters train at
which rate, the loss's forward and backward, its evaluation and its card. The loop knows nothing of any task: the
three contrastive phases share one (gemma_embed/contrastive.py), the query decoder has its own
(gemma_embed/decoder_task.py). Everything else happens here, once:

    run = set_up(cfg, resume, task)   # model, optimizer, data, resume point
    train(run)                        # the step loop, evaluations, checkpoints
    finish(run)                       # merge the adapters, evaluate, publish, push
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gemma_embed import checkpoint, faults
from gemma_embed.backbones import save_tokenizer
from gemma_embed.config import ConfigError, TrainConfig, save_config
from gemma_embed.data.batches import ShuffledBatches
from gemma_embed.precision import Decision
from gemma_embed.runtime import MainOnly, make_accelerator, run_facts


class NonFiniteLoss(RuntimeError):
    """A loss (or weights about to be written) that is NaN or infinite: a task's forward_backward raises it, and
    the loop stops or skips the batch as the config says."""


def check_finite(model, what: str, trainable_only: bool = True) -> None:
    """Never write poisoned weights."""
    bad = [n for n, p in model.named_parameters() if (p.requires_grad or not trainable_only) and not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLoss(f"refusing to write {what}: non-finite values in {bad[:3]}")


def _previous_score(cfg: TrainConfig, previous: dict, task: "Task") -> float | None:
    """The previous run's final score on the same evaluation (the task's `same_evaluation` fields set, and equal in
    both configs), which is this run's starting score: reused rather than computed again."""
    fields_ = task.same_evaluation
    same = previous and fields_ and getattr(cfg, fields_[0], "") and all(
        previous.get(k) == getattr(cfg, k) for k in fields_)
    path = Path(cfg.init_from) / "train_summary.json"
    return json.loads(path.read_text()).get(f"{task.metric}_after") if same and path.is_file() else None


def check_output_dir(out: Path, resume: bool) -> None:
    """Refuse to start over a finished model or over checkpoints that --resume would continue."""
    if resume:
        return
    if (out / "config.json").exists():
        raise ConfigError(f"output_dir {out} already holds a published model; choose another output_dir or delete it")
    if checkpoint.latest(out / "checkpoints") is not None:
        raise ConfigError(f"output_dir {out} has checkpoints: pass --resume to continue, or delete {out}/checkpoints")


def write_published_folder(model, tokenizer, out: Path, cfg: TrainConfig, previous: dict, summary: dict,
            write_card: Callable) -> None:
    """Write the published folder into `out`, with its model card (`write_card(folder, repo_id)`): first beside
    it, then moved in, so a crash leaves no half model."""
    tmp = out / ".publish-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)
    save_config(cfg, tmp / "train_config.yaml")
    if previous:
        (tmp / "previous_phases.json").write_text(json.dumps(_lineage(cfg.init_from, previous), indent=2) + "\n")
    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_card(tmp, cfg.push_to_hub or out.name)
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def _lineage(init_from: str, previous: dict) -> list[dict]:
    """The resolved configs of every earlier phase, each with its summary under `train_summary`, oldest first: the
    previous folder's own lineage, then it."""
    earlier = Path(init_from) / "previous_phases.json"
    summary = Path(init_from) / "train_summary.json"
    own = {**previous, "train_summary": json.loads(summary.read_text()) if summary.is_file() else None}
    return (json.loads(earlier.read_text()) if earlier.exists() else []) + [own]


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


@dataclass
class Task:
    """What a training script brings to the loop."""

    start: Callable  # cfg -> (build_model(rows), tokenizer, the previous run's resolved config or {})
    read_rows: Callable  # (cfg, tokenizer) -> rows: anything with len and indexing
    collate: Callable  # (cfg, tokenizer, model) -> a function rows -> batch (tensors, or lists/tuples/dicts of them)
    # (cfg, model) -> optimizer groups: {"params": [...], "lr": rate, "delay": steps before it starts (optional)}
    param_groups: Callable
    forward_backward: Callable  # (cfg, accelerator, model, batch) -> the detached loss; raises NonFiniteLoss
    write_card: Callable  # (folder, repo_id): the published folder's card
    metric: str  # the summary's <metric>_before and <metric>_after
    log_key: str  # the score's name in logs/metrics.jsonl
    # (cfg, model, tokenizer) -> a score, or a dict of values to log holding it under log_key; on the main process
    evaluate: Callable | None = None
    batch_order: Callable = ShuffledBatches  # (rows, batch_size, seed) -> a batch order (data/batches.py)
    # config fields that name the evaluation: equal to the previous run's, its final score is this run's first
    same_evaluation: tuple[str, ...] = ()


@dataclass
class Run:
    """Everything one phase's training holds between set-up, the step loop and finishing."""

    cfg: TrainConfig
    out: Path
    accelerator: object
    model: torch.nn.Module  # prepared by accelerate (DDP-wrapped with several processes)
    optimizer: torch.optim.Optimizer
    scheduler: object
    tokenizer: object
    rows: object
    order: object
    collate: Callable
    task: Task
    log: MetricsLog
    previous: dict
    steps: int
    start: int
    precision: Decision
    main_only: MainOnly  # work the main process does while the others wait on a file, not in a collective
    rates: Callable[[int], list] | None = None  # total steps -> the rate schedule of each optimizer group
    summary: dict = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)


def run_task(cfg, resume: bool, task: Task) -> dict:
    """Train `task` as `cfg` says (continuing from the last checkpoint with `resume`); the run's summary."""
    run = set_up(cfg, resume, task)
    train(run)
    return finish(run)


def set_up(cfg: TrainConfig, resume: bool, task: Task) -> Run:
    """Accelerator, rows, model with fresh adapters, optimizer and schedule, restored from the last checkpoint when
    resuming. Every input check happens before the model is loaded."""
    from accelerate.utils import DataLoaderConfiguration, set_seed

    out = Path(cfg.output_dir)
    check_output_dir(out, resume)
    accelerator, precision = make_accelerator(
        cfg,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        # batch_size is global and the loop splits it itself, so the scheduler steps once per optimizer step
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with="tensorboard",
        project_dir=str(out / "logs"),
    )
    build_model, tokenizer, previous = task.start(cfg)
    rows = task.read_rows(cfg, tokenizer)
    set_seed(cfg.seed)
    model = build_model(rows)
    model.attach_lora()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    groups = [dict(g) for g in task.param_groups(cfg, model) if g["params"]]
    delays = [g.pop("delay", 0) for g in groups]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    order = task.batch_order(rows, cfg.batch_size, cfg.seed)
    if order.per_epoch == 0:
        raise ConfigError(f"{cfg.data}: {len(rows)} rows are fewer than one batch of {cfg.batch_size}")
    steps = cfg.max_steps or max(1, int(cfg.epochs * order.per_epoch) // cfg.grad_accum_steps)
    def rates(total: int) -> list[Callable[[int], float]]:  # each group's schedule ending at step `total`
        return [rate_schedule(cfg.warmup_steps, total, cfg.schedule, delay=d) for d in delays]

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rates(steps))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    start = 0
    if resume:
        last = checkpoint.latest(out / "checkpoints")
        if last is None:
            raise ConfigError(f"--resume: no checkpoint in {out}/checkpoints")
        start = checkpoint.load(accelerator, last, model, optimizer, scheduler)["step"]
        if accelerator.is_main_process:
            print(f"resuming from {last} (step {start} of {steps})", flush=True)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train_config.yaml")
    accelerator.init_trackers("train")
    run = Run(cfg=cfg, out=out, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
              tokenizer=tokenizer, rows=rows, order=order, collate=task.collate(cfg, tokenizer, accelerator.unwrap_model(model)), task=task,
              log=MetricsLog(accelerator, out / "logs"), previous=previous, steps=steps, start=start,
              precision=precision, main_only=MainOnly(accelerator, out), rates=rates)
    run.summary = {"phase": type(cfg).__name__, "rows": len(rows), "steps": steps, "batch_size": cfg.batch_size,
                   "num_processes": accelerator.num_processes, "start_step": start, "argv": list(sys.argv),
                   **run_facts(accelerator, precision)}
    return run


def adapter_and_head_groups(cfg: TrainConfig, model, *heads: torch.nn.Module) -> list[dict]:
    """Optimizer groups for a task's `param_groups`: the trainable parameters of the `heads` at `head_lr`, every
    other trainable parameter (the LoRA adapters) at `lr`, starting after `adapter_delay` steps."""
    own = [p for head in heads for p in head.parameters() if p.requires_grad]
    ids = {id(p) for p in own}
    adapters = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": adapters, "lr": cfg.lr, "delay": cfg.adapter_delay}, {"params": own, "lr": cfg.head_lr or cfg.lr}]


def rate_schedule(warmup: int, steps: int, kind: str, delay: int = 0) -> Callable[[int], float]:
    """The learning rate's factor at each step: 0 for `delay` steps, a linear warm-up over `warmup` steps, then
    constant or decaying linearly to 0 at `steps`."""

    def factor(step: int) -> float:
        if step < delay:
            return 0.0
        if step - delay < warmup:
            return (step - delay) / warmup
        if kind == "constant":
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - delay - warmup))

    return factor


def evaluate(run: Run, step: int, everyone: bool = True) -> float | None:
    """The task's score of the current model (STS Spearman on `eval_sts`, for the phases), computed by the main
    process; with `everyone`, the others wait for it (on a file) and get the score too, else only the main process
    calls this. It draws nothing from training's random stream: whatever the evaluation does (loading an encoder
    initialises modules; its inputs may be cached or not), the steps after it are the same."""
    if run.task.evaluate is None:
        return None
    device = run.accelerator.device

    def work() -> float | None:
        faults.pause("EVAL")
        began = time.time()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                run.precision.autocast(device.type):
            score = run.task.evaluate(run.cfg, run.unwrapped, run.tokenizer)
        if score is None:
            return None
        values = score if isinstance(score, dict) else {run.task.log_key: score}  # the score, and what comes with it
        run.log.write(step, **values, eval_seconds=round(time.time() - began, 1))
        return values[run.task.log_key]

    return run.main_only(f"eval-{step}", work) if everyone else work()


CALIBRATION_STEPS = 10  # how often the rate so far decides how many steps fit in max_train_seconds


def train(run: Run) -> None:
    """The starting evaluation, then every step from the resume point: forward, backward, optimizer, logging,
    periodic evaluation and checkpoints (the last step is always saved)."""
    from tqdm.auto import tqdm

    cfg, summary, before = run.cfg, run.summary, f"{run.task.metric}_before"
    if run.start == 0:
        summary[before] = _previous_score(cfg, run.previous, run.task)
        if summary[before] is None:
            summary[before] = evaluate(run, 0)
        else:
            run.log.write(0, **{run.task.log_key: summary[before]}, from_previous_phase=True)
    run.model.train()
    bar = tqdm(total=run.steps, initial=run.start, disable=not run.main, desc=cfg.label(), dynamic_ncols=True)
    t0, window, step = time.time(), [], run.start
    while step < run.steps:  # with max_train_seconds, run.steps is set to what fits every 10 steps
        faults.point("AT_STEP", step)
        window += _optimizer_step(run, step)
        bar.update(1)
        step = done = step + 1
        if cfg.max_train_seconds and (done - run.start) % CALIBRATION_STEPS == 0:
            _fit_to_time(run, time.time() - t0, done - run.start)
            bar.total = run.steps
            bar.refresh()
        if done % cfg.log_every == 0 or done == run.steps:
            avg = sum(window) / max(1, len(window))
            run.log.write(done, loss=avg, lr=run.scheduler.get_last_lr()[0], seconds=time.time() - t0)
            bar.set_postfix(loss=f"{avg:.4f}")
            window = []
        if cfg.eval_every and done % cfg.eval_every == 0 and done != run.steps:
            evaluate(run, done)
        if (cfg.save_every and done % cfg.save_every == 0) or done == run.steps:
            # the last step is always saved, so a failed publish in finish() can be retried with --resume
            check_finite(run.unwrapped, f"checkpoint step-{done}")
            checkpoint.save(run.accelerator, run.out / "checkpoints", done, run.model, run.optimizer, run.scheduler,
                            cfg.keep_checkpoints)
    bar.close()
    train_seconds = time.time() - t0
    summary.update(train_seconds=round(train_seconds, 1),
                   seconds_per_step=round(train_seconds / max(1, run.steps - run.start), 3))


def _fit_to_time(run: Run, elapsed: float, taken: int) -> None:
    """Set the steps to what fits in `max_train_seconds` at the mean rate of the `taken` steps so far, never more than
    were planned (read every CALIBRATION_STEPS, so a slow start that speeds up gets its steps back; the main
    process's reading, which every process follows), and end the rate schedule at the new last step."""
    from accelerate.utils import broadcast

    done, limit, rate = run.start + taken, run.cfg.max_train_seconds, elapsed / taken
    planned = run.summary.get("planned_steps", run.steps)
    fits = done + int(max(0.0, limit - elapsed) / rate)
    steps = int(broadcast(torch.tensor([min(planned, max(done, fits))], device=run.accelerator.device))[0])
    if steps == run.steps:
        return
    if run.main and "planned_steps" not in run.summary:
        print(f"max_train_seconds {limit:g}: {rate:.2f} s a step, so {steps} steps instead of {run.steps}", flush=True)
    run.summary.update(steps=steps, planned_steps=planned)
    run.steps = steps
    scheduler = getattr(run.scheduler, "scheduler", run.scheduler)  # accelerate's wrapper holds the LambdaLR
    scheduler.lr_lambdas = run.rates(steps)


def _optimizer_step(run: Run, step: int) -> list[float]:
    """One optimizer step over `grad_accum_steps` micro-batches; returns their losses. A non-finite loss stops the
    run or, with `nonfinite_loss: skip`, drops the batch."""
    cfg, accelerator = run.cfg, run.accelerator
    local = cfg.batch_size // accelerator.num_processes
    losses = []
    for micro in range(cfg.grad_accum_steps):
        index = step * cfg.grad_accum_steps + micro
        ids = run.order.batch(index)[accelerator.process_index * local : (accelerator.process_index + 1) * local]
        batch = _to(run.collate([run.rows[i] for i in ids]), accelerator.device)
        with accelerator.accumulate(run.model):
            try:
                loss = run.task.forward_backward(cfg, accelerator, run.model, batch)
            except NonFiniteLoss:
                where = f"step {step + 1}, global batch {index} (epoch {index // run.order.per_epoch})"
                if cfg.nonfinite_loss == "stop":
                    raise NonFiniteLoss(
                        f"non-finite loss at {where} of {cfg.data}; nothing was saved from this step. Lower lr, "
                        "or set nonfinite_loss: skip to skip such batches"
                    ) from None
                run.optimizer.zero_grad(set_to_none=True)
                run.log.write(step + 1, skipped_batch=index)
                continue
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def finish(run: Run) -> dict:
    """Merge the adapters, evaluate the merged model, and publish it, on the main process (a failed write keeps the
    checkpoints for --resume); push it to the Hub when the config names a repository. The other processes have
    nothing left to do after the last checkpoint and do not wait for this."""
    cfg, out, summary = run.cfg, run.out, run.summary
    run.main_only.clean()
    if run.main:
        unwrapped = run.unwrapped
        unwrapped.merge_lora()
        unwrapped.eval()
        summary[f"{run.task.metric}_after"] = evaluate(run, run.steps, everyone=False)
        losses = [json.loads(l) for l in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in losses if "loss" in r]
        summary.update(first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
        check_finite(unwrapped, "the published model", trainable_only=False)
        try:
            write_published_folder(unwrapped, run.tokenizer, out, cfg, run.previous, summary, run.task.write_card)
        except OSError as e:
            raise RuntimeError(
                f"could not write the published model to {out} ({e}); training is saved in {out}/checkpoints: "
                "free space or fix permissions, then run the same command with --resume"
            ) from e
        print(json.dumps(summary), flush=True)
        if cfg.push_to_hub:
            from gemma_embed.publish.push import push_folder

            push_folder(out, cfg.push_to_hub)
    for tracker in run.accelerator.trackers:  # not end_training(): it destroys the process group (leave_process_group)
        tracker.finish()
    return summary



def _to(batch, device):
    """A batch's tensors moved to `device`, however they are nested in lists, tuples and dicts."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


