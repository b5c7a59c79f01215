"""The GPU path users take at scale, checked in one command that needs nothing beside the checkout (random weights,
the bundled sample data, nothing downloaded):

    python benchmarks/gpu_check.py              # on one GPU, within 8 minutes
    python benchmarks/gpu_check.py --reduced    # on CPU, as CI runs it: a tiny model, no MFU, about a minute

1. bf16 support and the precision decision (gemma_embed/precision.py).
2. GradCache against the uncached gradient, dropout on (attention and LoRA), causal and bidirectional attention,
   padded and unpadded batches: the largest gradient difference, relative to the largest gradient. GradCache
   replays each chunk's RNG state; on CUDA the recomputation may still differ if SDPA picks another kernel (with
   another dropout stream) for the pass with a graph than for the pass without.
3. Padded against unpadded embeddings: each text alone against the same text in a left-padded batch (finite,
   smallest cosine).
4. A phase-1 run killed at step 5 and resumed, against an uninterrupted one (the tiny backbone, 8 steps): the
   published weights bit-identical, or their largest difference.
5. Real tokens per second and MFU of a phase-3 step (two dropout views, InfoNCE, backward, AdamW on LoRA r=16
   q/v, the loop's own forward-backward with phase3.yaml's GradCache chunk of 128) on the gemma-3-1b-pt
   architecture with random weights, at batch 64 and 512; batches are length-bucketed like phase 3's, lengths drawn
   from the bundled queries. MFU needs the GPU's peak by exact name (benchmarks/gemma1b.py): otherwise none.
6. Queries per second of a query-decoder step as train/configs/decoder.yaml sets it (the whole gemma-3-1b-pt
   architecture, random weights; 16 soft tokens at the token rows' scale; LoRA r=32 on every projection; a
   restricted vocabulary of 32,768 tokens; batch 256 of the bundled queries' lengths, at most 32 tokens).
7. Reformulations per second of the bulk fan-out (gemma_embed.reformulate.reformulate_batch, as train/fan_out.py
   runs it) with a decoder and an encoder of the gemma-3-1b-pt architecture (random weights, so every query runs to
   the decoder's 32-token limit: a worst case), the bundled pairs, 6 steps each, batches of 64 pairs: greedy, and
   corrected (2 rounds of the measured recipe, random word edits in place of the gradient's). No fluency model.

The last line: device= precision= gradcache_max_diff= resume= tokens_per_s= mfu= decoder_queries_per_s=
fanout_greedy_per_s= fanout_correct_per_s=
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gemma1b import gemma3_1b_text_config, lora_step_flops, peak_flops
from gemma_embed.backbones import tiny_text_config
from gemma_embed.config import PhaseConfig
from gemma_embed.data.query_files import read_queries
from gemma_embed.losses import contrastive_loss, grad_cache_step
from gemma_embed.precision import resolve

REPO = Path(__file__).resolve().parents[1]  # the checkout: train/, examples/data
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build(text_config, device, attention="bidirectional", dropout=0.0, lora_r=16):
    from configuration_gemma_embed import GemmaEmbedConfig
    from modeling_gemma_embed import GemmaEmbedModel

    config = GemmaEmbedConfig(text_config=text_config.to_dict(), attention=attention, view_dropout=dropout,
                              lora_dropout=dropout, lora_r=lora_r, lora_alpha=2 * lora_r)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = GemmaEmbedModel(config)
    model.model.config._attn_implementation = "sdpa"
    model.attach_lora().train()
    with torch.no_grad():  # trained adapters, so that their gradients are not all zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    return model


def batch(rows: int, lengths: list[int], vocab: int, device, seed: int) -> dict:
    """Left-padded token ids (random, <bos>=2 first) of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(4, vocab, (n,), generator=g)
        ids[i, width - n] = 2
        mask[i, width - n :] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


# --------------------------------------------------------------------------------------------------- checks
def gradcache_diff(text_config, device, precision, rows: int, chunk: int) -> dict:
    """Largest |GradCache - uncached| gradient over the largest |uncached| gradient, for each attention and
    padding; the uncached reference encodes the same chunks with a graph from the same RNG state."""
    out = {}
    for attention in ("causal", "bidirectional"):
        model = build(text_config, device, attention, dropout=0.1)
        encode = lambda b: model(b["input_ids"], b["attention_mask"])  # noqa: E731
        for padded in (False, True):
            lengths = [4 + (7 * i) % 13 for i in range(rows)] if padded else [12] * rows
            streams = [batch(rows, lengths, text_config.vocab_size, device, s) for s in (1, 2)]
            groups = torch.arange(rows, device=device)
            with precision.autocast(device.type):
                torch.manual_seed(123)
                embs = [torch.cat([encode({k: v[i : i + chunk] for k, v in s.items()}) for i in range(0, rows, chunk)])
                        for s in streams]
                contrastive_loss(embs, groups, 0.05).backward()
                reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
                model.zero_grad()
                torch.manual_seed(123)
                grad_cache_step(encode, streams, groups, 0.05, chunk, lambda t: t.backward())
            scale = max(g.abs().max().item() for g in reference.values())
            diff = max((p.grad - reference[n]).abs().max().item() for n, p in model.named_parameters()
                       if p.requires_grad)
            out[f"{attention}, {'padded' if padded else 'unpadded'}"] = diff / scale
            model.zero_grad()
    return out


def padding_agreement(text_config, device, precision) -> dict:
    model = build(text_config, device).eval()
    lengths = [3, 9, 5, 16, 1 + 1, 11]
    padded = batch(len(lengths), lengths, text_config.vocab_size, device, seed=7)
    with torch.no_grad(), precision.autocast(device.type):
        together = model(padded["input_ids"], padded["attention_mask"]).float()
        alone = torch.cat([model(padded["input_ids"][i : i + 1, -n:], padded["attention_mask"][i : i + 1, -n:])
                           for i, n in enumerate(lengths)]).float()
    cos = torch.nn.functional.cosine_similarity(together, alone)
    return {"finite": bool(torch.isfinite(together).all() and torch.isfinite(alone).all()), "min_cosine": cos.min().item()}


def resume_check(work: Path) -> str:
    """Phase 1 on the tiny backbone, 8 steps: killed at step 5 and resumed, against uninterrupted."""
    from safetensors.torch import load_file

    env = {**os.environ, "GEMMA_EMBED_CACHE": str(work / "cache")}
    base = [sys.executable, str(REPO / "train/phase1.py"), "--config", str(REPO / "train/configs/smoke/phase1.yaml"),
            "--data", str(REPO / "examples/data/text.txt"), "--max_steps", "8", "--save_every", "2", "--eval_sts", ""]

    def run(out: Path, *extra: str, **more_env) -> subprocess.CompletedProcess:
        return subprocess.run([*base, "--output_dir", str(out), *extra], env={**env, **more_env}, cwd=work,
                              capture_output=True, text=True, timeout=600)

    clean = run(work / "clean")
    if clean.returncode:
        return f"failed ({clean.stderr[-300:]})"
    killed = run(work / "killed", GEMMA_EMBED_KILL_AT_STEP="5")
    if killed.returncode == 0:
        return "failed (the kill did not stop the run)"
    resumed = run(work / "killed", "--resume")
    if resumed.returncode:
        return f"failed ({resumed.stderr[-300:]})"
    a, b = (load_file(str(work / f / "model.safetensors")) for f in ("clean", "killed"))
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    return "bit-identical" if diff == 0 else f"max_diff_{diff:.2e}"


def timed_step(device, optimizer, forward_backward) -> float:
    """Seconds of one optimizer step: `forward_backward()`, then AdamW (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    forward_backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def throughput(text_config, device, precision, batch_sizes, steps: int, lengths: list[int], peak) -> dict:
    """Tokens/s (and MFU where the peak is known) of the loop's phase-3 step at each batch size."""
    from accelerate import Accelerator

    from gemma_embed.contrastive import forward_backward as _forward_backward

    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision.precision)
    model = build(text_config, device, dropout=0.1)
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    cfg = PhaseConfig(temperature=0.05, grad_cache_chunk=128)
    g = torch.Generator().manual_seed(0)
    out = {}
    for rows in batch_sizes:
        tokens = flops = seconds = 0.0
        for step in range(steps + 2):  # two warm-up steps
            length = lengths[int(torch.randint(len(lengths), (1,), generator=g))]  # one length per bucketed batch
            b = batch(rows, [length] * rows, text_config.vocab_size, device, seed=step)
            groups = torch.arange(rows, device=device)
            took = timed_step(device, optimizer, lambda: _forward_backward(cfg, accelerator, model, [b, b], groups))
            if step >= 2:
                seconds += took
                tokens += 2 * rows * length
                flops += lora_step_flops(text_config, params, rows, length)
        out[rows] = {"tokens_per_s": tokens / seconds, "mfu": flops / seconds / peak if peak else None}
        print(f"  batch {rows}: {tokens / seconds:,.0f} real tokens/s, {flops / seconds / 1e12:.2f} TFLOP/s, MFU "
              + (f"{out[rows]['mfu']:.1%}" if peak else "n/a (no known peak for this device)"), flush=True)
    return out


def decoder_speed(text_config, device, precision, rows: int, steps: int, lengths: list[int], vocab: int,
                  corrector: bool = False) -> float:
    """Queries per second of the decoder's training step (forward, backward, AdamW) under autocast; with
    `corrector`, of the trained corrector's (a hypothesis of a query's length read before the query)."""
    from configuration_gemma_embed_decoder import GemmaEmbedCorrectorConfig, GemmaEmbedDecoderConfig
    from modeling_gemma_embed_decoder import GemmaEmbedCorrector, GemmaEmbedDecoder

    config = (GemmaEmbedCorrectorConfig if corrector else GemmaEmbedDecoderConfig)(
        text_config=text_config.to_dict(), vocab_ids=list(range(vocab)), prefix_length=16, prefix_norm="rms",
        noise_std=0.0, lora_r=32, lora_alpha=64,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(0)
    with torch.device(device):
        model = (GemmaEmbedCorrector if corrector else GemmaEmbedDecoder)(config)
    model.attach_lora().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    seconds = 0.0
    for step in range(steps + 2):  # two warm-up steps
        width = max(lengths[int(i)] for i in torch.randint(len(lengths), (rows,), generator=g))
        ids = torch.randint(3, vocab, (rows, width), generator=g).to(device)
        vectors = torch.nn.functional.normalize(torch.randn(rows, config.embedding_dim, generator=g), dim=-1).to(device)
        conditioning = {}
        if corrector:
            hypotheses, mask = model.hypothesis_ids(ids.tolist())
            conditioning = {"hypothesis_ids": hypotheses.to(device), "hypothesis_mask": mask.to(device),
                            "hypothesis_vectors": vectors.roll(1, 0)}

        def forward_backward():
            with precision.autocast(device.type):
                loss = model(vectors=vectors, input_ids=ids, attention_mask=torch.ones_like(ids), **conditioning).loss
            loss.backward()

        took = timed_step(device, optimizer, forward_backward)
        if step >= 2:
            seconds += took
    return rows * steps / seconds


def fan_out_speed(text_config, device, precision, pairs: int, batch_pairs: int) -> dict:
    """Reformulations per second of the bulk fan-out, greedy and corrected, with random 1B-architecture models."""
    from dataclasses import replace

    from configuration_gemma_embed_decoder import GemmaEmbedDecoderConfig
    from gemma_embed.backbones import build_tiny_tokenizer
    from gemma_embed.encoder import memoize
    from gemma_embed.inverter import Inverter
    from gemma_embed.recipes import CORRECTION, FAN_OUT
    from gemma_embed.reformulate import Reformulator, batches, read_pairs, reformulate_batch
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    queries = read_queries(REPO / "examples/data/queries.tsv")
    tokenizer = build_tiny_tokenizer(queries, vocab_size=32768)
    text = text_config.to_dict() | {"vocab_size": len(tokenizer)}
    config = GemmaEmbedDecoderConfig(text_config=text, vocab_ids=list(range(len(tokenizer))), prefix_length=16,
                                     prefix_norm="rms", bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        decoder = GemmaEmbedDecoder(config).eval()
    encoder = build(type(text_config)(**text), device).eval()

    @torch.no_grad()
    def encode(texts):
        with precision.autocast(device.type):
            return torch.nn.functional.normalize(encoder.encode(texts, tokenizer, batch_size=256).float(), dim=-1)

    embed = memoize(encode)
    embed.precision = precision
    inverter = Inverter(decoder, tokenizer, embed, "random", queries[:1000])
    chosen = (read_pairs("bundled")[0] * (pairs // 12 + 1))[:pairs]
    chosen = [replace(p, id=f"{p.id}-{i}") for i, p in enumerate(chosen)]
    documents = list(dict.fromkeys(p.document for p in chosen))
    matrix, index = embed(documents), {d: i for i, d in enumerate(documents)}
    rates = {}
    for mode, settings in (("greedy", None), ("correct", replace(CORRECTION, rounds=2, guided=0))):
        recipe = replace(FAN_OUT, mode=mode, batch_pairs=batch_pairs)
        reformulator = Reformulator(inverter, None, recipe, settings)
        began = time.time()
        for batch in batches(chosen, batch_pairs):
            reformulate_batch(reformulator, batch, matrix, index)
            embed.forget()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[mode] = pairs * recipe.steps / (time.time() - began)
    return rates


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true", help="a tiny model and small batches (CPU, CI); no MFU")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per batch size (after two warm-up steps)")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.reduced:
        sys.exit("no CUDA device: run with --reduced for the CPU check (tiny model, no MFU)")
    began = time.time()
    precision = resolve("auto", device.type)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (precision.cpu or "CPU")
    bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else bool(
        {k for k, v in (torch.cpu.get_capabilities() or {}).items() if v} & {"amx_bf16", "avx512_bf16"})
    print(f"1. device {device.type} ({name}), native bf16: {bf16}; {precision.line()}", flush=True)

    small = tiny_text_config(4000) if args.reduced else gemma3_1b_text_config(num_hidden_layers=4)
    rows, chunk = (8, 3) if args.reduced else (32, 8)
    diffs = gradcache_diff(small, device, precision, rows, chunk)
    print("2. GradCache vs uncached gradient (dropout 0.1), largest difference / largest gradient:", flush=True)
    for case, diff in diffs.items():
        print(f"  {case}: {diff:.2e}", flush=True)
    agreement = padding_agreement(small, device, precision)
    print(f"3. padded vs unpadded embeddings: finite {agreement['finite']}, smallest cosine "
          f"{agreement['min_cosine']:.6f}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        resume = resume_check(Path(work))
    print(f"4. killed at step 5 and resumed vs uninterrupted (phase 1, tiny backbone, 8 steps): {resume}", flush=True)

    lengths = [min(len(q.split()) + 2, 32) for q in read_queries(REPO / "examples/data/queries.tsv")]
    big = tiny_text_config(4000) if args.reduced else gemma3_1b_text_config()
    sizes = (8, 16) if args.reduced else (64, 512)
    peak = None if args.reduced or device.type != "cuda" else peak_flops(name)
    print(f"5. phase-3 step on the {'tiny' if args.reduced else 'gemma-3-1b-pt'} architecture (random weights, "
          f"{precision.name}, SDPA, LoRA r=16 q/v), {args.steps} timed steps:", flush=True)
    speed = throughput(big, device, precision, sizes, args.steps, lengths, peak)
    decoder_rows = 16 if args.reduced else 256
    queries_per_s = decoder_speed(big, device, precision, decoder_rows, args.steps, lengths,
                                  vocab=1000 if args.reduced else 32768)
    print(f"6. query-decoder step ({'tiny' if args.reduced else 'gemma-3-1b-pt'}, 16 scaled soft tokens, LoRA r=32 on "
          f"every projection, batch {decoder_rows}): {queries_per_s:,.0f} queries/s", flush=True)
    pairs_per_s = decoder_speed(big, device, precision, decoder_rows, args.steps, lengths,
                                vocab=1000 if args.reduced else 32768, corrector=True)
    print(f"6b. trained-corrector step (the same, reading a hypothesis and 2 x 16 more soft tokens): "
          f"{pairs_per_s:,.0f} (query, hypothesis) pairs/s", flush=True)
    fanned = fan_out_speed(big, device, precision, pairs=4 if args.reduced else 256,
                           batch_pairs=2 if args.reduced else 64)
    print(f"7. bulk fan-out ({'tiny' if args.reduced else 'gemma-3-1b-pt'} decoder and encoder, random weights, 6 "
          f"steps a pair): greedy {fanned['greedy']:,.1f}, corrected (2 rounds) {fanned['correct']:,.1f} "
          "reformulations/s", flush=True)
    print(f"took {time.time() - began:.0f} s", flush=True)
    tokens = ",".join(f"{b}:{r['tokens_per_s']:.0f}" for b, r in speed.items())
    mfu = ",".join(f"{b}:{r['mfu']:.3f}" for b, r in speed.items()) if peak else "n/a"
    print(f"device={device.type}:{name.replace(' ', '_')} precision={precision.precision} "
          f"gradcache_max_diff={max(diffs.values()):.2e} resume={resume} tokens_per_s={tokens} mfu={mfu} "
          f"decoder_queries_per_s={queries_per_s:.0f} corrector_pairs_per_s={pairs_per_s:.0f} fanout_greedy_per_s={fanned['greedy']:.1f} "
          f"fanout_correct_per_s={fanned['correct']:.1f}")


if __name__ == "__main__":
    main()
