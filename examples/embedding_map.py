"""A 2-D map of the embedding space: a sample of real queries and Wikipedia sentences, projected by PCA.

    python examples/embedding_map.py --model runs/demo/model --png runs/embedding_map.png
"""

import argparse
from pathlib import Path

from gemma_embed.data.query_files import read_queries_tsv
from gemma_embed.data.readers import read_text

SAMPLE = Path(__file__).resolve().parent / "data"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=600, help="texts of each kind")
    ap.add_argument("--png", default="runs/embedding_map.png")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from sentence_transformers import SentenceTransformer

    rows = read_queries_tsv(SAMPLE / "queries.tsv")
    kinds = {
        "NQ queries": [q for q, source in rows if source in ("nq-dev", "nq-test")],
        "WebQuestions queries": [q for q, source in rows if source and "webquestions" in source],
        "Wikipedia sentences": [s for s, in read_text(SAMPLE / "text.txt")],
    }
    model = SentenceTransformer(args.model, device="cpu")
    g = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for label, items in kinds.items():
        pick = [items[i] for i in torch.randperm(len(items), generator=g)[: args.n].tolist()]
        texts += pick
        labels += [label] * len(pick)
    emb = model.encode(texts, batch_size=64, convert_to_tensor=True).float()
    centred = emb - emb.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False)
    xy = (centred @ v[:, :2]).numpy()
    fig, ax = plt.subplots(figsize=(7, 6))
    for label in kinds:
        idx = [i for i, l in enumerate(labels) if l == label]
        ax.scatter(xy[idx, 0], xy[idx, 1], s=6, alpha=0.6, label=f"{label} ({len(idx)})")
    ax.set_title(f"Gemma-Embed space, PCA of {len(texts)} texts")
    ax.legend(markerscale=3)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
