"""Evaluation of any sentence-transformers model folder, ours or not.

    python train/evaluate.py --model runs/demo/model --sts examples/data/sts-dev.csv --json out.json

STS: a file of sentence pairs with gold scores -> Spearman correlation of cosine similarity, x 100. The STS
Benchmark layout (tab separated, score in column 5, sentences in columns 6 and 7) and a plain
`sentence1<TAB>sentence2<TAB>score` file with a header are both read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.data import DataError  # noqa: E402


def read_sts(path: str | Path, max_pairs: int = 0) -> tuple[list[str], list[str], list[float]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: STS file not found")
    s1, s2, gold = [], [], []
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if len(row) >= 7:  # STS Benchmark: genre, file, year, id, score, s1, s2[, source columns]
                score, a, b = row[4], row[5], row[6]
            elif len(row) == 3:
                a, b, score = row
            else:
                raise DataError(f"{path}, line {line_no}: expected the STS Benchmark layout or 3 columns")
            try:
                gold.append(float(score))
            except ValueError:
                if line_no == 1:
                    continue  # a header
                raise DataError(f"{path}, line {line_no}: score {score!r} is not a number") from None
            s1.append(a)
            s2.append(b)
            if max_pairs and len(gold) >= max_pairs:
                break
    if len(gold) < 2:
        raise DataError(f"{path}: fewer than two scored pairs")
    return s1, s2, gold


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def sts_spearman(embed: Callable[[list[str]], torch.Tensor], path: str | Path, max_pairs: int = 0) -> float:
    """Cosine Spearman x 100 of `embed` (texts -> (n, d) tensor) on an STS file."""
    s1, s2, gold = read_sts(path, max_pairs)
    a, b = embed(s1).float(), embed(s2).float()
    cos = torch.nn.functional.cosine_similarity(a, b).tolist()
    return 100 * spearman(cos, gold)


def sentence_transformer_embedder(folder: str, batch_size: int = 64) -> Callable[[list[str]], torch.Tensor]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu")
    return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_tensor=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a sentence-transformers model folder")
    ap.add_argument("--sts", action="append", default=[], help="an STS file (repeatable)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    embed = sentence_transformer_embedder(args.model)
    results = {}
    for path in args.sts:
        results[f"sts:{Path(path).name}"] = round(sts_spearman(embed, path), 2)
    for name, value in results.items():
        print(f"{name:<40} {value:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
