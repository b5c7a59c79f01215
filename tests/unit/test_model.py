import pytest
import torch

TEXTS = ["best running shoes for flat feet", "a cat", "how tall is the eiffel tower in metres?"]


def encode(model, tokenizer, texts, side="left"):
    tokenizer.padding_side = side
    try:
        enc = tokenizer(texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "left"
    with torch.no_grad():
        return model(enc["input_ids"], enc["attention_mask"])


@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("normalize", [True, False])
def test_shape_and_norm(make_model, tokenizer, head, normalize):
    out = encode(make_model(head=head, normalize=normalize, projection_dim=256), tokenizer, TEXTS)
    assert out.shape == (3, 256) and torch.isfinite(out).all()
    norms = out.norm(dim=-1)
    if normalize:
        torch.testing.assert_close(norms, torch.ones(3))
    else:
        assert not torch.allclose(norms, torch.ones(3))


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_left_and_right_padding_agree(make_model, tokenizer, pooling, attention):
    model = make_model(pooling=pooling, attention=attention)
    left, right = encode(model, tokenizer, TEXTS, "left"), encode(model, tokenizer, TEXTS, "right")
    assert (left - right).abs().max() < 1e-5
    alone = torch.cat([encode(model, tokenizer, [t]) for t in TEXTS])  # no padding at all
    assert (left - alone).abs().max() < 1e-5


def test_pooling_ignores_padding_content(make_model):
    model = make_model()
    ids = torch.tensor([[0, 0, 2, 10, 11], [7, 9, 2, 10, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
    with torch.no_grad():
        out = model(ids, mask)
    torch.testing.assert_close(out[0], out[1])


def test_bidirectional_attention_sees_later_tokens(make_model):
    ids_a, ids_b = torch.tensor([[2, 10, 11, 12]]), torch.tensor([[2, 10, 11, 99]])
    for attention, differs in (("causal", False), ("bidirectional", True)):
        model = make_model(attention=attention, pooling="mean")
        with torch.no_grad():
            ha = model.model(input_ids=ids_a).last_hidden_state[0, 1]
            hb = model.model(input_ids=ids_b).last_hidden_state[0, 1]
        assert (not torch.allclose(ha, hb)) == differs, attention


def test_bf16_runs_on_cpu(make_model, tokenizer):
    model = make_model()
    fp32 = encode(model, tokenizer, TEXTS)
    bf16 = encode(model.to(torch.bfloat16), tokenizer, TEXTS)
    assert torch.nn.functional.cosine_similarity(fp32, bf16.float()).min() > 0.98
    model.to(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = encode(model, tokenizer, TEXTS)
    assert torch.nn.functional.cosine_similarity(fp32, auto.float()).min() > 0.98
    for vectors in (fp32, bf16, auto):  # whatever the precision inside, unit vectors in float32
        assert vectors.dtype == torch.float32
        torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(len(TEXTS)), rtol=0, atol=1e-6)


def test_fp16_is_refused(make_model, tokenizer, tiny_backbone):
    from modeling_gemma_embed import GemmaEmbedModel

    with pytest.raises(ValueError, match="refuses float16"):
        GemmaEmbedModel.from_gemma(tiny_backbone, dtype=torch.float16)
    with pytest.raises(ValueError, match="refuses float16"):
        encode(make_model().half(), tokenizer, TEXTS)
    with pytest.raises(ValueError, match="refuses float16"):
        with torch.autocast("cpu", dtype=torch.float16):
            encode(make_model(), tokenizer, TEXTS)


def test_lora_attach_train_merge(make_model, tokenizer):
    model = make_model(lora_r=4)
    before = encode(model, tokenizer, TEXTS)
    model.attach_lora()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    assert not any("k_proj" in n or "o_proj" in n for n in trainable)
    torch.testing.assert_close(encode(model, tokenizer, TEXTS), before)  # LoRA B starts at zero
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    adapted = encode(model, tokenizer, TEXTS)
    assert (adapted - before).abs().max() > 1e-3
    with pytest.raises(RuntimeError, match="merge_lora"):
        model.save_pretrained("/nonexistent")
    model.merge_lora()
    assert not model.has_lora and not any("lora" in n for n, _ in model.named_parameters())
    assert (encode(model, tokenizer, TEXTS) - adapted).abs().max() < 1e-5


def test_views_differ_in_training_mode_only(make_model, tokenizer):
    """SimCSE's two views: dropout (backbone attention dropout and LoRA dropout) makes them differ."""
    model = make_model(view_dropout=0.1, lora_dropout=0.1).attach_lora()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.train()
    a, b = model(**enc), model(**enc)
    assert (a - b).abs().max() > 1e-4
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**enc), model(**enc), rtol=0, atol=0)
    off = make_model(view_dropout=0.0, lora_dropout=0.0).train()
    torch.testing.assert_close(off(**enc), off(**enc))  # without dropout the views are identical


def test_batches_by_length_cover_every_text_once_shortest_first():
    from modeling_gemma_embed import batches_by_length

    texts = ["ccc", "a", "bbbbb", "dd", "e", "ffff", "gg"]
    batches = batches_by_length(texts, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    lengths = [len(texts[i]) for b in batches for i in b]
    assert lengths == sorted(lengths)
    assert batches_by_length([], 3) == []
