"""The scores training logs as it goes, kept below both training and evaluation (gemma_embed/eval reports them
too): an embedder's STS Spearman on a dev file (the contrastive phases) and a query decoder's conditioning gap (the
decoder's training)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from gemma_embed.data.readers import DataError
from gemma_embed.data.decoder_queries import DecoderCollator, tokenize_queries
from gemma_embed.text_metrics import derangement


def read_sts(path: str | Path, max_pairs: int = 0) -> tuple[list[str], list[str], list[float]]:
    """An STS file's pairs and gold scores; `max_pairs`: only that many, spread evenly over the file (STS files are
    ordered by genre, so the first N would all be image captions)."""
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
    if len(gold) < 2:
        raise DataError(f"{path}: fewer than two scored pairs")
    if max_pairs and max_pairs < len(gold):
        keep = [i * len(gold) // max_pairs for i in range(max_pairs)]
        s1, s2, gold = ([xs[i] for i in keep] for xs in (s1, s2, gold))
    return s1, s2, gold


class EvaluatorModel:
    """An embedder (texts -> unit vectors, gemma_embed.encoder.Embed) as the model sentence-transformers' evaluators
    encode with, so that their figures are of our embedder's vectors: in its precision, through its cache, at a
    Matryoshka prefix. `encode_query` and `encode_document` are `encode` (no prompts)."""

    similarity_fn_name = "cosine"

    def __init__(self, embed):
        from types import SimpleNamespace

        self.embed = embed
        self.model_card_data = SimpleNamespace(set_evaluation_metrics=lambda *args: None)  # no card to fill

    def encode(self, sentences, convert_to_tensor: bool = False, truncate_dim: int | None = None, **_):
        if truncate_dim is not None:
            raise ValueError("EvaluatorModel: give the prefix embedder, not truncate_dim")
        single = isinstance(sentences, str)
        vectors = self.embed([sentences] if single else list(sentences)).float()
        vectors = vectors[0] if single else vectors
        return vectors if convert_to_tensor else vectors.numpy()

    encode_query = encode_document = encode


def evaluate_with(evaluator, embed) -> dict[str, float]:
    """A sentence-transformers evaluator's figures on `embed`'s vectors (through EvaluatorModel), x 100."""
    return {k: 100 * float(v) for k, v in evaluator(EvaluatorModel(embed)).items()}


def sts_scores(embed, path: str | Path, name: str, max_pairs: int = 0) -> dict[str, float]:
    """sentence-transformers' EmbeddingSimilarityEvaluator on an STS file, by cosine: `{name}_spearman_cosine` and
    `{name}_pearson_cosine`, x 100."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    s1, s2, gold = read_sts(path, max_pairs)
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, gold, main_similarity="cosine", similarity_fn_names=["cosine"],
                                             name=name, write_csv=False)
    return evaluate_with(evaluator, embed)


def sts_spearman(embed, path: str | Path, max_pairs: int = 0) -> float:
    """Cosine Spearman x 100 of `embed` on an STS file (sentence-transformers' EmbeddingSimilarityEvaluator)."""
    return sts_scores(embed, path, "sts", max_pairs)["sts_spearman_cosine"]


def conditioning_gap(decoder, tokenizer, texts: list[str], vectors: torch.Tensor, batch_size: int = 32,
                     seed: int = 0) -> dict:
    """How much the decoder uses its input: the teacher-forced loss (nats per token) of each query given its own
    vector, against the loss given another query's vector of the same set (a random derangement); the gap is the
    difference. A decoder whose gap is near zero ignores its input, whatever its loss. None for fewer than 2."""
    if len(texts) < 2:
        return {"loss_own": None, "loss_shuffled": None, "gap": None}
    was_training = decoder.training
    decoder.eval()
    ids = tokenize_queries(tokenizer, texts, decoder.config.max_query_length)
    other = derangement(len(texts), seed)
    collate, totals = DecoderCollator(decoder.config), {"loss_own": 0.0, "loss_shuffled": 0.0}
    count = 0
    device = next(decoder.parameters()).device
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            rows = range(i, min(i + batch_size, len(texts)))
            for key, order in (("loss_own", list(rows)), ("loss_shuffled", other[list(rows)].tolist())):
                batch = collate([(ids[r], np.asarray(vectors[o], dtype=np.float32)) for r, o in zip(rows, order)])
                tokens = int(batch["attention_mask"].sum())
                totals[key] += decoder(**{k: v.to(device) for k, v in batch.items()}).loss.item() * tokens
            count += tokens
    decoder.train(was_training)
    own, shuffled = totals["loss_own"] / count, totals["loss_shuffled"] / count
    return {"loss_own": own, "loss_shuffled": shuffled, "gap": shuffled - own}
