"""The trained corrector's model on a tiny random Gemma 3: built from a decoder (its weights copied), the left-padded
hypothesis, the context's layout, generation in batches, saving and loading (trust_remote_code), its config."""

import pytest
import torch

from configuration_gemma_embed_decoder import GemmaEmbedCorrectorConfig
from modeling_gemma_embed_decoder import GemmaEmbedCorrector, GemmaEmbedDecoder

HYPOTHESES = ["best shoes", "cheap flights to rome for two people", ""]


@pytest.fixture
def pair(tiny_backbone):
    torch.manual_seed(0)
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, embedding_dim=16, prefix_length=3, prefix_norm="rms",
                                           encoder={"name_or_path": "enc", "dim": 16, "fingerprint": "a" * 64}).eval()
    return decoder, GemmaEmbedCorrector.from_decoder(decoder, started_from={"name_or_path": "dec"}).eval()


def test_config_is_validated():
    with pytest.raises(ValueError, match="hypothesis_prefix_length must be an integer >= 0"):
        GemmaEmbedCorrectorConfig(hypothesis_prefix_length=-2)
    with pytest.raises(ValueError, match="max_hypothesis_length must be an integer >= 0"):
        GemmaEmbedCorrectorConfig(max_hypothesis_length=-1)
    config = GemmaEmbedCorrectorConfig(prefix_length=5)
    assert config.model_type == "gemma_embed_corrector" and config.noise_std == 0.0
    assert config.hypothesis_prefix_length == 5  # the decoder's prefix length unless set
    assert GemmaEmbedCorrectorConfig(prefix_length=5, hypothesis_prefix_length=2).hypothesis_prefix_length == 2


def test_built_from_a_decoder_it_holds_the_decoders_weights_and_no_noise(pair):
    decoder, corrector = pair
    mine = corrector.state_dict()
    for name, value in decoder.state_dict().items():
        assert torch.equal(mine[name], value), name
    # the hypothesis is read as the decoder reads a vector; the difference's MLP is new
    for a, b in zip(corrector.hypothesis_prefix.parameters(), decoder.prefix.parameters()):
        assert torch.equal(a, b)
    assert corrector.config.noise_std == 0.0 and decoder.config.noise_std > 0
    assert corrector.config.encoder == decoder.config.encoder and corrector.config.started_from == {"name_or_path": "dec"}
    assert len(corrector.heads) == 3


def test_a_rows_logits_do_not_depend_on_its_batch_mates(pair, tokenizer):
    """Hypotheses of other lengths pad a row on the left: its positions are counted from its first real token, so
    it reads the same as alone."""
    _, corrector = pair
    torch.manual_seed(1)
    vectors, hypothesis_vectors = torch.randn(3, 16), torch.randn(3, 16)
    queries = torch.randint(5, 200, (3, 4))
    together = corrector(vectors, queries, **corrector.conditioning(HYPOTHESES, hypothesis_vectors, tokenizer))
    assert together.logits.shape[:2] == (3, 4) and torch.isfinite(together.loss)
    for i in range(3):
        alone = corrector(vectors[i : i + 1], queries[i : i + 1],
                          **corrector.conditioning(HYPOTHESES[i : i + 1], hypothesis_vectors[i : i + 1], tokenizer))
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-5, rtol=1e-5)
    # generation in a batch writes what each row writes alone
    written = corrector.correct(vectors, HYPOTHESES, hypothesis_vectors, tokenizer, max_new_tokens=6)
    alone = [corrector.correct(vectors[i : i + 1], HYPOTHESES[i : i + 1], hypothesis_vectors[i : i + 1], tokenizer,
                               max_new_tokens=6)[0] for i in range(3)]
    assert written == alone
    beams = corrector.correct(vectors, HYPOTHESES, hypothesis_vectors, tokenizer, mode="beam", num_candidates=3,
                              max_new_tokens=6)
    assert [len(b) for b in beams] == [3, 3, 3]


def test_the_context_is_the_hypothesis_then_its_soft_tokens_then_the_targets(pair, tokenizer):
    _, corrector = pair
    c = corrector.config
    cond = corrector.conditioning(HYPOTHESES, torch.randn(3, 16), tokenizer)
    ids, mask = cond["hypothesis_ids"], cond["hypothesis_mask"]
    assert (ids[:, -1] == c.eos_token_id).all() and (mask[:, -1] == 1).all()  # right-aligned, ending in <eos>
    for row, m in zip(ids.tolist(), mask.tolist()):
        first = m.index(1)
        assert row[first] == c.bos_token_id and set(row[:first]) <= {c.pad_token_id}
    assert mask[2].sum() == 2  # the empty hypothesis: <bos> <eos>
    embeds, full = corrector.context(torch.randn(3, 16), **cond)
    assert embeds.shape[1] == ids.shape[1] + 2 * c.hypothesis_prefix_length + c.prefix_length
    assert full.shape == embeds.shape[:2] and full[:, ids.shape[1]:].all()
    # the target's own soft tokens come last: they are the decoder's, so the corrector starts as the decoder reads
    target = torch.randn(1, 16)
    torch.testing.assert_close(corrector.context(target, **corrector.conditioning(["x"], torch.randn(1, 16), tokenizer))[0][0, -c.prefix_length:],
                               corrector.prefix_embeds(target)[0, 1:])
    cut = GemmaEmbedCorrector(GemmaEmbedCorrectorConfig(**{**c.to_dict(), "max_hypothesis_length": 2}))
    assert cut.hypothesis_ids([[5, 6, 7, 8]])[0].tolist() == [[c.bos_token_id, 5, 6, c.eos_token_id]]
    with pytest.raises(ValueError, match="16-dimensional vectors of enc"):
        corrector.context(torch.randn(3, 8), **cond)


def test_saved_it_loads_as_itself_with_trust_remote_code(pair, tokenizer, tmp_path):
    from transformers import AutoModel

    _, corrector = pair
    corrector.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded).__name__ == "GemmaEmbedCorrector" and loaded.config.started_from == {"name_or_path": "dec"}
    a, b = corrector.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert GemmaEmbedCorrector.from_pretrained(tmp_path).config.hypothesis_prefix_length == 3
    with pytest.raises(ValueError, match="merge_lora"):
        GemmaEmbedCorrector.from_decoder(GemmaEmbedDecoder.from_pretrained(tmp_path).attach_lora())
