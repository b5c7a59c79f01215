"""The bulk fan-out run (train/fan_out.py): sharded over processes, append-only, resumable, merged at the end.

The pairs are cut into batches fixed by the input order and the batch size; process r of n decodes batches r, r + n,
... and appends each batch's records to its own shard (OUT/shards/shard-R.jsonl) in one write, flushed to disk, so a
kill loses at most the batch being written, and a line cut off by it is dropped on the next start together with the
rest of its batch. A rerun with the same settings skips the batches already written (OUT/run.json records the
settings; other settings are refused). When every process is done, the main one merges the shards, in input order,
into OUT/reformulations.jsonl, applies the keep rule (OUT/kept.jsonl) and writes OUT/summary.json.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from gemma_embed import faults
from gemma_embed.data.readers import DataError
from gemma_embed.recipes import FanOutRecipe
from gemma_embed.reformulate import (Pair, Reformulator, batches, print_summary, read_records, reformulate_batch,
                                     summarise)


def check_run(out: Path, settings: dict) -> None:
    """Record the run's settings in OUT/run.json, or refuse a rerun whose settings differ from the recorded ones."""
    path = out / "run.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            differ = ", ".join(f"{k} {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise DataError(f"{out} holds a run with other settings ({differ}): resume it with the same settings, or "
                            "write to another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def shard_files(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("shard-*.jsonl"))


def repair(out: Path, plan: list[list[Pair]], steps: int) -> dict[int, set[str]]:
    """Drop from every shard the lines a kill cut off and the batches they leave incomplete (each shard is
    rewritten whole, atomically, where anything is dropped); a batch whose pairs differ from this input's batch of
    the same number is refused (the input changed). Returns the finished batches' pair ids by batch number."""
    done: dict[int, set[str]] = {}
    for stale in (out / "shards").glob("timing-*.json"):  # an earlier run's (its rate is not this run's)
        stale.unlink()
    for path in shard_files(out):
        records = list(read_records(path))
        by_batch: dict[int, list[dict]] = {}
        for r in records:
            by_batch.setdefault(r["batch"], []).append(r)
        complete = []
        for b, rows in by_batch.items():
            ids = [p.id for p in plan[b]] if b < len(plan) else None
            if ids is None or not {r["id"] for r in rows} <= set(ids):
                raise DataError(f"{path}: batch {b} holds pairs that are not this input's batch {b}: the pairs file "
                                "changed since the run began; write to another --out")
            if len(rows) == steps * len(ids):
                complete += rows
                done[b] = set(ids)
        if len(complete) != len(records) or not path.read_bytes().endswith(b"\n") and path.stat().st_size:
            tmp = path.with_suffix(".repair")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in complete))
            os.replace(tmp, path)
            print(f"{path}: dropped {len(records) - len(complete)} records of unfinished batches", flush=True)
    return done


def append(path: Path, records: list[dict], batch: int) -> None:
    """Append a batch's records in one write and flush them to disk."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.environ.get("GEMMA_EMBED_KILL_IN_FLUSH") == str(batch):  # the fault tests: die halfway through a write
            os.write(fd, data[: len(data) // 2])
            os.fsync(fd)
            faults.point("IN_FLUSH", batch)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def merge(out: Path, pairs: list[Pair]) -> list[dict]:
    """All shards' records in input order (each pair's steps in order)."""
    order = {p.id: i for i, p in enumerate(pairs)}
    records = {(r["id"], r["step"]): r for path in shard_files(out) for r in read_records(path)}
    return sorted(records.values(), key=lambda r: (order.get(r["id"], len(order)), r["step"]))


def write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def run(reformulator: Reformulator, pairs: list[Pair], out: Path, accelerator, facts: dict,
        seed: int = 0) -> dict | None:
    """Decode this process's share of the batches not yet written; on the main process, merge and summarise once
    every process is done (returns the summary there, None elsewhere)."""
    from tqdm.auto import tqdm

    from gemma_embed.encoder import cached_vectors
    from gemma_embed.runtime import MainOnly, wait_for
    from gemma_embed.text_metrics import normalise

    inverter, recipe = reformulator.inverter, reformulator.recipe
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    plan = batches(pairs, recipe.batch_pairs)
    sync = MainOnly(accelerator, out)
    done = {int(b) for b in sync("repair", lambda: sorted(repair(out, plan, recipe.steps)))}
    documents = list(dict.fromkeys(p.document for p in pairs))
    cache = inverter.cache or out / "cache"
    sync("documents", lambda: cached_vectors(inverter.encoder, documents, cache, embed=inverter.embed).shape[0])
    matrix = torch.as_tensor(cached_vectors(inverter.encoder, documents, cache, embed=inverter.embed).copy())
    index = {d: i for i, d in enumerate(documents)}
    training = {normalise(t) for t in inverter.training}
    mine = [b for b in range(rank, len(plan), world) if b not in done]
    shard = out / "shards" / f"shard-{rank:03d}.jsonl"
    written, began = 0, time.time()
    with tqdm(total=sum(len(plan[b]) for b in mine) * recipe.steps, unit="reform", disable=not main,
              desc=f"reformulations ({recipe.mode})", dynamic_ncols=True) as bar:
        for b in mine:
            with torch.random.fork_rng():
                torch.manual_seed(seed * 1_000_003 + b)  # the same batch samples the same, in any process
                records = reformulate_batch(reformulator, plan[b], matrix, index, training)
            append(shard, [{"batch": b, **r} for r in records], b)
            forget = getattr(inverter.embed, "forget", None)
            if forget:
                forget()  # the embedder's memory of texts would grow with the run
            written += len(records)
            bar.update(len(records))
    seconds = time.time() - began
    timing = out / "shards" / f"timing-{rank:03d}.json"
    timing.parent.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"reformulations": written, "seconds": seconds}) + "\n")
    marker = sync.folder / f"{sync.token}-done-{rank}"
    if world > 1:
        marker.write_text("done")
    if not main:
        return None
    for r in range(1, world):
        wait_for(lambda r=r: True if (sync.folder / f"{sync.token}-done-{r}").exists() else None, f"process {r}")
        (sync.folder / f"{sync.token}-done-{r}").unlink(missing_ok=True)
    sync.clean()
    timings = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("timing-*.json"))]
    total = sum(t["reformulations"] for t in timings)
    rate = total / max(max(t["seconds"] for t in timings), 1e-9) if total else None
    return finish(out, pairs, recipe, {**facts, "reformulations_this_run": total, "processes": world,
                                       "reformulations_per_second": rate})


def finish(out: Path, pairs: list[Pair], recipe: FanOutRecipe, facts: dict) -> dict:
    """Merge the shards into reformulations.jsonl, apply the keep rule (each record's `kept`; kept.jsonl), write
    summary.json, and print the table."""
    records = merge(out, pairs)
    summary = {**summarise(records, recipe), "recipe": asdict(recipe), **facts}
    write_jsonl(out / "reformulations.jsonl", records)
    write_jsonl(out / "kept.jsonl", [r for r in records if r["kept"]])
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print_summary(summary, facts.get("reformulations_per_second"), recipe.mode)
    print(f"wrote {out / 'reformulations.jsonl'} ({len(records):,} records), {out / 'kept.jsonl'}, "
          f"{out / 'summary.json'}", flush=True)
    return summary
