"""Tiny published folders where the README's commands expect the demo's (runs/demo/model, decoder, corrector, and
the demo's query files), built on the tests' tiny random Gemma 3: what `bash scripts/demo.sh` leaves, in seconds."""

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "examples/data"


def tiny_demo(root: Path, make_model, tiny_backbone: str, tokenizer, corrector: bool = True) -> Path:
    """Write root/runs/demo as the demo would (encoder, decoder over the whole tiny vocabulary, corrector, queries.db,
    heldout_queries.tsv, bank.tsv; the corrector, trained after the demo, where `corrector`); returns that folder."""
    from gemma_embed.data.query_files import make_queries_db, read_queries_tsv, split_heldout, write_queries_tsv
    from modeling_gemma_embed_decoder import GemmaEmbedCorrector, GemmaEmbedDecoder, fingerprint

    demo = root / "runs/demo"
    encoder = demo / "model"
    make_model(projection_dim=16).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, list(range(len(tokenizer))), tokenizer=tokenizer,
                                           embedding_dim=16, prefix_length=2,
                                           encoder={"name_or_path": str(encoder), "dim": 16,
                                                    "fingerprint": fingerprint(encoder)})
    decoder.save_pretrained(demo / "decoder")
    tokenizer.save_pretrained(demo / "decoder")
    if corrector:
        GemmaEmbedCorrector.from_decoder(decoder).save_pretrained(demo / "corrector")
    rows, heldout = split_heldout(read_queries_tsv(SAMPLE / "queries.tsv"), 30)
    make_queries_db(rows, demo / "queries.db")
    write_queries_tsv(heldout, demo / "heldout_queries.tsv")
    write_queries_tsv(rows[:500], demo / "bank.tsv")
    return demo
