"""The demo's clock: time elapsed per section and an estimate of what remains, from the rates the stages already run
measured (padded tokens per second of training, texts per second of evaluation) and the tokens each stage's step
will process, counted on a sample of its rows (phase 2's length-batched rows are far shorter than phase 1's).

    clock = Clock(configs, decoder_eval_texts=...)   # configs: stage (1, 2, 3, "decoder") -> its loaded config
    clock.count_tokens(tokenizer, backbone_layers, queries_db)
    clock.section("phase 1", stages_left)            # prints "== [0.3 min] phase 1 (about 21 min left)"
    clock.learn(1, summary, folder)                  # after a stage: its measured rates
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SELF_CONTRAST_VIEWS = 2  # phases 1 and 3 encode each text twice (two dropout views)


def padded_tokens_per_step(rows: list[list[int]], batch_size: int, by_length: bool, views: int = 1) -> float:
    """Mean tokens a training step processes, padding included: `rows` are token counts (one per text of a row),
    grouped `batch_size` at a time, in a shuffled order or sorted by length (`batch_by_length`); every column of a
    batch is padded to its longest text, and each text is encoded `views` times."""
    import numpy as np

    order = (sorted(range(len(rows)), key=lambda i: sum(rows[i])) if by_length
             else np.random.default_rng(0).permutation(len(rows)).tolist())
    batches = [order[i : i + batch_size] for i in range(0, max(len(order) - batch_size, 0) + 1, batch_size)]

    def cost(batch: list[int]) -> int:
        columns = [[rows[i][c] for i in batch if len(rows[i]) > c] for c in range(max(len(rows[i]) for i in batch))]
        return views * sum(max(col) * len(col) for col in columns)

    return sum(map(cost, batches)) / len(batches)


class Clock:
    """Elapsed time per section and an estimate of what remains, from the rates measured in the stages already run
    (padded tokens per second of training, texts per second of evaluation) and the tokens each stage's step will
    process (counted on a sample of its rows, since phase 2's length-batched rows are far shorter than phase 1's)."""

    def __init__(self, configs: dict, decoder_eval_texts: int = 0, final_eval_texts: int = 0, root: Path = Path(".")):
        """`decoder_eval_texts`: texts the decoder's evaluation encodes; `final_eval_texts`: those of the final
        evaluation; `root`: what the configs' relative data paths are relative to."""
        self.t0, self.configs, self.root = time.time(), configs, Path(root)
        self.decoder_eval_texts, self.final_eval_texts = decoder_eval_texts, final_eval_texts
        self.train_rate = self.eval_rate = None  # tokens / s, texts / s
        self.tokens = {}  # stage -> padded tokens of one step

    def count_tokens(self, tokenizer, backbone_layers: int, queries_db: Path, sample: int = 2000) -> None:
        from gemma_embed.data.collate import text_lengths
        from gemma_embed.data.readers import read_queries_db, read_text, read_triplets
        from gemma_embed.data.store import batch_encoder

        encode = batch_encoder(tokenizer, max(cfg.max_length for cfg in self.configs.values()))
        for stage, cfg in self.configs.items():
            if stage == 1:
                rows = read_text(self.root / cfg.data)
            elif stage == 2:
                rows = read_triplets(self.root / cfg.data, len(tokenizer), keep=cfg.source_names())
            else:
                rows = read_queries_db(queries_db, cfg.table, cfg.column)
            rows = [[t for t in row if t] for row in rows[:: max(1, len(rows) // sample)]]
            lengths = text_lengths(rows, encode, cfg.max_length)
            if stage == "decoder":  # <bos>, the soft prefix and the query (already ending in <eos>)
                prefix = 1 + cfg.model.get("prefix_length", 8)
                lengths = [[prefix + n[0]] for n in lengths]
            views = SELF_CONTRAST_VIEWS if stage in (1, 3) else 1
            tokens = padded_tokens_per_step(lengths, cfg.batch_size, getattr(cfg, "batch_by_length", False), views)
            layers = min(getattr(cfg, "num_layers", 0) or backbone_layers, backbone_layers)  # a decoder's first N
            self.tokens[stage] = tokens * layers / backbone_layers

    def learn(self, n: int, summary: dict, folder: Path) -> None:
        cfg = self.configs[n]
        done = summary["steps"] - summary.get("start_step", 0)
        if summary.get("train_seconds") and done:
            self.train_rate = done * self.tokens[n] / summary["train_seconds"]
        evals = [json.loads(l) for l in (folder / "logs/metrics.jsonl").read_text().splitlines()]
        evals = [r for r in evals if r.get("eval_seconds")]
        if evals:
            texts = 2 * (cfg.eval_max_pairs or 1500)
            self.eval_rate = texts * len(evals) / sum(r["eval_seconds"] for r in evals)

    def _evaluations(self, n: int) -> int:
        """STS-B dev evaluations phase n runs: every eval_every steps, or once at its end (its start is the previous
        phase's end)."""
        cfg = self.configs[n]
        return max(1, cfg.max_steps // cfg.eval_every) if cfg.eval_every else 1

    def remaining(self, stages_left: list, extra_eval_texts: int) -> float | None:
        if self.train_rate is None or self.eval_rate is None:
            return None
        seconds = sum(self.configs[n].max_steps * self.tokens[n] / self.train_rate for n in stages_left)
        evals = sum(2 * (self.configs[n].eval_max_pairs or 1500) * self._evaluations(n)
                    for n in stages_left if n != "decoder")
        decoder = self.decoder_eval_texts * ("decoder" in stages_left or extra_eval_texts > 0)
        return seconds + (evals + extra_eval_texts + decoder) / self.eval_rate + 90  # 90: model loads, cards

    def section(self, title: str, stages_left: list = ("decoder",), extra_eval_texts: int | None = None) -> None:
        left = self.remaining(list(stages_left), self.final_eval_texts if extra_eval_texts is None else extra_eval_texts)
        estimate = "remaining: estimated once phase 1 has run" if left is None else f"about {left / 60:.0f} min left"
        print(f"\n== [{(time.time() - self.t0) / 60:.1f} min] {title} ({estimate})", flush=True)
