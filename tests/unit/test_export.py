"""The published folder: written by model.save_pretrained + tokenizer.save_pretrained, read by
SentenceTransformer (stock modules, no remote code) and by AutoModel (trust_remote_code=True)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

TEXTS = ["best running shoes for flat feet", "cheap flights to lisbon in may", "a"]
VARIANTS = {
    "default": {},
    "mlp-last-bidirectional-prompts": dict(
        head="mlp", pooling="last", attention="bidirectional", query_prompt="query: ", document_prompt="passage: "
    ),
}


def publish(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def publish_variant(make_model, tokenizer, variant, folder):
    """A model of `variant` with a trained adapter (so that merging matters), merged and published to `folder`;
    returns the folder, its embeddings of TEXTS before merging, and the merged model."""
    model = make_model(seed=1, **VARIANTS[variant]).attach_lora()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    direct = model.encode(TEXTS, tokenizer)
    model.merge_lora()
    return publish(model, tokenizer, folder), direct, model


@pytest.fixture(params=list(VARIANTS))
def published(request, make_model, tokenizer, tmp_path):
    return publish_variant(make_model, tokenizer, request.param, tmp_path / "pub")


def test_folder_contents(published):
    folder, _, model = published
    names = {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}
    for required in (
        "config.json", "model.safetensors", "modeling_gemma_embed.py", "configuration_gemma_embed.py",
        "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "backbone_config.json",
        "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json", "2_Dense/model.safetensors",
    ):
        assert required in names, required
    assert not any("adapter" in n for n in names)
    config = json.loads(Path(folder, "config.json").read_text())
    assert config["model_type"] == "gemma_embed"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_gemma_embed.GemmaEmbedConfig",
        "AutoModel": "modeling_gemma_embed.GemmaEmbedModel",
    }


def test_every_weight_is_stored_once(published):
    folder, _, model = published
    stored = 0
    for path in Path(folder).rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                assert "lora" not in key, key
                stored += f.get_tensor(key).numel()
    assert stored == sum(p.numel() for p in model.parameters())


def test_sentence_transformers_and_transformers_agree(published, tokenizer):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    folder, direct, model = published
    st = SentenceTransformer(folder, device="cpu")  # no trust_remote_code
    st_vecs = st.encode(TEXTS, convert_to_tensor=True)
    assert st_vecs.shape == (3, 256)
    torch.testing.assert_close(st_vecs.norm(dim=-1), torch.ones(3))
    one = st.encode(["best running shoes for flat feet"])
    assert one.shape == (1, 256)

    hf = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(hf).__name__ == "GemmaEmbedModel"
    hf_vecs = hf.encode(TEXTS, tokenizer)
    for a, b in ((st_vecs, hf_vecs), (hf_vecs, direct)):
        assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.9999


def test_prompts_follow_the_config(published, tokenizer):
    from sentence_transformers import SentenceTransformer

    folder, _, model = published
    st = SentenceTransformer(folder, device="cpu")
    q, d = st.encode_query(TEXTS[:2], convert_to_tensor=True), st.encode_document(TEXTS[:2], convert_to_tensor=True)
    qp, dp = model.config.query_prompt or "", model.config.document_prompt or ""
    cos = torch.nn.functional.cosine_similarity
    assert cos(q, st.encode([qp + t for t in TEXTS[:2]], convert_to_tensor=True)).min() > 0.9999
    assert cos(d, st.encode([dp + t for t in TEXTS[:2]], convert_to_tensor=True)).min() > 0.9999
    assert cos(q, model.encode(TEXTS[:2], tokenizer, prompt_name="query")).min() > 0.9999
    if qp:
        assert cos(q, st.encode(TEXTS[:2], convert_to_tensor=True)).max() < 0.9999


def test_loading_needs_no_peft(make_model, tokenizer, tmp_path):
    # every variant in one interpreter: importing sentence-transformers is most of this test's time
    folders = [publish_variant(make_model, tokenizer, v, tmp_path / v)[0] for v in VARIANTS]
    code = f"""
import sys
sys.modules["peft"] = None  # any import of peft now fails
from sentence_transformers import SentenceTransformer
from transformers import AutoModel
for folder in {folders!r}:
    assert SentenceTransformer(folder, device="cpu").encode(["x"]).shape == (1, 256)
    AutoModel.from_pretrained(folder, trust_remote_code=True)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_a_shorter_embedding_is_the_renormalised_prefix_at_any_truncate_dim(published):
    """SentenceTransformer(path, truncate_dim=d) with normalize_embeddings=True gives each vector's first d
    dimensions as a unit vector: what the Matryoshka loss trains and `train/evaluate.py --dims` scores."""
    from sentence_transformers import SentenceTransformer

    from gemma_embed.eval.run import Tasks, evaluate_model

    published = published[0]
    texts = ["best running shoes", "a cat sleeps on the mat", "cheap flights to rome"]
    full = torch.as_tensor(SentenceTransformer(str(published), device="cpu").encode(texts))
    for d in (128, 64):
        short = torch.as_tensor(SentenceTransformer(str(published), device="cpu", truncate_dim=d).encode(
            texts, normalize_embeddings=True))
        assert short.shape == (3, d)
        torch.testing.assert_close(short, torch.nn.functional.normalize(full[:, :d], dim=-1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(short.norm(dim=-1), torch.ones(3), rtol=0, atol=1e-6)
    sts = Path(__file__).resolve().parents[2] / "examples/data/sts-dev.csv"
    results = evaluate_model(str(published), Tasks((str(sts),)), precision="no", dims=(128, 64))
    assert {"stsb_dev_spearman_cosine", "stsb_dev_spearman_cosine@128", "stsb_dev_spearman_cosine@64"} <= set(results)
    assert len({results["stsb_dev_spearman_cosine"], results["stsb_dev_spearman_cosine@128"], results["stsb_dev_spearman_cosine@64"]}) == 3
