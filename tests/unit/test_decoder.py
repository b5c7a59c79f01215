"""The query decoder on a tiny random Gemma 3: its config, the restricted vocabulary, the loss's positions, the
noise, LoRA, saving and loading (transformers and trust_remote_code), the encoder check; and the pieces of its
training and evaluation (collator, token F1, re-ranking, the floor, held-out sets)."""

import math

import pytest
import torch
import torch.nn.functional as F

from configuration_gemma_embed_decoder import GemmaEmbedDecoderConfig
from gemma_embed.data.decoder_queries import DecoderCollator
from gemma_embed.eval.inversion import floor_cosine, heldout_sets
from gemma_embed.text_metrics import normalise, rerank, token_f1
from modeling_gemma_embed_decoder import GemmaEmbedDecoder, fingerprint

QUERIES = ["best running shoes", "cheap flights to rome", "how tall is everest", "a cat"]


@pytest.fixture
def setup(tiny_backbone, tokenizer):
    ids = tokenizer(QUERIES)["input_ids"]
    vocab = sorted({t for row in ids for t in row} | {0, 1, 2, 3})
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, tokenizer=tokenizer, embedding_dim=16, prefix_length=3,
                                           encoder={"name_or_path": "enc", "dim": 16, "fingerprint": "a" * 64})
    batch = DecoderCollator(decoder.config)([(row[1:] + [1], torch.randn(16).numpy()) for row in ids])
    return decoder, vocab, batch


def test_config_is_validated():
    with pytest.raises(ValueError, match="prefix_length must be a positive integer"):
        GemmaEmbedDecoderConfig(prefix_length=0)
    with pytest.raises(ValueError, match="repeats a token id"):
        GemmaEmbedDecoderConfig(vocab_ids=[0, 1, 2, 2])
    with pytest.raises(ValueError, match="eos_token_id 5 is outside the vocabulary"):
        GemmaEmbedDecoderConfig(vocab_ids=[0, 1, 2], eos_token_id=5)
    with pytest.raises(ValueError, match="the encoder's dim"):
        GemmaEmbedDecoderConfig(embedding_dim=256, encoder={"dim": 384})
    with pytest.raises(ValueError, match="prefix_norm must be none or rms"):
        GemmaEmbedDecoderConfig(prefix_norm="layer")
    assert GemmaEmbedDecoderConfig(vocab_ids=[7, 0, 1, 2]).text_config.vocab_size == 4


def test_restricted_vocabulary_keeps_the_rows_and_ties_the_output(setup, tiny_backbone):
    from transformers import Gemma3ForCausalLM

    decoder, vocab, _ = setup
    full = Gemma3ForCausalLM.from_pretrained(tiny_backbone)
    emb = decoder.lm.model.embed_tokens.weight
    assert emb.shape[0] == len(vocab) and decoder.config.text_config.vocab_size == len(vocab)
    torch.testing.assert_close(emb, full.model.embed_tokens.weight[torch.tensor(vocab)])
    assert decoder.lm.lm_head.weight.data_ptr() == emb.data_ptr()  # one matrix in and out
    ids = torch.tensor([vocab[5], vocab[2], vocab[0]])
    assert torch.equal(decoder.to_tokenizer_ids(decoder.to_local(ids)), ids)
    with pytest.raises(ValueError, match="outside the decoder's vocabulary"):
        decoder.to_local(torch.tensor([max(vocab) + 1]))
    assert decoder.config.bos_token_id == vocab.index(2) and decoder.config.eos_token_id == vocab.index(1)
    shallow = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, num_layers=1, embedding_dim=16)
    assert len(shallow.lm.model.layers) == 1 and shallow.config.text_config.layer_types == ["sliding_attention"]


def test_the_first_layers_can_be_kept_and_the_result_saves_loads_and_decodes(tokenizer, tmp_path):
    from transformers import Gemma3ForCausalLM

    from gemma_embed.backbones import build_tiny_backbone

    types = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
    deep = build_tiny_backbone(tmp_path / "deep", num_hidden_layers=4, layer_types=types)
    full = Gemma3ForCausalLM.from_pretrained(deep)
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(deep, tokenizer=tokenizer, num_layers=3, embedding_dim=16)
    kept = decoder.lm.model.layers
    assert decoder.config.text_config.layer_types == types[:3]  # the last layer dropped
    for layer, source in zip(kept, (0, 1, 2)):
        torch.testing.assert_close(layer.mlp.up_proj.weight, full.model.layers[source].mlp.up_proj.weight)
    assert [layer.self_attn.layer_idx for layer in kept] == [0, 1, 2]  # the cache's slots, as generation reads them
    vectors = F.normalize(torch.randn(2, 16), dim=-1)
    decoded = decoder.eval().decode(vectors, tokenizer, max_new_tokens=4)
    decoder.save_pretrained(tmp_path / "dec")
    again = GemmaEmbedDecoder.from_pretrained(tmp_path / "dec").eval()
    assert again.decode(vectors, tokenizer, max_new_tokens=4) == decoded
    with pytest.raises(ValueError, match="num_layers must be in 1..4"):
        GemmaEmbedDecoder.from_gemma(deep, num_layers=5, embedding_dim=16)


def test_the_loss_predicts_each_token_from_the_position_before_it(setup):
    decoder, _, batch = setup
    decoder.eval()
    out = decoder(**batch)
    n = batch["input_ids"].shape[1]
    assert out.logits.shape == (4, n, len(decoder.config.vocab_ids))
    # by hand: run the LM on [<bos>, prefix, tokens] and read the positions K .. K+n-1
    prefix = decoder.prefix_embeds(batch["vectors"])
    embeds = torch.cat([prefix, decoder.lm.get_input_embeddings()(batch["input_ids"])], dim=1)
    mask = torch.cat([torch.ones(4, prefix.shape[1], dtype=torch.long), batch["attention_mask"]], dim=1)
    logits = decoder.lm(inputs_embeds=embeds, attention_mask=mask).logits[:, 3 : 3 + n]
    torch.testing.assert_close(out.logits, logits)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_the_log_likelihood_is_the_training_loss_of_each_text_alone(setup, tokenizer):
    """log_likelihood (a corrector's fluency term) reads each text as training does: its mean log-probability per
    token, <eos> included, is minus the teacher-forced loss of that text alone; a token outside the vocabulary is
    read as <unk> rather than refused."""
    model, _, batch = setup
    model.eval()  # no noise on the vectors, as log_likelihood reads them
    vectors, texts = batch["vectors"], ["best running shoes", "cheap flights"]
    rows = [r + [tokenizer.eos_token_id] for r in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    scores = model.log_likelihood(vectors[:2], texts, tokenizer)
    for i, row in enumerate(rows):
        local = model.to_local(torch.tensor([row]))
        assert scores[i].item() == pytest.approx(-model(vectors[i : i + 1], local).loss.item(), abs=1e-4)
    assert torch.isfinite(model.log_likelihood(vectors[:1], ["zebra quasar"], tokenizer)).all()


def test_noise_in_training_mode_only_at_the_configured_angle(tiny_backbone):
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, embedding_dim=256, noise_std=0.5)
    v = F.normalize(torch.randn(512, 256), dim=-1)
    captured = []
    decoder.prefix.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    decoder.eval()
    decoder.prefix_embeds(v)
    torch.testing.assert_close(captured[-1], v)
    decoder.train()
    decoder.prefix_embeds(v)
    cos = F.cosine_similarity(captured[-1], v).mean().item()
    assert abs(cos - 1 / math.sqrt(1 + 0.5**2)) < 0.02
    assert torch.allclose(captured[-1].norm(dim=-1), torch.ones(512))


def test_lora_trains_and_merges_into_the_same_function(setup):
    decoder, _, batch = setup
    decoder.attach_lora().train()
    trainable = {n for n, p in decoder.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any(n.startswith("prefix.") for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
    with torch.no_grad():
        for n, p in decoder.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.2)
    decoder.eval()
    before = decoder(**batch).logits
    decoder.merge_lora()
    assert not decoder.has_lora
    torch.testing.assert_close(decoder(**batch).logits, before, rtol=1e-4, atol=1e-4)


def test_save_load_decode_and_the_encoder_check(setup, tokenizer, tmp_path):
    from transformers import AutoModel

    decoder, _, batch = setup
    decoder.eval()
    decoder.save_pretrained(tmp_path / "dec")
    tokenizer.save_pretrained(tmp_path / "dec")
    vectors = batch["vectors"]
    for loaded in (GemmaEmbedDecoder.from_pretrained(tmp_path / "dec"),
                   AutoModel.from_pretrained(tmp_path / "dec", trust_remote_code=True)):
        loaded.eval()
        torch.testing.assert_close(loaded(**batch).logits, decoder(**batch).logits)
        assert loaded.decode(vectors, tokenizer) == decoder.decode(vectors, tokenizer)
    beams = decoder.decode(vectors, tokenizer, mode="beam", num_candidates=3)
    sampled = decoder.decode(vectors, tokenizer, mode="sample", num_candidates=5)
    assert [len(b) for b in beams] == [3] * 4 and [len(s) for s in sampled] == [5] * 4
    decoder.verify_encoder("a" * 64)
    with pytest.raises(ValueError, match="this decoder inverts enc .*another space"):
        decoder.verify_encoder("b" * 64, "the encoder given")


def test_a_folder_saved_with_the_removed_prefix_knobs_still_loads(setup, tmp_path):
    """Folders saved before the prefix MLP's recipe was fixed (hidden size, GELU) carry prefix_hidden_dim: 0 and
    prefix_activation: gelu in config.json: read and dropped, they build the same model; another value is refused."""
    import json

    from transformers import AutoModel

    from modeling_gemma_embed_decoder import GemmaEmbedCorrector

    legacy = {"prefix_hidden_dim": 0, "prefix_activation": "gelu"}
    config = GemmaEmbedDecoderConfig(**{**setup[0].config.to_dict(), **legacy})
    assert not hasattr(config, "prefix_hidden_dim") and GemmaEmbedDecoder(config).prefix[1].__class__ is torch.nn.GELU
    with pytest.raises(ValueError, match="prefix_activation was removed"):
        GemmaEmbedDecoderConfig(**{**setup[0].config.to_dict(), "prefix_activation": "tanh"})
    decoder, _, batch = setup
    decoder.eval().save_pretrained(tmp_path / "dec")
    path = tmp_path / "dec" / "config.json"
    assert not legacy.keys() & json.loads(path.read_text())
    path.write_text(json.dumps({**json.loads(path.read_text()), **legacy}, indent=2))
    for loaded in (GemmaEmbedDecoder.from_pretrained(tmp_path / "dec"),
                   AutoModel.from_pretrained(tmp_path / "dec", trust_remote_code=True)):
        torch.testing.assert_close(loaded.eval()(**batch).logits, decoder(**batch).logits)
    assert GemmaEmbedCorrector.from_decoder(loaded).hypothesis_prefix[0].out_features == config.text_config.hidden_size


def test_fingerprint_follows_the_weights(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/model.safetensors").write_bytes(b"1234")
    (tmp_path / "m/config.json").write_text("{}")
    first = fingerprint(tmp_path / "m")
    (tmp_path / "m/config.json").write_text('{"x": 1}')  # not a weight file
    assert fingerprint(tmp_path / "m") == first
    (tmp_path / "m/model.safetensors").write_bytes(b"1235")
    assert fingerprint(tmp_path / "m") != first
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        fingerprint(tmp_path / "empty")


def test_collator_pads_right_in_local_ids_and_maps_unknown_tokens(setup):
    decoder, vocab, batch = setup
    assert batch["attention_mask"][:, 0].all() and not batch["attention_mask"][-1, -1]  # right padding
    assert (batch["input_ids"][batch["attention_mask"] == 0] == decoder.config.pad_token_id).all()
    collate = DecoderCollator(decoder.config)
    unknown = max(vocab) + 7
    out = collate([([vocab[5], unknown, 1], torch.zeros(16).numpy())])
    assert out["input_ids"][0].tolist() == [5, decoder.config.unk_token_id, vocab.index(1)]


def test_metrics_by_hand():
    assert token_f1("best running shoes", "running shoes for flat feet") == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0
    assert normalise("  Best  Running\tShoes ") == "best running shoes"
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embed = lambda texts: torch.tensor([{"east": [1.0, 0.1], "north": [0.1, 1.0], "west": [-1.0, 0.0]}[t] for t in texts])  # noqa: E731,E501
    best, cos = rerank([["west", "east", ""], ["east", "north"]], targets, embed)
    assert best == ["east", "north"] and cos[0] == pytest.approx(1 / math.sqrt(1.01))
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert floor_cosine(opposite) == pytest.approx(-1.0)


def test_heldout_sets_drop_training_queries_and_sample_the_same_each_time(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("query\tsource\n" + "".join(f"query {i}\t{'mq' if i % 2 else 'nq'}\n" for i in range(50)))
    sets = heldout_sets([str(path), f"{path}@mq"], n=10, exclude={"query 3", "query 4"})
    assert list(sets) == ["q.tsv", "q.tsv@mq"] and all(len(s) == 10 for s in sets.values())
    assert not {"query 3", "query 4"} & set(sets["q.tsv"])
    assert all(int(q.split()[1]) % 2 for q in sets["q.tsv@mq"])
    assert heldout_sets([str(path)], n=10, exclude={"query 3", "query 4"}) == {"q.tsv": sets["q.tsv"]}


@pytest.mark.parametrize("prefix_norm", ["none", "rms"])
def test_the_conditioning_gap_is_near_zero_untrained_and_positive_once_the_vector_is_used(
        tiny_backbone, tokenizer, prefix_norm):
    from gemma_embed.data.decoder_queries import DecoderCollator, tokenize_queries
    from gemma_embed.scores import conditioning_gap

    ids = tokenizer(QUERIES)["input_ids"]
    vocab = sorted({t for row in ids for t in row} | {0, 1, 2, 3})
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, tokenizer=tokenizer, embedding_dim=16, prefix_length=3,
                                           prefix_norm=prefix_norm, noise_std=0.0)
    vectors = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    before = conditioning_gap(decoder, tokenizer, QUERIES, vectors)
    assert abs(before["gap"]) < 0.05 and before["loss_own"] > 0  # an untrained prefix: nothing learned of the vector
    decoder.attach_lora().train()
    optimizer = torch.optim.Adam([p for p in decoder.parameters() if p.requires_grad], lr=3e-3)
    batch = DecoderCollator(decoder.config)(list(zip(tokenize_queries(tokenizer, QUERIES, 16), vectors.numpy())))
    for _ in range(40):  # learn which vector writes which query
        optimizer.zero_grad()
        decoder(**batch).loss.backward()
        optimizer.step()
    after = conditioning_gap(decoder, tokenizer, QUERIES, vectors)
    # four queries with four different first words: only the first token needs the vector, so the gap can reach
    # at most log(4) nats on it, averaged over all the tokens
    ceiling = math.log(4) * 4 / int(batch["attention_mask"].sum())
    assert 0.5 * ceiling < after["gap"] <= ceiling + 0.05
    assert after["loss_shuffled"] - after["loss_own"] == pytest.approx(after["gap"])
    assert decoder.training  # the helper leaves the mode it found
    assert conditioning_gap(decoder, tokenizer, QUERIES[:1], vectors[:1])["gap"] is None


def test_the_vector_pass_resumes_at_its_first_missing_chunk(tmp_path, monkeypatch):
    """Encoded shortest first, a chunk at a time: killed after two chunks, the next pass encodes only the rest, and
    the result is each text's own vector, in the texts' order, whatever order they were encoded in."""
    import numpy as np

    import gemma_embed.encoder as encoder

    texts = [f"query {'x' * (7 - i % 7)} {i}" for i in range(10)]
    encoded, calls = [], {"left": 2}

    def fake_embedder(spec, batch_size, precision, quiet):
        def embed(batch):
            if calls["left"] == 0:
                raise KeyboardInterrupt
            calls["left"] -= 1
            encoded.append(list(batch))
            return torch.tensor([[float(len(t)), float(t.split()[-1])] for t in batch])

        embed.precision = type("P", (), {"name": "float32"})
        return embed

    monkeypatch.setattr(encoder, "load_embedder", fake_embedder)
    monkeypatch.setattr(encoder, "encoder_fingerprint", lambda spec: "f" * 64)
    with pytest.raises(KeyboardInterrupt):
        encoder.cached_vectors("enc", texts, tmp_path, chunk=3)
    assert [len(t) for t in encoded[0]] == sorted(len(t) for t in encoded[0]) and len(encoded) == 2
    first_two = [t for batch in encoded for t in batch]
    calls["left"], encoded[:] = 10, []
    vectors = encoder.cached_vectors("enc", texts, tmp_path, chunk=3)
    assert not set(first_two) & {t for batch in encoded for t in batch}
    assert sum(map(len, encoded)) == 4  # chunks 3 and 4 only (3 + 1 texts)
    np.testing.assert_array_equal(vectors, [[len(t), float(t.split()[-1])] for t in texts])
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".npy"] and not list(tmp_path.glob("*.parts"))
    calls["left"] = 0  # a third pass reads the file back and encodes nothing
    np.testing.assert_array_equal(encoder.cached_vectors("enc", texts, tmp_path, chunk=3), vectors)


def test_a_subset_of_a_cached_list_is_read_from_its_cache_and_another_encoder_is_not(tmp_path, monkeypatch):
    """The decoder's training queries are a share of the pool whose vectors the evaluation cached: their vectors
    are that cache's rows (nothing is encoded), in the order asked; a text outside it, or another encoder's
    weights, encodes again."""
    import numpy as np

    import gemma_embed.encoder as encoder

    texts = [f"query {i}" for i in range(10)]
    encoded = []

    def fake_embed(batch):
        encoded.extend(batch)
        return torch.tensor([[float(t.split()[-1]), float(len(t))] for t in batch])

    fake_embed.precision = type("P", (), {"name": "float32"})
    fingerprint = {"value": "a" * 64}
    monkeypatch.setattr(encoder, "encoder_fingerprint", lambda spec: fingerprint["value"])
    monkeypatch.setattr(encoder, "load_embedder", lambda *a, **k: pytest.fail("the embed given is used"))
    pool = encoder.cached_vectors("enc", texts, tmp_path, embed=fake_embed)
    assert encoded == sorted(texts, key=len)
    subset = [texts[7], texts[2], texts[5]]
    encoded.clear()
    np.testing.assert_array_equal(encoder.cached_vectors("enc", subset, tmp_path, embed=fake_embed),
                                  np.asarray(pool)[[7, 2, 5]])
    assert encoded == []
    encoder.cached_vectors("enc", [texts[1], "a new query 11"], tmp_path, embed=fake_embed)
    assert sorted(encoded) == sorted([texts[1], "a new query 11"])
    encoded.clear()
    fingerprint["value"] = "b" * 64  # other weights at the same path: nothing of the first encoder is reused
    encoder.cached_vectors("enc", subset, tmp_path, embed=fake_embed)
    assert sorted(encoded) == sorted(subset)


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_gradient_checkpointing_is_switched_on_by_the_model_and_changes_no_gradient(which, setup, make_model):
    """The loop calls model.gradient_checkpointing_enable() on either model: the layers recompute their
    activations, and the adapters' gradients are those of the plain backward."""
    decoder, _, batch = setup

    def grads(model, checkpointing: bool):
        torch.manual_seed(0)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        if which == "decoder":
            loss = model(**batch).loss
        else:
            loss = model(batch["input_ids"] + 3, batch["attention_mask"]).pow(2).sum()
        loss.backward()
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        model.zero_grad(set_to_none=True)
        return out

    model = (decoder.attach_lora() if which == "decoder" else make_model().attach_lora()).train()  # as the loop
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # trained adapters, so that the gradients reaching lora_A are not zero
    plain, checkpointed = grads(model, False), grads(model, True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 4
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_a_decoder_that_learned_four_queries_writes_each_back_from_its_own_vector(tiny_backbone, tokenizer):
    """Decoding and the metrics end to end: after fitting four queries to four vectors, greedy decoding of each
    vector is its query word for word (exact match, token F1 and BLEU 100), and the vectors shifted by one give
    the neighbouring queries (exact match 0 against the originals): the output follows the input vector."""
    from gemma_embed.data.decoder_queries import tokenize_queries
    from gemma_embed.eval.inversion import scores

    queries = ["best running music", "the dog to rome", "how tall is the man", "a cat"]  # words of the tiny vocab
    ids = tokenizer(queries)["input_ids"]
    vocab = sorted({t for row in ids for t in row} | {0, 1, 2, 3})
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, vocab, tokenizer=tokenizer, embedding_dim=16, prefix_length=3,
                                           prefix_norm="rms", noise_std=0.0).train()
    vectors = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)  # every weight: a tiny model fits fast
    batch = DecoderCollator(decoder.config)(list(zip(tokenize_queries(tokenizer, queries, 16), vectors.numpy())))
    for _ in range(60):
        optimizer.zero_grad()
        loss = decoder(**batch).loss
        loss.backward()
        optimizer.step()
    decoder.eval()
    decoded = [c[0] for c in decoder.decode(vectors, tokenizer)]
    assert decoded == queries, (loss.item(), decoded)
    embed = lambda texts: torch.stack([vectors[queries.index(t)] if t in queries else torch.zeros(16)  # noqa: E731
                                       for t in texts])
    own = scores(decoded, queries, vectors, embed)
    assert own["exact_match"] == own["token_f1"] == 100.0 and own["bleu"] == pytest.approx(100.0)
    assert own["roundtrip_cosine"] == pytest.approx(1.0)
    shifted = [c[0] for c in decoder.decode(vectors.roll(1, 0), tokenizer)]
    assert shifted == queries[-1:] + queries[:-1]
    assert scores(shifted, queries, vectors, embed)["exact_match"] == 0.0


def test_vectors_of_another_width_are_refused_naming_the_encoder(setup, tokenizer):
    decoder, _, _ = setup
    for bad in (torch.randn(2, 384), torch.randn(16)):
        with pytest.raises(ValueError, match=r"16-dimensional vectors of enc; got a tensor of shape \((2, 384|16,)\)"):
            decoder.decode(bad, tokenizer)
    assert len(decoder.decode(torch.randn(2, 16), tokenizer)) == 2


def test_the_inverter_refuses_vectors_of_another_width_or_encoder(setup, tokenizer):
    """A decoder's own decode refuses vectors of another width; the Inverter also refuses another encoder's vectors
    when their fingerprint is given (vectors carry nothing else to check)."""
    from gemma_embed.inverter import Inverter

    decoder = setup[0].eval()
    with pytest.raises(ValueError, match="16-dimensional vectors of enc; got a tensor of shape \\(2, 384\\)"):
        decoder.decode(torch.randn(2, 384), tokenizer)
    inverter = Inverter(decoder, tokenizer, lambda texts: F.normalize(torch.randn(len(texts), 16), dim=-1), "enc", [])
    with pytest.raises(ValueError, match="16-dimensional vectors of enc"):
        inverter.invert(torch.randn(2, 384))
    with pytest.raises(ValueError, match="another encoder \\(weights sha256 bbbbbbbbbbbb\\)"):
        inverter.invert(torch.randn(2, 16), fingerprint="b" * 64)
    inverter.check(torch.randn(2, 16), fingerprint="a" * 64)  # its own encoder's: accepted
