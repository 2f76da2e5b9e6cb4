"""Word2vec training: the Hogwild kernel and the batched step against the formulas, and the task end to end."""

import json

import numpy as np
import pytest
import torch

from dlcli.models import word2vec_hogwild as hogwild
from dlcli.models.huffman import huffman_tree
from dlcli.models.word2vec import SkipGram, batched_update, negative_sampling_grads, softmax_grads

needs_numba = pytest.mark.skipif(not hogwild.available(), reason="numba is not installed")


def _vectors(vocab=4, dim=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, dim, generator=gen) * 0.3, torch.randn(vocab, dim, generator=gen) * 0.3


def _run_kernel(syn0, syn1, sentence, counts, negative, sg=True, window=1, lr=0.1, hs=False, own=(0, 0)):
    """One kernel call; own: the range of syn1's rows it trains in its own copy, written back after."""
    syn0, syn1 = syn0.numpy().copy(), syn1.numpy().copy()
    own_rows = syn1[own[0] : own[1]].copy()
    ids = np.array(sentence, dtype=np.int32)
    tree = huffman_tree(np.array(counts) if hs else np.array(counts)[:0])
    loss, predictions, kept = hogwild.train_sentences(
        syn0,
        syn1,
        ids,
        np.array([0, len(ids)]),
        np.arange(len(syn0), dtype=np.int32),
        np.ones(len(syn0), np.float32),
        *hogwild.alias_table(np.array(counts), 0.75),
        tree.codes,
        tree.points,
        syn0[:0],  # no n-gram rows: word2vec
        np.zeros(len(syn0) + 1, np.int64),
        np.zeros(0, np.int64),
        sg,
        hs,
        negative,
        window,
        lr,
        1,
        own_rows,
        own[0],
    )
    syn1[own[0] : own[1]] = own_rows
    return torch.from_numpy(syn0), torch.from_numpy(syn1), loss, predictions


@needs_numba
def test_hogwild_softmax_step_equals_the_gradient_formula():
    syn0, syn1 = _vectors()
    got0, got1, loss, predictions = _run_kernel(syn0, syn1, [0, 1], [1, 1, 1, 1], negative=0)
    # word2vec.c order: position 0 (target 0, its context 1's input vector), then position 1
    want0, want1, lr, want_loss = syn0.clone(), syn1.clone(), 0.1, 0.0
    for target, context in ((0, 1), (1, 0)):
        want_loss += -torch.log_softmax(want1 @ want0[context], 0)[target].item()
        g_in, g_out = softmax_grads(want0, want1, context, target)
        want0[context] -= lr * g_in
        want1 -= lr * g_out
    assert predictions == 2 and loss == pytest.approx(want_loss, rel=1e-5)
    torch.testing.assert_close(got0, want0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got1, want1, rtol=1e-5, atol=1e-6)


@needs_numba
def test_hogwild_negative_sampling_step_equals_the_gradient_formula():
    syn0, syn1 = _vectors()
    # Only word 3 has noise mass, so every noise draw is word 3: the draws are known.
    got0, got1, loss, _ = _run_kernel(syn0, syn1, [0, 1], [0, 0, 0, 7], negative=2)
    want0, want1, lr = syn0.clone(), syn1.clone(), 0.1
    for target, context in ((0, 1), (1, 0)):
        g_in, g_out = negative_sampling_grads(want0, want1, context, target, torch.tensor([3, 3]))
        # sequential: the first noise update lands before the second draw reads the row
        want0_before = want0[context].clone()
        for k, word in enumerate([target, 3, 3]):
            label = 1.0 if k == 0 else 0.0
            f = want1[word] @ want0_before
            g = (label - torch.sigmoid(f)) * lr
            want0[context] += g * want1[word]
            want1[word] += g * want0_before
    torch.testing.assert_close(got0, want0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got1, want1, rtol=1e-5, atol=1e-6)
    # with distinct noise rows the sequential updates equal the summed formula (checked in test_word2vec_model)
    assert g_in.shape == (6,) and g_out.shape == (3, 6)


def test_batched_step_equals_the_summed_formula():
    syn0, syn1 = _vectors()
    model = SkipGram(4, 6)
    model.in_vectors.data.copy_(syn0)
    model.out_vectors.data.copy_(syn1)
    noise_cdf = torch.tensor([0.0, 0.0, 0.0, 1.0])  # every noise draw is word 3
    loss = batched_update(
        model,
        torch.tensor([0, 1]),
        torch.tensor([2]),
        torch.ones(4),
        noise_cdf,
        torch.Generator().manual_seed(0),
        sg=True,
        window=1,
        negative=2,
        lr=0.1,
    )
    want0, want1 = syn0.clone(), syn1.clone()
    want_loss = 0.0
    for target, context in ((0, 1), (1, 0)):  # both read the vectors before either update
        g_in, g_out = negative_sampling_grads(syn0, syn1, context, target, torch.tensor([3, 3]))
        want0[context] -= 0.1 * g_in
        for word, g in zip([target, 3, 3], g_out, strict=True):
            want1[word] -= 0.1 * g
        s = syn1[[target, 3, 3]] @ syn0[context]
        want_loss += (torch.nn.functional.softplus(-s[0]) + torch.nn.functional.softplus(s[1:]).sum()).item()
    torch.testing.assert_close(model.in_vectors.data, want0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.out_vectors.data, want1, rtol=1e-5, atol=1e-6)
    assert loss.item() == pytest.approx(want_loss / 2, rel=1e-5)


def test_batched_dynamic_window_stays_inside_sentences():
    model = SkipGram(10, 4)
    before = model.out_vectors.data.clone()
    # two sentences of one word each: no pair may cross the boundary, so nothing trains
    loss = batched_update(
        model,
        torch.tensor([1, 2]),
        torch.tensor([1, 1]),
        torch.ones(10),
        torch.linspace(0.1, 1, 10),
        torch.Generator().manual_seed(0),
        sg=True,
        window=5,
        negative=5,
        lr=0.1,
    )
    assert loss.item() == 0.0 and torch.equal(model.out_vectors.data, before)


TINY = ["task=word2vec", "data.planted_sentences=3000", "model.vector_size=20", "train.epochs=2", "train.log_every=5"]


def _train(cli, out, *sets):
    args = ["train", "word2vec", "--out", str(out), "--quiet"]
    for item in (*TINY, *sets):
        if not item.startswith("task="):
            args += ["--set", item]
    return cli(*args)


@pytest.mark.parametrize("impl", ["hogwild", "batched"])
def test_train_writes_vectors_gensim_reads_and_the_loss_falls(cli, tmp_path, impl):
    if impl == "hogwild" and not hogwild.available():
        pytest.skip("numba is not installed")
    result = _train(cli, tmp_path / "run", f"model.impl={impl}")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    losses = [
        r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"
    ]
    assert losses[-1] < losses[0] * 0.9
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["counts"] == sorted(vocab["counts"], reverse=True) and "queen" in vocab["words"]
    gensim = pytest.importorskip("gensim")
    for name, binary in (("vectors.txt", False), ("vectors.bin", True)):
        kv = gensim.models.KeyedVectors.load_word2vec_format(str(run / name), binary=binary)
        assert kv.vector_size == 20 and kv.index_to_key == vocab["words"]
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["metrics"]["val"]["analogy_accuracy"] <= 1


@needs_numba
def test_resume_with_one_worker_reproduces_the_uninterrupted_run(cli, tmp_path):
    assert _train(cli, tmp_path / "full", "train.workers=1").exit_code == 0
    assert _train(cli, tmp_path / "part", "train.workers=1", "train.max_steps=3").exit_code == 0
    result = cli(
        "train",
        "word2vec",
        "--resume",
        "--out",
        str(tmp_path / "part"),
        "--quiet",
        *[x for s in TINY[1:] + ["train.workers=1"] for x in ("--set", s)],
    )
    assert result.exit_code == 0, result.output
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in full:
        assert torch.equal(full[name], resumed[name]), name


def test_text_corpus_without_a_path_is_exit_2(cli, tmp_path):
    result = cli("train", "word2vec", "--out", str(tmp_path / "r"), "--set", "data.dataset=text")
    assert result.exit_code == 2 and "data.path" in result.output and "Traceback" not in result.output


def test_word2vec_refuses_gradient_accumulation(cli, tmp_path):
    result = cli("train", "word2vec", "--out", str(tmp_path / "r"), "--set", "train.grad_accum=2")
    assert result.exit_code == 2 and "grad_accum" in result.output


def test_alias_table_draws_the_unigram_power_distribution():
    counts = np.array([1000, 300, 50, 7, 1, 0])
    prob, alias = hogwild.alias_table(counts, 0.75)
    # the probability of each word: its own column's share plus what other columns alias to it
    v = len(counts)
    implied = np.zeros(v)
    for i in range(v):
        implied[i] += prob[i] / v
        implied[alias[i]] += (1 - prob[i]) / v
    want = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(implied, want, atol=1e-6)


@needs_numba
def test_subsampling_keeps_each_word_at_its_rate():
    # 10^7 draws of words kept with probability 0.002 (as "the" at sample=1e-4) and 0.3
    raw = np.arange(10_000, dtype=np.int32)  # one MAX_SENTENCE piece
    remap = raw.copy()
    sentence = np.empty(len(raw), np.int64)
    for p in (0.002, 0.3):
        keep = np.full(len(raw), p, np.float32)
        state, kept = np.uint64(1), 0
        for _ in range(1000):
            n, state = hogwild._subsample(raw, remap, keep, sentence, state)
            kept += n
        assert kept / (1000 * len(raw)) == pytest.approx(p, rel=0.05)


def test_text8_offline_says_what_to_download_and_where(cli, tmp_path):
    result = cli("train", "word2vec_text8", "--out", str(tmp_path / "r"), "--set", f"data.root={tmp_path / 'data'}")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "mattmahoney.net/dc/text8.zip" in result.output and "text8.zip" in result.output


def test_text8_zip_in_the_data_folder_is_checked_and_extracted(monkeypatch, tmp_path):
    import zipfile

    from dlcli.errors import DlError
    from dlcli.tasks import word2vec

    root = tmp_path / "data"
    root.mkdir()
    with zipfile.ZipFile(root / "text8.zip", "w") as z:
        z.writestr("text8", " anarchism originated as a term of abuse" * 10)
    monkeypatch.setattr(word2vec, "TEXT8_ZIP_BYTES", (root / "text8.zip").stat().st_size)
    path = word2vec.download_text8(root)
    assert path.read_text().split()[:3] == ["anarchism", "originated", "as"]
    path.unlink()
    monkeypatch.setattr(word2vec, "TEXT8_ZIP_BYTES", 31_344_016)
    with pytest.raises(DlError, match="delete it"):
        word2vec.download_text8(root)


def test_auto_pairs_per_update_bounds_the_busiest_noise_row():
    from dlcli.tasks.word2vec import MAX_ROW_HITS, auto_pairs_per_update

    zipf = (1e6 / np.arange(1, 70_001)).astype(np.int64)  # a Wikipedia-sized vocabulary
    small = zipf[:500]  # the built-in corpus's size: its frequent words are drawn far more often
    for counts in (zipf, small):
        pairs = auto_pairs_per_update(counts, 5, 0.75)
        p_max = counts.max() ** 0.75 / (counts**0.75).sum()
        assert pairs * 5 * p_max <= MAX_ROW_HITS < 2 * pairs * 5 * p_max
    assert auto_pairs_per_update(small, 5, 0.75) < auto_pairs_per_update(zipf, 5, 0.75)


def test_auto_pairs_per_update_bounds_the_busiest_ngram_row():
    from dlcli.models.subwords import subword_table
    from dlcli.tasks.word2vec import MAX_ROW_HITS, auto_pairs_per_update

    # Every word ends in "ing": its n-grams' rows are in every prediction, busier than any noise row.
    words = [f"{a}{b}ing" for a in "bcdfghklmnprstvwz" for b in "aeiou"]
    counts = (1e5 / np.arange(1, len(words) + 1)).astype(np.int64)
    table = subword_table(words, 3, 6, 1000)
    pairs = auto_pairs_per_update(counts, 5, 0.75, subwords=table)
    holder = np.repeat(np.arange(len(words)), table.counts)
    busiest = np.bincount(table.ids, weights=counts[holder] / counts.sum()).max()
    assert busiest >= 1.0  # "ng>" is in every word
    assert pairs * busiest <= MAX_ROW_HITS < 2 * pairs * busiest
    assert pairs < auto_pairs_per_update(counts, 5, 0.75)  # without subwords only the noise rows bound it


def test_auto_pairs_per_update_counts_a_cbow_windows_input_rows():
    from dlcli.tasks.word2vec import MAX_ROW_HITS, auto_pairs_per_update

    # A CBOW prediction adds its update to each of its ~window + 1 context rows: the most frequent word's
    # input row, second to the noise rows in skip-gram, is then the busiest.
    zipf = (1e6 / np.arange(1, 70_001)).astype(np.int64)
    skip_gram = auto_pairs_per_update(zipf, 5, 0.75)
    cbow = auto_pairs_per_update(zipf, 5, 0.75, inputs_per_prediction=6)
    busiest_input = 6 * zipf.max() / zipf.sum()
    assert busiest_input > 5 * zipf.max() ** 0.75 / (zipf**0.75).sum()  # busier than the likeliest noise row
    assert cbow * busiest_input <= MAX_ROW_HITS < 2 * cbow * busiest_input
    assert cbow < skip_gram


def test_missing_questions_file_is_exit_2(cli, tmp_path):
    result = cli("train", "word2vec", "--out", str(tmp_path / "r"), "--set", f"data.questions={tmp_path / 'nope.txt'}")
    assert result.exit_code == 2 and "data.questions" in result.output and "Traceback" not in result.output
