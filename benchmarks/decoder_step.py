"""The query decoder's training step on the real Gemma 3 270M, measured: the restricted vocabulary against the full
262,144 tokens, and the knobs that set a step's cost (LM layers kept, prefix length, LoRA targets, batch size).

    python benchmarks/decoder_step.py                       # every variant, 3 timed steps each
    python benchmarks/decoder_step.py --steps 5 --threads 2

Queries are the bundled ones (examples/data/queries.tsv), tokenised by the 270M's tokenizer; vectors are random
(the step's cost does not depend on them). Each variant warms up one step, then times `--steps` steps of the
decoder's own forward-backward and AdamW, in the precision a user gets by default (gemma_embed.precision), with the
CPU model and threads printed beside the times. The last line:
restricted_vocab=... full_vocab=... speedup=... seconds_per_step_restricted=... precision=... cpu=...
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from gemma_embed.backbones import resolve_backbone
from gemma_embed.data.query_files import read_queries
from gemma_embed.data.decoder_queries import DecoderCollator, tokenize_queries
from gemma_embed.precision import resolve

REPO = Path(__file__).resolve().parents[1]  # the checkout: examples/data
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

VARIANTS = {  # name -> (restrict the vocabulary, layers kept (0: all), prefix length, LoRA targets, batch size)
    "full vocabulary": (False, 0, 8, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted vocabulary": (True, 0, 8, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted, prefix 4": (True, 0, 4, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted, prefix 16": (True, 0, 16, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted, LoRA on every projection": (True, 0, 8, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"), 32),
    "restricted, LM frozen (prefix only)": (True, 0, 8, (), 32),
    "restricted, first 9 layers": (True, 9, 8, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted, first 6 layers": (True, 6, 8, ("q_proj", "k_proj", "v_proj", "o_proj"), 32),
    "restricted, batch 16": (True, 0, 8, ("q_proj", "k_proj", "v_proj", "o_proj"), 16),
}


def time_variant(path: str, tokenizer, ids: list[list[int]], precision, restrict: bool, layers: int, prefix: int,
                 targets, batch_size: int, steps: int) -> tuple[float, int]:
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id]
    vocab = sorted({t for row in ids for t in row} | set(specials)) if restrict else []
    torch.manual_seed(0)
    model = GemmaEmbedDecoder.from_gemma(path, vocab, tokenizer=tokenizer, num_layers=layers, embedding_dim=256,
                                         prefix_length=prefix, lora_target_modules=list(targets)).attach_lora().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = DecoderCollator(model.config)
    g = torch.Generator().manual_seed(1)
    seconds = []
    for step in range(steps + 1):
        rows = [(ids[i], torch.randn(256, generator=g).numpy())
                for i in torch.randint(len(ids), (batch_size,), generator=g).tolist()]
        batch = collate(rows)
        t0 = time.perf_counter()
        with precision.autocast("cpu"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            seconds.append(time.perf_counter() - t0)
    return sum(seconds) / len(seconds), len(vocab) or model.config.text_config.vocab_size


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant, after one warm-up step")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--max_length", type=int, default=32)
    ap.add_argument("--only", action="append", default=[], help="run only these variants (repeatable)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    path = resolve_backbone("gemma3-270m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    precision = resolve("auto", "cpu")
    queries = read_queries(REPO / "examples/data/queries.tsv")
    ids = tokenize_queries(tokenizer, queries, args.max_length)
    print(f"Gemma 3 270M, {len(queries):,} bundled queries ({sum(map(len, ids)) / len(ids):.1f} tokens with <eos>); "
          f"CPU {precision.cpu}, {torch.get_num_threads()} threads; {precision.line()}", flush=True)
    results = {}
    for name, (restrict, layers, prefix, targets, batch_size) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        seconds, vocab = time_variant(path, tokenizer, ids, precision, restrict, layers, prefix, targets, batch_size,
                                      args.steps)
        results[name] = seconds
        print(f"  {name:<40} vocabulary {vocab:>7,}  {seconds:6.2f} s/step  ({batch_size / seconds:5.1f} queries/s)",
              flush=True)
    full, restricted = results.get("full vocabulary"), results.get("restricted vocabulary")
    if full and restricted:
        print(f"restricted_vocab={restricted:.2f}s full_vocab={full:.2f}s speedup={full / restricted:.1f}x "
              f"seconds_per_step_restricted={restricted:.2f} precision={precision.precision} "
              f"cpu={precision.cpu.replace(' ', '_')} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
