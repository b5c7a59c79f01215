"""Phase 3 at the original's scale: the token store, the length-bucketed sampler and the training step, measured.

    python benchmarks/phase3_scale.py                                   # 7,129,444 queries, the original's count
    python benchmarks/phase3_scale.py --queries 200000 --train_steps 2  # a quick run
    python benchmarks/phase3_scale.py --threads 1                       # on a CPU shared with another job

1. Builds a queries.db of N synthetic queries shaped like the 97k real ones in ../shared/data/web_queries_anserini
   (each takes a real query's word count, then words drawn from the real words' distribution), kept under --work;
   without ../shared/data, shaped like the bundled examples/data/queries.tsv (14,399 real queries) instead.
2. Builds the token store from it (in a child process, so its peak RSS is the build's own): seconds, bytes on
   disk, and the ratio to the original layout (two N x 128 int64 tensors: N * 128 * 8 * 2 bytes).
3. Plans an epoch of length-bucketed batches: the fraction of real (non-pad) tokens vs the original's fixed 128.
4. Times phase-3 training steps (two dropout views, InfoNCE, backward, AdamW on LoRA) in our style (store, bucketed
   batches, dynamic padding, SDPA, and the precision a user gets by default: gemma_embed.precision's decision for
   this machine) and the original's (the same rows padded to 128, eager attention, fp32), alternating step by step,
   on the tiny model and on the real Gemma 3 270M: real tokens per second. `--precision bf16|no` forces ours.
5. With CUDA, times our style on the gemma-3-1b-pt architecture (random weights, bf16, SDPA) and reports its
   model FLOPs utilisation (for a GPU whose exact name has a known peak, benchmarks/gemma1b.py).
The CPU model, the torch threads and each side's precision are printed beside the times. The last line:
storage_ratio=... build_seconds=... useful_token_fraction=... speedup_vs_original=... ours_precision=... cpu=...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from gemma1b import gemma3_1b_text_config, lora_step_flops, peak_flops
from gemma_embed.data.query_files import read_queries_tsv
from gemma_embed.precision import Decision, resolve

REPO = Path(__file__).resolve().parents[1]  # the checkout: ../shared/data beside it, runs/ inside it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REAL_QUERIES = REPO.parent / "shared" / "data" / "web_queries_anserini" / "all_real_queries_dedup.tsv"
BUNDLED_QUERIES = REPO / "examples" / "data" / "queries.tsv"
ORIGINAL_WIDTH = 128  # the original padded every query to 128 tokens


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


# ------------------------------------------------------------------------------------------------ synthetic data
def real_queries(path: Path) -> list[str]:
    return [q.strip() for q, _ in read_queries_tsv(path) if q.strip()]


def synthetic_queries_db(real: list[str], n: int, target: Path, seed: int, chunk: int = 500_000) -> Path:
    """n queries: a real query's word count, then that many words drawn from the real words' distribution."""
    if target.exists():
        print(f"reusing {target}", flush=True)
        return target
    word_counts = np.array([len(q.split()) for q in real])
    frequency = Counter(w for q in real for w in q.split())
    words = list(frequency)
    p = np.array([frequency[w] for w in words], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, query TEXT NOT NULL)")
    t0 = time.time()
    for start in range(0, n, chunk):
        count = rng.choice(word_counts, size=min(chunk, n - start))
        drawn = [words[i] for i in rng.choice(len(words), size=int(count.sum()), p=p)]
        ends = np.cumsum(count).tolist()
        queries = [" ".join(drawn[a:b]) for a, b in zip([0] + ends[:-1], ends)]
        con.executemany("INSERT INTO queries (query) VALUES (?)", ((q,) for q in queries))
    con.commit()
    con.close()
    os.replace(tmp, target)
    print(f"wrote {n:,} synthetic queries to {target} in {time.time() - t0:.0f} s", flush=True)
    return target


# ------------------------------------------------------------------------------------------------------- store
def _build_in_child(db: str, folder: str, tokenizer_dir: str, max_length: int, out) -> None:
    from transformers import AutoTokenizer

    from gemma_embed.data.store import QueryTable, build_from_sqlite

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    t0 = time.time()
    store = build_from_sqlite(QueryTable(db), tokenizer, folder, max_length)
    out.put({"seconds": time.time() - t0, "peak_rss_mb": peak_rss_mb(), "rows": len(store), "bytes": store.nbytes})


def build_store(db: Path, folder: Path, tokenizer_dir: str, max_length: int) -> dict:
    shutil.rmtree(folder, ignore_errors=True)  # measure a fresh build
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_build_in_child, args=(str(db), str(folder), tokenizer_dir, max_length, queue))
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode:
        raise SystemExit(f"the store build failed (exit code {child.exitcode})")
    return result


# ---------------------------------------------------------------------------------------------------- training
def padded(seqs: list[list[int]], width: int | None, pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded to the longest row (dynamic padding, ours), or to a fixed `width` (the original's 128)."""
    from gemma_embed.data.collate import pad_left

    if width is None:
        return pad_left(seqs, pad_id)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = s[:width]
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


class Style:
    """One way of running the phase-3 step: model build, attention, precision, padding."""

    def __init__(self, name: str, model, width: int | None, precision: Decision, device: str, pad_id: int):
        from gemma_embed.losses import contrastive_loss

        self.name, self.model, self.width, self.precision, self.device, self.pad_id = (
            name, model, width, precision, device, pad_id)
        self.loss = contrastive_loss
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.seconds, self.real_tokens, self.padded_tokens = 0.0, 0, 0

    def step(self, seqs: list[list[int]], groups: torch.Tensor, timed: bool) -> None:
        batch = {k: v.to(self.device) for k, v in padded(seqs, self.width, self.pad_id).items()}
        _sync(self.device)
        t0 = time.perf_counter()
        with self.precision.autocast(self.device):
            views = [self.model(batch["input_ids"], batch["attention_mask"]) for _ in range(2)]  # two dropout views
            loss = self.loss(views, groups.to(self.device), 0.05)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(self.device)
        if timed:
            self.seconds += time.perf_counter() - t0
            self.real_tokens += 2 * int(batch["attention_mask"].sum())
            self.padded_tokens += 2 * batch["attention_mask"].numel()

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def stratified_batches(store, plan: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` batches of the epoch's plan spread evenly over its padded lengths, so a few steps stand for all."""
    widths = store.lengths[plan].max(axis=1)
    by_width = np.argsort(widths, kind="stable")
    picks = ((np.arange(count) + 0.5) / count * len(by_width)).astype(int)
    return [plan[by_width[i]] for i in picks]


def compare_styles(label: str, backbone: str, store, batches: list[np.ndarray], device: str, precision: Decision,
                   id_modulo: int = 0) -> tuple[Style, Style]:
    """Our style (in `precision`) vs the original's (float32) on the same rows; the first batch warms up, then
    steps alternate."""
    from gemma_embed.data.collate import stable_id
    from modeling_gemma_embed import GemmaEmbedModel

    def build(attention: str) -> "GemmaEmbedModel":
        torch.manual_seed(0)
        model = GemmaEmbedModel.from_gemma(backbone, attn_implementation=attention).to(device)
        return model.attach_lora().train()

    ours = Style("ours", build("sdpa"), None, precision, device, 0)
    original = Style("original", build("eager"), ORIGINAL_WIDTH, Decision("no", "the original's", device), device, 0)
    for i, rows in enumerate(batches):
        seqs = [store[int(r)][0] for r in rows]
        if id_modulo:  # the tiny model's small vocabulary: same lengths, ids folded into it
            seqs = [[t % id_modulo for t in s] for s in seqs]
        groups = torch.tensor([stable_id(s) for s in seqs])
        for style in (ours, original) if i % 2 else (original, ours):
            style.step(seqs, groups, timed=i > 0)
    for style in (ours, original):
        print(f"  {label} {style.name:8s} ({style.precision.name}): {style.real_tokens / 2 / (len(batches) - 1):7.0f} "
              f"real tokens per view per step, {style.real_tokens / style.padded_tokens:5.3f} of the tokens computed "
              f"are real, {style.seconds / (len(batches) - 1):7.3f} s/step, {style.tokens_per_second:9.1f} real "
              "tokens/s", flush=True)
    print(f"  {label} speedup: {ours.tokens_per_second / original.tokens_per_second:.1f}x", flush=True)
    return ours, original


# ------------------------------------------------------------------------------------------------- gemma-3-1b
def measure_mfu(store, batches: list[np.ndarray], device: str, text_config) -> dict:
    """Our style (bucketed batches, dynamic padding, SDPA, bf16 weights) on `text_config` with random weights:
    real tokens/s and model FLOPs utilisation (gemma1b.lora_step_flops over the peak of this exact GPU)."""
    from configuration_gemma_embed import GemmaEmbedConfig
    from gemma_embed.data.collate import stable_id
    from modeling_gemma_embed import GemmaEmbedModel

    torch.manual_seed(0)
    model = GemmaEmbedModel(GemmaEmbedConfig(text_config=text_config))
    model.config._attn_implementation = model.model.config._attn_implementation = "sdpa"
    model = model.to(device=device, dtype=torch.bfloat16).attach_lora().train()
    c = text_config
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    style = Style("ours", model, None, Decision("no", "bf16 weights", device), device, 0)
    flops = 0.0
    for i, rows in enumerate(batches):
        seqs = [[t % c.vocab_size for t in store[int(r)][0]] for r in rows]
        style.step(seqs, torch.tensor([stable_id(s) for s in seqs]), timed=i > 0)
        if i > 0:
            flops += lora_step_flops(c, params, len(seqs), max(len(s) for s in seqs))
    achieved = flops / style.seconds
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = peak_flops(name)
    return {"device": name, "tokens_per_second": style.tokens_per_second, "tflops": achieved / 1e12,
            "mfu": achieved / peak if peak else None, "params_non_embedding": params}


# -------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=7_129_444, help="synthetic queries (default: the original's)")
    ap.add_argument("--batch_size", type=int, default=32, help="rows per batch, for the sampler and the steps")
    ap.add_argument("--train_steps", type=int, default=3, help="timed steps per style, after one warm-up step")
    ap.add_argument("--gpu_batch_size", type=int, default=512, help="rows per batch for the gemma-3-1b (CUDA only)")
    ap.add_argument("--max_length", type=int, default=ORIGINAL_WIDTH, help="store truncation (the original: 128)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_phase3"), help="where the db and store go")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip_270m", action="store_true", help="time the tiny model only")
    ap.add_argument("--precision", default="auto", help="our style's precision: auto (a user's default), bf16 or no")
    args = ap.parse_args(argv)
    shape_source = REAL_QUERIES if REAL_QUERIES.exists() else BUNDLED_QUERIES
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from gemma_embed.backbones import build_tiny_backbone, resolve_backbone
    from gemma_embed.data.batches import LengthBucketedBatches
    from gemma_embed.data.store import TokenStore

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve(args.precision, device)
    work = Path(args.work)
    try:
        gemma = resolve_backbone("gemma3-270m")
    except Exception as e:  # noqa: BLE001 - any failure to get the 270M only skips its part
        gemma = None
        print(f"the real Gemma 3 270M is unavailable ({e}): its tokenizer and step are skipped", flush=True)
    tokenizer_dir = gemma or str(build_tiny_backbone(work / "tiny"))
    cpu = precision.cpu or torch.cuda.get_device_name()
    print(f"device {device} ({cpu}), torch threads {torch.get_num_threads()}, tokenizer {tokenizer_dir}; our style's "
          f"{precision.line()}; the original's: float32", flush=True)
    print(f"synthetic queries shaped like {shape_source}", flush=True)

    n = args.queries
    db = synthetic_queries_db(real_queries(shape_source), n, work / f"queries-{n}-{shape_source.stem}-seed{args.seed}.db",
                         args.seed)
    folder = work / f"store-{n}"
    built = build_store(db, folder, tokenizer_dir, args.max_length)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    t0 = time.time()
    store = TokenStore.open(folder, tokenizer)
    original_bytes = n * ORIGINAL_WIDTH * 8 * 2
    storage_ratio = original_bytes / built["bytes"]
    print(f"store: {built['rows']:,} rows, {store.meta['tokens']:,} tokens ({store.lengths.mean():.2f} per query), "
          f"built in {built['seconds']:.1f} s ({built['rows'] / built['seconds']:,.0f} rows/s), "
          f"{built['bytes'] / 1e6:,.1f} MB on disk vs {original_bytes / 1e9:,.2f} GB in the original layout: "
          f"{storage_ratio:.1f}x smaller; the build's peak RSS {built['peak_rss_mb']:,.0f} MB; "
          f"reopened in {time.time() - t0:.1f} s", flush=True)

    t0 = time.time()
    order = LengthBucketedBatches(store, args.batch_size, args.seed)
    t1 = time.time()
    plan = order.plan(0)
    t2 = time.time()
    lengths = store.lengths[plan]
    useful = lengths.sum() / (lengths.max(axis=1).sum() * args.batch_size)
    useful_original = np.minimum(store.lengths, ORIGINAL_WIDTH).mean() / ORIGINAL_WIDTH
    distinct = np.unique(store.row_hashes()).size
    print(f"sampler: {order.per_epoch:,} batches of {args.batch_size}; set up in {t1 - t0:.1f} s (row hashes, "
          f"repeats: {distinct:,} distinct queries), an epoch planned in {t2 - t1:.1f} s; real tokens in the "
          f"batches {useful:.3f} (original fixed {ORIGINAL_WIDTH}: {useful_original:.3f}); peak RSS so far "
          f"{peak_rss_mb():,.0f} MB", flush=True)

    batches = stratified_batches(store, plan, args.train_steps + 1)
    print(f"training steps ({args.train_steps} timed after 1 warm-up, batch {args.batch_size}, two views; "
          f"ours: SDPA, {precision.name}, dynamic padding; original: eager, fp32, padded to {ORIGINAL_WIDTH}):",
          flush=True)
    tiny = str(build_tiny_backbone(work / "tiny")) if not (work / "tiny").exists() else str(work / "tiny")
    tiny_vocab = len(AutoTokenizer.from_pretrained(tiny))
    ours, original = compare_styles("tiny", tiny, store, batches, device, precision, id_modulo=tiny_vocab)
    speedup, speedup_model = ours.tokens_per_second / original.tokens_per_second, "tiny"
    if gemma and not args.skip_270m:
        ours, original = compare_styles("270m", gemma, store, batches, device, precision)
        speedup, speedup_model = ours.tokens_per_second / original.tokens_per_second, "270m"
    else:
        print("  270m: not measured (" + ("--skip_270m" if gemma else "the 270M is unavailable") + ")")

    if device == "cuda":
        gpu_batches = stratified_batches(store, LengthBucketedBatches(store, args.gpu_batch_size, args.seed).plan(0),
                                         args.train_steps + 1)
        r = measure_mfu(store, gpu_batches, device, gemma3_1b_text_config())
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (peak of this GPU unknown)"
        print(f"gemma-3-1b-pt architecture on {r['device']} (batch {args.gpu_batch_size}, bf16, SDPA, LoRA): "
              f"{r['tokens_per_second']:,.0f} real tokens/s, {r['tflops']:.1f} TFLOP/s, MFU {mfu}", flush=True)
    else:
        print("gemma-3-1b-pt architecture: not measured (no CUDA device)")
    print(f"peak RSS of this process {peak_rss_mb():,.0f} MB, with both styles' models and the original style's "
          f"activations (the build ran in a child: {built['peak_rss_mb']:,.0f} MB)")
    print(json.dumps({"queries": n, "store_bytes": built["bytes"], "speedup_model": speedup_model,
                      "ours_precision": precision.to_dict(), "original_precision": "float32", "cpu": cpu,
                      "torch_threads": torch.get_num_threads()}))
    print(f"storage_ratio={storage_ratio:.1f} build_seconds={built['seconds']:.1f} useful_token_fraction={useful:.3f} "
          f"speedup_vs_original={speedup:.1f} ours_precision={precision.precision} cpu={cpu.replace(' ', '_')}")


if __name__ == "__main__":
    main()
