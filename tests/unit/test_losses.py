import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from gemma_embed.losses import contrastive_loss, encode_streams, grad_cache_step, info_nce, word_loss
from tolerance import assert_scalars_close, assert_tensors_close, autocast


def test_info_nce_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])  # two positives, one hard negative
    t = 0.5
    expected = 0.0
    for i in range(2):
        logits = [float(q[i] @ k[j]) / t for j in range(3)]
        expected += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    assert info_nce(q, k, t).item() == pytest.approx(expected / 2, rel=1e-6)


def test_perfect_separation_gives_near_zero_loss_and_temperature_sharpens():
    q = torch.eye(4)
    assert info_nce(q, q, 0.01).item() < 1e-6
    assert info_nce(q, q, 1.0).item() > info_nce(q, q, 0.1).item()


def test_hard_negative_close_to_the_query_raises_the_loss():
    q = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    far, near = -q[:1], q[:1] * 0.99
    assert info_nce(q, torch.cat([q, near]), 0.05) > info_nce(q, torch.cat([q, far]), 0.05)


def test_groups_mask_duplicates_instead_of_counting_them_as_negatives():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    q[2] = q[0]  # rows 0 and 2 are the same text
    k = q.clone()
    groups = torch.tensor([7, 1, 7, 3])
    masked = info_nce(q, k, 0.05, groups)
    # by hand: row 0 does not see key 2, row 2 does not see key 0
    logits = q @ k.T / 0.05
    logits[0, 2] = logits[2, 0] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    torch.testing.assert_close(masked, expected)
    assert masked < info_nce(q, k, 0.05)  # unmasked, the duplicate is a (false) negative as close as the positive


def test_contrastive_loss_single_process_is_info_nce_over_the_streams():
    torch.manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(3, 8), dim=-1) for _ in range(3))
    torch.testing.assert_close(contrastive_loss([a, p, n], None, 0.05), info_nce(a, torch.cat([p, n]), 0.05))


def test_symmetric_loss_averages_both_directions_and_leaves_hard_negatives_out_of_the_reverse():
    torch.manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(3))
    a[2] = a[0]  # anchors 0 and 2 are the same text
    groups = torch.tensor([5, 1, 5, 2])
    t = 0.05
    ce = torch.nn.functional.cross_entropy
    forward = a @ torch.cat([p, n]).T / t
    reverse = p @ a.T / t
    for logits in (forward, reverse):
        logits[0, 2] = logits[2, 0] = float("-inf")
    expected = (ce(forward, torch.arange(4)) + ce(reverse, torch.arange(4))) / 2
    torch.testing.assert_close(contrastive_loss([a, p, n], groups, t, symmetric=True), expected)
    assert not torch.isclose(contrastive_loss([a, p, n], groups, t), expected)


def _tiny_setup(make_model, tokenizer, dropout):
    model = make_model(view_dropout=dropout, lora_dropout=dropout).attach_lora().train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    texts = ["a man is playing a guitar", "the cat sleeps", "stocks fell sharply today", "a dog runs in a park",
             "how tall is everest", "cheap flights to rome", "a woman slices an onion", "the sun is a star"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    enc2 = tokenizer(list(reversed(texts)), padding=True, return_tensors="pt")
    streams = [dict(enc), dict(enc2)]
    groups = torch.arange(len(texts))
    return model, streams, groups


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _encoder(model):
    """The model's forward as the training loop runs it: under the suite's precision (accelerate's autocast), the
    embeddings returned in float32."""
    def encode(batch):
        with autocast():
            return model(batch["input_ids"], batch["attention_mask"]).float()

    return encode


def _assert_same_step(cached, loss, grads, reference):
    assert_scalars_close(cached, loss.detach())
    for name, g in grads.items():
        assert_tensors_close(g, reference[name], msg=name, atol32=1e-6)


MATRYOSHKA = ((256, 1.0), (128, 1.0), (64, 0.5))


@pytest.mark.precision
@pytest.mark.parametrize("dims", [(), MATRYOSHKA], ids=["whole", "matryoshka"])
@pytest.mark.parametrize("chunk", [1, 3, 5])  # 5: chunks of unequal size; every chunk smaller than the batch of 8
def test_grad_cache_matches_the_uncached_loss_and_gradients(make_model, tokenizer, chunk, dims):
    _assert_same_step(*_reference_and_grad_cache(make_model, tokenizer, chunk, dims=dims))


def test_the_matryoshka_loss_is_the_weighted_mean_over_renormalised_prefixes():
    torch.manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(4, 16), dim=-1) for _ in range(3))
    groups = torch.tensor([0, 1, 0, 2])

    def prefix(x, d):
        return torch.nn.functional.normalize(x[:, :d], dim=-1)

    expected = (2 * contrastive_loss([prefix(a, 16), prefix(p, 16), prefix(n, 16)], groups, 0.05, True)
                + contrastive_loss([prefix(a, 4), prefix(p, 4), prefix(n, 4)], groups, 0.05, True)) / 3
    got = contrastive_loss([a, p, n], groups, 0.05, True, dims=((16, 2.0), (4, 1.0)))
    torch.testing.assert_close(got, expected)
    # the whole vectors alone: the plain loss; a prefix alone differs from it
    torch.testing.assert_close(contrastive_loss([a, p, n], groups, 0.05, dims=((16, 1.0),)),
                               contrastive_loss([a, p, n], groups, 0.05))
    assert not torch.isclose(contrastive_loss([a, p, n], groups, 0.05, dims=((4, 1.0),)),
                             contrastive_loss([a, p, n], groups, 0.05))


def _reference_and_grad_cache(make_model, tokenizer, chunk: int, temperature: float = 0.05, dims=()):
    """The plain step at temperature 0.05 and a GradCache step at `temperature` (both with the Matryoshka `dims`):
    (cached loss, loss, cached gradients, reference gradients)."""
    model, streams, groups = _tiny_setup(make_model, tokenizer, dropout=0.0)
    encode = _encoder(model)
    loss = contrastive_loss([encode(s) for s in streams], groups, 0.05, dims=dims)
    loss.backward()
    reference = _grads(model)
    model.zero_grad()
    cached = grad_cache_step(encode, streams, groups, temperature, chunk, lambda t: t.backward(),
                             loss_fn=lambda e, g, t: contrastive_loss(e, g, t, dims=dims))
    return cached, loss, _grads(model), reference


@pytest.mark.precision
def test_the_tolerance_catches_a_wrong_step(make_model, tokenizer):
    """The control for the bounds of tests/helpers/tolerance.py: a step at a temperature 10% off is outside them,
    in either precision."""
    wrong, loss, grads, reference = _reference_and_grad_cache(make_model, tokenizer, 3, temperature=0.055)
    with pytest.raises(AssertionError):
        assert_scalars_close(wrong, loss.detach())
    with pytest.raises(AssertionError):
        _assert_same_step(loss, loss, grads, reference)


@pytest.mark.precision
def test_grad_cache_replays_dropout(make_model, tokenizer):
    """With dropout on, the recomputation must draw the same masks as the first pass, so the gradients equal a
    chunk-by-chunk encoding with a graph from the same RNG state."""
    model, streams, groups = _tiny_setup(make_model, tokenizer, dropout=0.3)
    encode = _encoder(model)
    chunk = 4
    torch.manual_seed(123)
    embs = [torch.cat([encode({k: v[i:i + chunk] for k, v in s.items()}) for i in range(0, 8, chunk)]) for s in streams]
    loss = contrastive_loss(embs, groups, 0.05)
    loss.backward()
    reference = _grads(model)
    model.zero_grad()
    torch.manual_seed(123)
    cached = grad_cache_step(encode, streams, groups, 0.05, chunk, lambda t: t.backward())
    _assert_same_step(cached, loss, _grads(model), reference)


@pytest.mark.precision
def test_grad_cache_skips_the_recomputation_when_every_stream_fits_in_one_chunk(make_model, tokenizer):
    model, streams, groups = _tiny_setup(make_model, tokenizer, dropout=0.0)
    calls, forward = [], _encoder(model)

    def encode(b):
        calls.append(b["input_ids"].shape[0])
        return forward(b)

    loss = contrastive_loss([encode(s) for s in streams], groups, 0.05)
    loss.backward()
    reference = _grads(model)
    model.zero_grad()
    calls.clear()
    cached = grad_cache_step(encode, streams, groups, 0.05, 8, lambda t: t.backward())
    assert calls == [8, 8]  # one pass per stream, with a graph: nothing encoded twice
    _assert_same_step(cached, loss, _grads(model), reference)
    calls.clear()
    grad_cache_step(encode, streams, groups, 0.05, 4, lambda t: t.backward())
    assert calls == [4, 4, 4, 4] * 2  # larger than a chunk: encoded without, then with a graph


def test_an_empty_negatives_stream_is_not_encoded_and_changes_nothing(make_model, tokenizer):
    model, streams, groups = _tiny_setup(make_model, tokenizer, dropout=0.0)
    encode = lambda b: model(b["input_ids"], b["attention_mask"])  # noqa: E731
    empty = {k: v[:0] for k, v in streams[0].items()}
    embeddings = encode_streams(encode, streams + [empty])
    assert embeddings[2].shape == (0, 256) and embeddings[2].requires_grad
    torch.testing.assert_close(contrastive_loss(embeddings, groups, 0.05),
                               contrastive_loss(embeddings[:2], groups, 0.05))
    for chunk in (4, 8):  # with and without the recomputation
        model.zero_grad()
        loss = grad_cache_step(encode, streams + [empty], groups, 0.05, chunk, lambda t: t.backward())
        torch.testing.assert_close(loss, contrastive_loss(embeddings[:2], groups, 0.05).detach())


def test_word_loss_matches_hand_computation():
    """Per row: the mean, over the text's distinct non-special tokens, of minus their log-probability under a
    softmax of scale * states @ E.T; padding, special tokens and repeats count once or not at all."""
    torch.manual_seed(0)
    E, states = torch.randn(6, 3), torch.randn(3, 3)
    ids = torch.tensor([[0, 2, 4, 4, 5], [0, 0, 2, 1, 3], [0, 0, 0, 2, 2]])  # 0 pad (left), 2 bos
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    logp = (4.0 * states @ E.T).log_softmax(-1)
    expected = torch.stack([-(logp[0, 4] + logp[0, 5]) / 2, -(logp[1, 1] + logp[1, 3]) / 2, torch.tensor(0.0)])
    torch.testing.assert_close(word_loss(states, E, ids, mask, ignore_ids=(0, 2), scale=4.0), expected)
    # a token at a padded position is not the text's: with pad 0 no longer special, rows 1 and 2 keep their scores
    got = word_loss(states, E, ids, mask, ignore_ids=(2,), scale=4.0)
    torch.testing.assert_close(got[1:], expected[1:])
    # a word head that points at the text's tokens scores lower than one pointing elsewhere
    right = torch.stack([E[4] + E[5], E[1] + E[3], E[0]])
    wrong = torch.stack([E[1] + E[3], E[4] + E[5], E[0]])
    assert (word_loss(right, E, ids, mask, (0, 2))[:2] < word_loss(wrong, E, ids, mask, (0, 2))[:2]).all()


class _OneProcess:
    """The accelerator's part in forward_backward, for one process."""

    num_processes = 1

    def backward(self, loss, **kwargs):
        loss.backward(**kwargs)

    def unwrap_model(self, model):
        return model

    def no_sync(self, model):
        return contextlib.nullcontext()


def _word_step(model, streams, groups, weight: float, chunk: int):
    """contrastive.forward_backward's loss and gradients (the task's own step) with the word loss at `weight`."""
    from gemma_embed.contrastive import forward_backward

    cfg = SimpleNamespace(word_loss_weight=weight, grad_cache_chunk=chunk, temperature=0.05, symmetric=True,
                          matryoshka=lambda: ())
    model.zero_grad()
    with autocast():
        loss = forward_backward(cfg, _OneProcess(), model, streams, groups)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.precision
@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_the_word_loss_term_is_exact_under_grad_cache(make_model, tokenizer, chunk):
    """The task's loss with the word term: the contrastive loss plus weight times the mean word loss of every row
    of every stream; GradCache in chunks of 1, 3 and 5 gives the same loss and gradients (the word head's too)."""
    model, streams, groups = _tiny_setup(make_model, tokenizer, dropout=0.0)
    model.attach_word_head()
    with torch.no_grad():
        model.word_head.weight.normal_(std=0.5)
    loss, reference = _word_step(model, streams, groups, 0.5, chunk=0)
    assert reference["word_head.weight"].abs().max() > 0
    plain, _ = _word_step(model, streams, groups, 0.0, chunk=0)
    with torch.no_grad(), autocast():
        ids = torch.cat([s["input_ids"] for s in streams])
        mask = torch.cat([s["attention_mask"] for s in streams])
        _, states = model(ids, mask, return_word_states=True)
        words = word_loss(states, model.model.get_input_embeddings().weight, ids, mask, (0, 1, 2)).mean()
    assert_scalars_close(loss - plain, 0.5 * words)
    cached, grads = _word_step(model, streams, groups, 0.5, chunk=chunk)
    _assert_same_step(cached, loss, grads, reference)
