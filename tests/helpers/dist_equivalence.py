"""Run by tests/reliability/test_distributed.py under `accelerate launch` with 1 or 2 CPU processes: one training
step's loss and gradients on a fixed global batch of triplets, some with hard negatives and some without, through
the loop's own accelerator set-up and forward-backward.
argv: backbone, output file, GradCache chunk (0: none), symmetric loss (0 or 1), layout:
  mixed  every process holds rows with and rows without a negative
  split  the first half of the batch (process 0's rows) has negatives, the second half (process 1's) none
  matryoshka  mixed, with the Matryoshka loss over the first 256, 128 and 64 dimensions
  words  mixed, with the word loss (weight 0.5) beside the contrastive loss"""

import sys
from types import SimpleNamespace

import torch
from accelerate.utils import set_seed
from transformers import AutoTokenizer

from gemma_embed.data.collate import Collator
from gemma_embed.contrastive import forward_backward as _forward_backward
from gemma_embed.runtime import leave_process_group, make_accelerator
from modeling_gemma_embed import GemmaEmbedModel

backbone, out, chunk, symmetric, layout = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
MIXED = [
    ("a man plays a guitar", "someone is playing music", "a man is sleeping"),
    ("the cat sits on the mat", "a cat is sitting", "a dog barks loudly"),
    ("stocks fell sharply today", "markets dropped"),
    ("a woman slices an onion", "someone is cutting vegetables", "a woman is swimming"),
    ("how tall is everest", "height of mount everest"),
    ("cheap flights to rome", "low cost air travel to italy", "expensive hotels in paris"),
    ("a child rides a bike", "a kid is cycling"),
    ("the sun is a star", "our sun is a star", "the moon is made of cheese"),
]
SPLIT = sorted(MIXED, key=lambda row: -len(row))  # the five rows with a negative first, then the three without
SPLIT = SPLIT[:4] + [row[:2] for row in SPLIT[4:]]  # so the second half has none at all
ROWS = {"mixed": MIXED, "split": SPLIT, "matryoshka": MIXED, "words": MIXED}[layout]
DIMS = ((256, 1.0), (128, 1.0), (64, 0.5)) if layout == "matryoshka" else ()
cfg = SimpleNamespace(temperature=0.05, grad_cache_chunk=chunk, symmetric=symmetric, device="cpu",
                      mixed_precision="auto", dist_timeout_minutes=5.0, matryoshka=lambda: DIMS,
                      word_loss_weight=0.5 if layout == "words" else 0.0)
accelerator, precision = make_accelerator(cfg)
set_seed(0)
tokenizer = AutoTokenizer.from_pretrained(backbone)
model = GemmaEmbedModel.from_gemma(backbone, view_dropout=0.0, lora_dropout=0.0).attach_lora().train()
if cfg.word_loss_weight:
    model.attach_word_head()
generator = torch.Generator().manual_seed(1)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name or "word_head" in name:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
model = accelerator.prepare(model)
local = len(ROWS) // accelerator.num_processes
mine = ROWS[accelerator.process_index * local : (accelerator.process_index + 1) * local]
streams, groups = Collator(tokenizer, 32, self_contrast=False)(mine)
loss = _forward_backward(cfg, accelerator, model, streams, groups)
grads = {n: p.grad.clone() for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
if accelerator.is_main_process:
    torch.save({"loss": loss, "grads": grads, "processes": accelerator.num_processes, "precision": precision.precision,
                "negatives": [len(r) > 2 for r in ROWS]}, out)
accelerator.wait_for_everyone()
if accelerator.num_processes > 1:
    leave_process_group()  # as the training loop ends: no gloo teardown at interpreter exit
