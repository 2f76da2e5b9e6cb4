"""The skip-gram objectives equal their formulas, and the written-out gradients equal autograd's."""

import math

import pytest
import torch

from dlcli.models.word2vec import SkipGram, negative_sampling_grads, noise_distribution, softmax_grads

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

V, D = 7, 4


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SkipGram(V, D)
    with torch.no_grad():  # random outputs too (the init has them at zero), so every term matters
        m.out_vectors.normal_(0, 0.5)
        m.in_vectors.normal_(0, 0.5)
    return m


def dot(a, b):
    return sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))


def sigma(x):
    return 1 / (1 + math.exp(-x))


def test_softmax_loss_is_minus_log_of_the_softmax_formula(model):
    targets, contexts = torch.tensor([1, 3]), torch.tensor([2, 0])
    expected = 0.0
    for i, o in zip(targets.tolist(), contexts.tolist(), strict=True):
        scores = [dot(model.out_vectors[w], model.in_vectors[i]) for w in range(V)]
        expected += -math.log(math.exp(scores[o]) / sum(math.exp(s) for s in scores))
    assert model.softmax_loss(targets, contexts).item() == pytest.approx(expected / 2, rel=1e-5)


def test_negative_sampling_loss_is_its_formula(model):
    targets, contexts, negatives = torch.tensor([1, 3]), torch.tensor([2, 0]), torch.tensor([[4, 5, 5], [6, 1, 2]])
    expected = 0.0
    for i, o, ks in zip(targets.tolist(), contexts.tolist(), negatives.tolist(), strict=True):
        v_i = model.in_vectors[i]
        expected += -math.log(sigma(dot(model.out_vectors[o], v_i)))
        expected += -sum(math.log(sigma(-dot(model.out_vectors[k], v_i))) for k in ks)
    assert model.negative_sampling_loss(targets, contexts, negatives).item() == pytest.approx(expected / 2, rel=1e-5)


def test_negative_sampling_gradients_equal_autograd(model):
    target, context, negatives = 1, 2, torch.tensor([4, 5, 5])
    loss = model.negative_sampling_loss(torch.tensor([target]), torch.tensor([context]), negatives[None])
    loss.backward()
    d_in, d_out = negative_sampling_grads(
        model.in_vectors.detach(), model.out_vectors.detach(), target, context, negatives
    )
    assert torch.allclose(model.in_vectors.grad[target], d_in, atol=1e-6)
    expected_out = torch.zeros(V, D).index_add_(0, torch.cat([torch.tensor([context]), negatives]), d_out)
    assert torch.allclose(model.out_vectors.grad, expected_out, atol=1e-6)


def test_softmax_gradients_equal_autograd(model):
    target, context = 3, 0
    model.softmax_loss(torch.tensor([target]), torch.tensor([context])).backward()
    d_in, d_out = softmax_grads(model.in_vectors.detach(), model.out_vectors.detach(), target, context)
    assert torch.allclose(model.in_vectors.grad[target], d_in, atol=1e-6)
    assert torch.allclose(model.out_vectors.grad, d_out, atol=1e-6)


def test_noise_distribution_is_unigram_to_the_three_quarters():
    p = noise_distribution(torch.tensor([16, 1, 0]))
    assert p.tolist() == pytest.approx([8 / 9, 1 / 9, 0.0])
