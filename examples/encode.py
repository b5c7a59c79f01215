"""Encode and compare a few sentences with Gemma-Embed.

    python examples/encode.py --model runs/demo/model          # a trained, published folder
    python examples/encode.py --backbone gemma3-270m           # build an untrained one from the real Gemma 3 270M

With --backbone the head is freshly initialised (not trained): the script shows the build, export and load path,
and the similarities come from the pretrained backbone's mean-pooled states under a random projection.
"""

import argparse
import time

SENTENCES = [
    "best running shoes for flat feet",
    "which sneakers are good for people with fallen arches",
    "how to bake sourdough bread at home",
    "easy homemade bread recipe",
    "what is the capital of australia",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", help="a published Gemma-Embed folder")
    group.add_argument("--backbone", help="gemma3-270m, tiny, a Gemma 3 folder or Hub id")
    ap.add_argument("--out", default="runs/encode_demo/model", help="where --backbone writes its folder")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "no"],
                    help="auto: bf16 where the CPU runs it natively, float32 elsewhere")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from gemma_embed.precision import resolve

    precision = resolve(args.precision, "cpu")
    print(precision.line())

    folder = args.model
    if args.backbone:
        from transformers import AutoTokenizer

        from gemma_embed.backbones import resolve_backbone
        from modeling_gemma_embed import GemmaEmbedModel

        t0 = time.time()
        path = resolve_backbone(args.backbone)
        model = GemmaEmbedModel.from_gemma(path)
        model.save_pretrained(args.out)
        AutoTokenizer.from_pretrained(path).save_pretrained(args.out)
        print(f"built GemmaEmbedModel from {args.backbone} and wrote {args.out} in {time.time() - t0:.1f}s")
        folder = args.out

    model = SentenceTransformer(folder, device="cpu")
    with precision.autocast("cpu"):
        emb = model.encode(SENTENCES, convert_to_tensor=True)
    # under bf16 autocast the pipeline's last module normalises in bf16 (norms 1 +- 3e-3): again in float32
    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    print(f"embeddings: {tuple(emb.shape)}, norms {emb.norm(dim=-1).min():.4f}..{emb.norm(dim=-1).max():.4f}")
    sim = model.similarity(emb, emb)
    width = max(len(s) for s in SENTENCES)
    for i, s in enumerate(SENTENCES):
        print(f"{s:<{width}}  " + " ".join(f"{v:6.3f}" for v in sim[i].tolist()))


if __name__ == "__main__":
    from gemma_embed.runtime import script_main

    script_main(main)
