"""The hierarchical softmax (model.hs): word2vec.c's Huffman tree, the loss against its formula, the
written-out gradients against autograd, both training loops against the formula, and the task end to end."""

from __future__ import annotations

import heapq
import json
import math

import numpy as np
import pytest
import torch
from test_word2vec import TINY, _run_kernel, _vectors

from dlcli.models import word2vec_hogwild as hogwild
from dlcli.models.huffman import huffman_tree
from dlcli.models.word2vec import SkipGram, batched_update, hierarchical_softmax_grads

from conftest import assert_exit_2, sets

needs_numba = pytest.mark.skipif(not hogwild.available(), reason="numba is not installed")

COUNTS = np.array([5, 3, 2, 1])


def test_huffman_tree_of_a_hand_worked_example():
    # word2vec.c's merges for counts 5 3 2 1 (inner nodes numbered as created, the root is V - 2 = 2):
    #   node 0 = {1 (code 0), 2 (code 1)} = 3;  node 1 = {node 0 (0), 3 (1)} = 6 (the tie 3 vs 3 takes
    #   the inner node first);  node 2 = {5 (0), node 1 (1)} = 11, the root.
    tree = huffman_tree(COUNTS)
    assert tree.path(0) == ([0], [2])
    assert tree.path(1) == ([1, 1], [2, 1])
    assert tree.path(2) == ([1, 0, 1], [2, 1, 0])
    assert tree.path(3) == ([1, 0, 0], [2, 1, 0])
    # the vocabulary in any order gives each word the same path (a continued run appends words)
    shuffled = huffman_tree(COUNTS[[2, 0, 3, 1]])
    assert [shuffled.path(i) for i in range(4)] == [tree.path(w) for w in (2, 0, 3, 1)]


def _optimal_cost(counts) -> int:
    """sum(count * code length) of any Huffman code: the sum of the merged weights."""
    heap, cost = list(counts), 0
    heapq.heapify(heap)
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


def test_huffman_codes_are_prefix_free_optimal_and_shorter_for_frequent_words():
    counts = (10_000 / np.arange(1, 201) ** 1.1).astype(np.int64) + 1  # Zipf-like, with ties in the tail
    tree = huffman_tree(counts)
    codes = ["".join(map(str, tree.path(w)[0])) for w in range(len(counts))]
    assert len(set(codes)) == len(codes)
    assert not any(a != b and b.startswith(a) for a in codes for b in codes)
    assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0)  # a full binary tree
    assert int((counts * tree.lengths).sum()) == _optimal_cost(counts)
    order = np.argsort(-counts, kind="stable")
    assert np.all(np.diff(tree.lengths[order]) >= 0)  # more frequent: never longer
    # each word's path starts at the root and names distinct inner nodes 0..V-2
    points = [tree.path(w)[1] for w in range(len(counts))]
    assert all(p[0] == len(counts) - 2 and len(set(p)) == len(p) and max(p) <= len(counts) - 2 for p in points)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SkipGram(len(COUNTS), 5)
    with torch.no_grad():
        m.in_vectors.normal_(0, 0.5)
        m.out_vectors.normal_(0, 0.5)
    return m


def _tree_tensors(counts=COUNTS):
    tree = huffman_tree(counts)
    return torch.from_numpy(tree.codes).long(), torch.from_numpy(tree.points)


def test_hierarchical_softmax_loss_is_its_formula(model):
    codes, points = _tree_tensors()
    tree = huffman_tree(COUNTS)
    targets, contexts = torch.tensor([1, 3, 0]), torch.tensor([2, 0, 3])
    expected = 0.0
    for i, o in zip(targets.tolist(), contexts.tolist(), strict=True):
        for code, node in zip(*tree.path(o), strict=True):
            f = float(model.out_vectors[node].detach() @ model.in_vectors[i].detach())
            expected += -math.log(1 / (1 + math.exp(-(1 - 2 * code) * f)))
    loss = model.hierarchical_softmax_loss(targets, contexts, codes, points)
    assert loss.item() == pytest.approx(expected / 3, rel=1e-5)


def test_hierarchical_softmax_probabilities_sum_to_one(model):
    codes, points = _tree_tensors()
    nll = [model.hierarchical_softmax_loss(torch.tensor([1]), torch.tensor([w]), codes, points) for w in range(4)]
    assert sum(math.exp(-x.item()) for x in nll) == pytest.approx(1.0, rel=1e-5)


def test_hierarchical_softmax_gradients_equal_autograd(model):
    codes, points = _tree_tensors()
    target, context = 1, 2
    model.hierarchical_softmax_loss(torch.tensor([target]), torch.tensor([context]), codes, points).backward()
    code, point = huffman_tree(COUNTS).path(context)
    d_in, d_out = hierarchical_softmax_grads(model.in_vectors.detach(), model.out_vectors.detach(), target, code, point)
    assert torch.allclose(model.in_vectors.grad[target], d_in, atol=1e-6)
    expected_out = torch.zeros_like(model.out_vectors).index_add_(0, torch.tensor(point), d_out)
    assert torch.allclose(model.out_vectors.grad, expected_out, atol=1e-6)


def _formula_steps(syn0, syn1, pairs, lr, stale):
    """SGD on (target, context) pairs with the written-out gradients: sequential, or all from the start (stale)."""
    want0, want1, loss = syn0.clone(), syn1.clone(), 0.0
    tree = huffman_tree(COUNTS)
    for target, context in pairs:
        read0, read1 = (syn0, syn1) if stale else (want0.clone(), want1.clone())
        code, point = tree.path(target)
        for c, n in zip(code, point, strict=True):
            loss += torch.nn.functional.softplus(-(1 - 2 * c) * (read1[n] @ read0[context])).item()
        g_in, g_out = hierarchical_softmax_grads(read0, read1, context, code, point)
        want0[context] -= lr * g_in
        want1.index_add_(0, torch.tensor(point), -lr * g_out)
    return want0, want1, loss


@needs_numba
@pytest.mark.parametrize("sg", [True, False])
@pytest.mark.parametrize("own", [(0, 0), (1, 3), (0, 3)], ids=["shared", "root-and-child-own", "all-own"])
def test_hogwild_hierarchical_step_equals_the_gradient_formula(sg, own):
    # own: the inner nodes the call trains in its own copy of their rows (written back after): the same steps
    syn0, syn1 = _vectors()
    got0, got1, loss, predictions = _run_kernel(syn0, syn1, [0, 1], COUNTS, negative=0, sg=sg, hs=True, own=own)
    # window 1, two words: each predicts the other from its input vector (CBOW's mean of one word is that word)
    want0, want1, want_loss = _formula_steps(syn0, syn1, [(0, 1), (1, 0)], 0.1, stale=False)
    assert predictions == 2 and loss == pytest.approx(want_loss, rel=1e-5)
    torch.testing.assert_close(got0, want0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got1, want1, rtol=1e-5, atol=1e-6)


def test_each_threads_own_rows_are_the_busiest_inner_nodes():
    counts = (10_000 / np.arange(1, 3001) ** 1.05).astype(np.int64) + 1  # Zipf-like, 3000 words
    tree = huffman_tree(counts)
    hits = np.zeros(len(counts) - 1, np.int64)  # how many corpus words pass through each inner node
    for word, count in enumerate(counts):
        hits[tree.path(word)[1]] += count
    np.testing.assert_array_equal(tree.node_counts, hits)
    lo, hi = hogwild.hot_nodes(tree)
    assert hi == len(counts) - 1 and 0 < lo < hi  # up to the root, not every node
    busy = hits >= hogwild.HOT_SHARE * counts.sum()
    assert busy[lo:hi].all() and not busy[:lo].any()
    assert hogwild.hot_nodes(huffman_tree(counts[:1])) == (0, 0)


@pytest.mark.skipif(not hogwild.available(), reason="numba is not installed")
def test_two_threads_train_their_own_copies_of_the_busiest_rows_and_keep_their_mean(monkeypatch):
    # hogwild_step hands each thread a copy of the hot nodes' rows (hogwild.hot_nodes), which it trains in
    # place, and writes their mean back after the batch; the other rows both threads train in syn1 itself.
    from dlcli.api import load_config
    from dlcli.runtime import create_runtime
    from dlcli.tasks import word2vec

    overrides = [*TINY, "model.hs=1", "model.negative=0", "model.impl=hogwild", "train.workers=2"]
    _, cfg = load_config("word2vec", overrides)
    job = word2vec.build(cfg, create_runtime(cfg.train, "cpu"))
    copies, real_kernel = [], hogwild.train_sentences

    def kernel_keeping_its_copy(*args):
        copies.append(args[-2])  # own_rows: this call's copy, trained in place
        return real_kernel(*args)

    monkeypatch.setattr(hogwild, "train_sentences", kernel_keeping_its_copy)
    syn1 = job.model.out_vectors.data.numpy()
    before = syn1.copy()
    job.update_step(job.model, next(iter(job.train_data.batches(0))), 0.025)

    assert len(copies) == 2
    inner_nodes = len(job.extra["vocab_words"]) - 1  # the copies end at the root, the last inner node
    lo = inner_nodes - len(copies[0])
    hot = slice(lo, inner_nodes)
    assert 0 < len(copies[0]) < lo  # some rows are copied, most are not
    for copy in copies:  # each thread moved its own copy, differently
        assert not np.array_equal(copy, before[hot])
    assert not np.array_equal(copies[0], copies[1])
    np.testing.assert_array_equal(syn1[hot], np.mean(copies, axis=0))
    assert not np.array_equal(syn1[:lo], before[:lo])  # the shared rows trained too


@pytest.mark.parametrize("sg", [True, False])
def test_batched_hierarchical_step_equals_the_summed_formula(sg):
    syn0, syn1 = _vectors()
    model = SkipGram(4, 6)
    model.in_vectors.data.copy_(syn0)
    model.out_vectors.data.copy_(syn1)
    loss = batched_update(
        model,
        torch.tensor([0, 1]),
        torch.tensor([2]),
        torch.ones(4),
        torch.ones(4),
        torch.Generator().manual_seed(0),
        sg=sg,
        window=1,
        negative=0,
        lr=0.1,
        tree=_tree_tensors(),
    )
    want0, want1, want_loss = _formula_steps(syn0, syn1, [(0, 1), (1, 0)], 0.1, stale=True)
    torch.testing.assert_close(model.in_vectors.data, want0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.out_vectors.data, want1, rtol=1e-5, atol=1e-6)
    assert loss.item() == pytest.approx(want_loss / 2, rel=1e-5)


# --------------------------------------------------------------------------- the task


def _train(cli, out, *items):
    return cli("train", "word2vec", "--out", out, "--quiet", *sets(*TINY[1:], "model.hs=1", "model.negative=0", *items))


@pytest.mark.parametrize("impl", ["hogwild", "batched"])
def test_hierarchical_softmax_trains_and_the_loss_falls(cli, tmp_path, impl):
    if impl == "hogwild" and not hogwild.available():
        pytest.skip("numba is not installed")

    # From ~log(2) per node of the ~8-node paths; the planted corpus's contexts are mostly noise, so the
    # loss falls only a few percent while the analogies are learnt (20,000 sentences: 99.9%, as negative sampling).
    result = _train(cli, tmp_path / "run", f"model.impl={impl}", "train.epochs=6")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < losses[0] * 0.95


def test_hs_with_negative_sampling_is_exit_2(cli, tmp_path):
    result = cli("train", "word2vec", "--out", tmp_path / "r", *sets("model.hs=1", "model.negative=5"))
    assert_exit_2(result, "model.hs=1 with model.negative=5", "model.negative=0")
    assert not (tmp_path / "r" / "checkpoints").exists()


@needs_numba
def test_hs_resume_with_one_worker_reproduces_the_uninterrupted_run(cli, tmp_path):
    assert _train(cli, tmp_path / "full", "train.workers=1").exit_code == 0
    assert _train(cli, tmp_path / "part", "train.workers=1", "train.max_steps=3").exit_code == 0
    result = cli(
        "train",
        "word2vec",
        "--resume",
        "--out",
        tmp_path / "part",
        "--quiet",
        *sets(*TINY[1:], "model.hs=1", "model.negative=0", "train.workers=1"),
    )
    assert result.exit_code == 0, result.output
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # a resume cannot switch the objective: out_vectors' rows would change meaning
    switched = cli("train", "word2vec", "--resume", "--out", tmp_path / "part", *sets(*TINY[1:], "model.hs=0"))
    assert_exit_2(switched, "model.hs: 1 -> 0")
