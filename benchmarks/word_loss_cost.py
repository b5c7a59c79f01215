"""What the word loss costs a training step: the demo's phase-2 step (the real Gemma 3 270M with LoRA, 32 bundled
triplets, the contrastive task's own forward_backward and AdamW) without it and with `word_loss_weight`, the two
alternating step by step so that both see the same machine state.

    python benchmarks/word_loss_cost.py --steps 4

Prints the CPU model, the precision, each variant's seconds per step (the median of --steps, after a warm-up
step each) and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv=None) -> dict:
    from accelerate import Accelerator

    from gemma_embed.backbones import load_tokenizer, resolve_backbone
    from gemma_embed.config import PhaseConfig
    from gemma_embed.contrastive import forward_backward
    from gemma_embed.data.collate import Collator
    from gemma_embed.data.readers import read_triplets
    from gemma_embed.precision import resolve
    from modeling_gemma_embed import GemmaEmbedModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="gemma3-270m")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant, after one warm-up step each")
    ap.add_argument("--weight", type=float, default=0.3)
    args = ap.parse_args(argv)
    precision = resolve("auto", "cpu")
    print(precision.line(), flush=True)
    path = resolve_backbone(args.backbone)
    tokenizer = load_tokenizer(path)
    rows = read_triplets(REPO / "examples/data/triplets.csv", len(tokenizer), args.rows)
    streams, groups = Collator(tokenizer, 32, self_contrast=False)(rows[: args.rows])
    accelerator = Accelerator(cpu=True, mixed_precision=precision.precision)
    model = GemmaEmbedModel.from_gemma(path).attach_lora().attach_word_head().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    variants = {"contrastive only": PhaseConfig(symmetric=True),
                f"with word_loss_weight {args.weight}": PhaseConfig(symmetric=True, word_loss_weight=args.weight)}
    times = {name: [] for name in variants}
    for step in range(args.steps + 1):
        for name, cfg in variants.items():
            t0 = time.perf_counter()
            forward_backward(cfg, accelerator, model, streams, groups)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step:  # the first is a warm-up
                times[name].append(time.perf_counter() - t0)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    rows_per_step = sum(s["input_ids"].shape[0] for s in streams)
    for name, s in seconds.items():
        print(f"{name}: {s:.2f} s a step ({rows_per_step} texts: {args.rows} triplets)", flush=True)
    plain, words = seconds.values()
    print(f"ratio {words / plain:.2f} ({precision.cpu}, {precision.name}, {torch.get_num_threads()} threads)")
    return seconds


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
