"""Word2vec (Mikolov et al. 2013): skip-gram or CBOW; negative sampling, the hierarchical softmax or the full softmax.

    dl train configs/word2vec.yaml                 # the built-in corpus with planted relations
    dl analogy king man woman --run runs/word2vec  # queen
    dl train configs/word2vec_text8.yaml           # text8, or --set data.path=FILE

The recipe uses gensim 4's names (model.sg, vector_size, window, negative, ns_exponent;
data.min_count, sample, max_vocab_size); optim.lr is gensim's alpha and schedule.min_lr its
min_alpha, reached linearly over the run. Two implementations of the same SGD:

    hogwild  (CPU)  word2vec.c's loop compiled by numba, `train.workers` threads sharing the
                    vectors without locks (models/word2vec_hogwild.py)
    batched  (GPU)  all pairs of a batch of `data.batch_words` words at once: gathers, batched
                    dot products and index_add_ scatters (models/word2vec.py)

Either way the weights are updated by the task's own step (Job.update_step), in fp32: updates
of 1e-4 to word vectors of norm ~1 would vanish in bf16/fp16.

model.subwords trains fastText (Bojanowski et al. 2017) in both: a word's input vector is the mean of
its row and its character n-grams' rows (models/subwords.py), and the run exports the composed
vectors with the n-gram matrix (ngrams.npy) that gives unseen words theirs:

    dl train configs/fasttext_wiki.yaml
    dl similar unfriendliness --run runs/fasttext-wiki
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.checkpoint import Record
from dlcli.config import to_dict
from dlcli.data.corpus import EncodedCorpus, Vocabulary, cached_encode, encode
from dlcli.data.loaders import mix_seed
from dlcli.data.textfile import read_text
from dlcli.errors import DlError
from dlcli.files import write_json_atomic
from dlcli.models import word2vec_hogwild as hogwild
from dlcli.models.huffman import HuffmanTree, huffman_tree
from dlcli.models.subwords import SubwordTable, compose, subword_table
from dlcli.models.word2vec import FastText, SkipGram, SubwordRows, batched_update
from dlcli.runner import Job
from dlcli.runtime import Runtime

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.word2vec_config import Config, Word2VecData, Word2VecModel, Word2VecTrain  # noqa: F401

NAME = "word2vec"
RUN_KIND = "word vectors"  # in the error for a run of another task


# --------------------------------------------------------------------------- data


def load_corpus(data: Word2VecData, seed: int) -> EncodedCorpus:
    if data.dataset == "planted":
        from dlcli.data.planted import planted_sentences

        return encode(line.split() for line in planted_sentences(seed, data.planted_sentences))
    cache = Path(data.root) / "cache"
    if data.dataset == "text8":
        path = Path(data.path) if data.path else download_text8(Path(data.root))
    else:
        if not data.path:
            raise DlError(
                "data.dataset is 'text' but data.path is not set: give a text file or folder, e.g. --set data.path=corpus.txt"
            )
        path = Path(data.path)
    return cached_encode(path, cache, data.token_pattern)


TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_ZIP_BYTES = 31_344_016  # the published size; the zip's CRC-32 checks the content as it is extracted


def download_text8(root: Path) -> Path:
    """root/text8 (100,000,000 bytes), from text8.zip (downloaded when online)."""
    import zipfile

    from dlcli.data.download import fetch

    text8 = root / "text8"
    if text8.is_file():
        return text8
    archive = fetch(TEXT8_URL, root / "text8.zip", what="The text8 corpus")
    if archive.stat().st_size != TEXT8_ZIP_BYTES:
        raise DlError(
            f"{archive} has {archive.stat().st_size} bytes, text8.zip has {TEXT8_ZIP_BYTES}: delete it and download it again."
        )
    try:
        with zipfile.ZipFile(archive) as z:
            z.extract("text8", root)  # raises BadZipFile on a CRC mismatch
    except (zipfile.BadZipFile, KeyError) as e:
        raise DlError(f"{archive} is not text8.zip ({e}): delete it and download it again.") from e
    return text8


@dataclass
class Batch:
    lo: int  # first sentence
    hi: int  # one past the last sentence
    epoch: int
    index: int
    words: int  # raw corpus words (what words/s counts, as gensim does)


class CorpusBatches:
    """The corpus in order (word2vec does not shuffle), cut into batches of about `batch_words` words."""

    def __init__(self, corpus: EncodedCorpus, batch_words: int):
        self.corpus = corpus
        targets = np.arange(batch_words, corpus.n_words, batch_words)
        cuts = np.unique(np.searchsorted(corpus.bounds, targets, side="left"))
        self.cuts = np.concatenate([[0], cuts[(cuts > 0) & (cuts < corpus.n_sentences)], [corpus.n_sentences]])

    def __len__(self) -> int:
        return len(self.cuts) - 1

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        bounds = self.corpus.bounds
        for i in range(start, len(self)):
            lo, hi = int(self.cuts[i]), int(self.cuts[i + 1])
            yield Batch(lo, hi, epoch, i, int(bounds[hi] - bounds[lo]))


class Questions:
    """The validation split: one batch holding the analogy questions."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def __len__(self) -> int:
        return 1 if self.lines else 0

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[str]]:
        if self.lines and start == 0:
            yield self.lines


# --------------------------------------------------------------------------- training steps


@dataclass
class Tables:
    """What every step reads: corpus ids -> vocabulary ids, keep probabilities, the noise table."""

    ids: np.ndarray
    bounds: np.ndarray
    remap: np.ndarray
    keep: np.ndarray
    noise_prob: np.ndarray  # the noise distribution as an alias table (hogwild)
    noise_alias: np.ndarray
    noise_cdf: np.ndarray  # and as cumulative probabilities (batched)
    tree: HuffmanTree  # the hierarchical softmax's paths (model.hs); a one-row placeholder without it
    hot_nodes: tuple[int, int]  # the rows of tree's busiest inner nodes (hogwild.hot_nodes)
    subwords: SubwordTable  # each word's character n-gram rows (model.subwords); no rows without it


def hogwild_step(cfg: Config, tables: Tables, pool: ThreadPoolExecutor):
    m = cfg.model

    def step(model: SkipGram, batch: Batch, lr: float) -> dict[str, torch.Tensor]:
        syn0, syn1 = model.in_vectors.data.numpy(), model.out_vectors.data.numpy()
        ngrams = model.ngram_vectors.data.numpy() if m.subwords else syn0[:0]  # no n-gram rows: word2vec
        parts = _split(tables.bounds, batch.lo, batch.hi, cfg.train.workers)
        # With several threads, each trains its own copy of the hierarchical softmax's busiest rows
        # (hogwild.hot_nodes); the copies are averaged after the batch, as local SGD averages its workers'
        # models: those rows settle within a batch, and the sum of the threads' moves would overshoot.
        own_lo, own_hi = tables.hot_nodes if m.hs and len(parts) > 1 else (0, 0)
        own_rows = [syn1[own_lo:own_hi].copy() for _ in parts]
        futures = []
        for k, (lo, hi) in enumerate(parts):
            first, last = tables.bounds[lo], tables.bounds[hi]
            ids = np.asarray(tables.ids[first:last])  # a memory-mapped slice: read from disk here
            bounds = tables.bounds[lo : hi + 1] - first
            seed = mix_seed(cfg.seed, batch.epoch, batch.index, k)
            futures.append(
                pool.submit(
                    hogwild.train_sentences,
                    syn0,
                    syn1,
                    ids,
                    bounds,
                    tables.remap,
                    tables.keep,
                    tables.noise_prob,
                    tables.noise_alias,
                    tables.tree.codes,
                    tables.tree.points,
                    ngrams,
                    tables.subwords.offsets,
                    tables.subwords.ids,
                    bool(m.sg),
                    bool(m.hs),
                    m.negative,
                    m.window,
                    lr,
                    seed,
                    own_rows[k],
                    own_lo,
                )
            )
        results = [f.result() for f in futures]
        if own_hi > own_lo:
            syn1[own_lo:own_hi] = np.mean(own_rows, axis=0)
        loss = sum(r[0] for r in results) / max(1, sum(r[1] for r in results))
        return {"loss": torch.tensor(loss)}

    return step


def _split(bounds: np.ndarray, lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Sentences lo..hi in `parts` runs of about equal word counts (some may be empty)."""
    targets = np.linspace(bounds[lo], bounds[hi], parts + 1)[1:-1]
    cuts = np.clip(np.searchsorted(bounds, targets), lo, hi).tolist()
    edges = [lo, *cuts, hi]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


# How many updates of one row a batched update may sum (they are all computed from the same,
# stale, vectors). Measured at lr 0.025: the most frequent noise word drawn ~1600 times per update
# trains as well as Hogwild; ~3200 (1.6M-word Wikipedia, 32768 pairs) and ~5000 (built-in corpus,
# 16384 pairs) diverge. Input rows count too: a subword model's n-gram row is shared by every word
# that holds it, and on the 17.8M-word Wikipedia corpus the busiest (in 10.6% of the words) made
# 16384 pairs diverge in one of three H200 runs, where 8192 trained in both (BENCHMARKS.md).
MAX_ROW_HITS = 1500


def auto_pairs_per_update(
    counts: np.ndarray,
    negative: int,
    ns_exponent: float,
    hs: int = 0,
    subwords: SubwordTable | None = None,
    inputs_per_prediction: float = 1.0,
) -> int:
    """The largest power of two of predictions per update that keeps the busiest row under MAX_ROW_HITS.

    Output rows: a noise word is drawn `negative` times per prediction with its ns_exponent-smoothed
    frequency; the hierarchical softmax's root is on every prediction's path. Input rows: a word's,
    and with subwords each n-gram row's, once for each of a prediction's `inputs_per_prediction`
    context words that holds it, counted with the raw frequencies (an upper bound: subsampling drops
    some inputs). Skip-gram predicts from one context word; CBOW from the whole window, on average
    window + 1 words (`inputs_per_prediction`), each of which takes the prediction's full update."""
    weights = counts.astype(np.float64) ** (ns_exponent if negative else 1.0)
    hits_per_prediction = weights.max() / weights.sum() * max(1, negative)
    if hs:  # every prediction walks from the root: its row is hit by each one
        hits_per_prediction = 1.0
    frequency = counts.astype(np.float64) / counts.sum() * inputs_per_prediction
    input_hits = frequency.max()
    if subwords is not None and len(subwords.ids):
        holder = np.repeat(np.arange(len(counts)), subwords.counts)  # the word each n-gram row entry belongs to
        input_hits = max(input_hits, np.bincount(subwords.ids, weights=frequency[holder]).max())
    hits_per_prediction = max(hits_per_prediction, input_hits)
    return int(2 ** np.clip(np.floor(np.log2(MAX_ROW_HITS / hits_per_prediction)), 8, 16))


def batched_step(cfg: Config, tables: Tables, device: torch.device, pairs_per_update: int):
    m = cfg.model
    remap = torch.from_numpy(tables.remap.astype(np.int64)).to(device)
    keep = torch.from_numpy(tables.keep).to(device)
    noise = torch.from_numpy(tables.noise_cdf).to(device)
    tree = None
    if m.hs:
        tree = (torch.from_numpy(tables.tree.codes).to(device), torch.from_numpy(tables.tree.points).to(device))
    subwords = None
    if m.subwords:
        table = tables.subwords
        subwords = SubwordRows(torch.from_numpy(table.offsets).to(device), torch.from_numpy(table.ids).to(device))

    def step(model: SkipGram, batch: Batch, lr: float) -> dict[str, torch.Tensor]:
        first, last = tables.bounds[batch.lo], tables.bounds[batch.hi]
        ids = torch.from_numpy(np.array(tables.ids[first:last])).to(device)  # a copy: the memmap is read-only
        lengths = torch.from_numpy(np.diff(tables.bounds[batch.lo : batch.hi + 1])).to(device)
        gen = torch.Generator(device).manual_seed(mix_seed(cfg.seed, batch.epoch, batch.index))
        loss = batched_update(
            model,
            remap[ids.long()],
            lengths,
            keep,
            noise,
            gen,
            bool(m.sg),
            m.window,
            m.negative,
            lr,
            pairs_per_update,
            tree,
            subwords,
        )
        return {"loss": loss}

    return step


# --------------------------------------------------------------------------- the task


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe values that fix the vocabulary and the vectors' shape (a resumed run keeps them)."""
    model, data = config["model"], config["data"]
    keys = ("dataset", "path", "token_pattern", "min_count", "max_vocab_size", "planted_sentences")
    # model.hs changes what out_vectors' rows are (inner nodes, not words); recipes before it had none
    shape = {"model.vector_size": model["vector_size"], "model.hs": model.get("hs", 0)}
    # model.subwords adds the n-gram matrix; min_n, max_n and buckets fix what its rows mean
    shape["model.subwords"] = model.get("subwords", False)
    if shape["model.subwords"]:
        shape.update({f"model.{k}": model[k] for k in ("min_n", "max_n", "buckets")})
    return {**shape, **{f"data.{k}": data[k] for k in keys}}


def choose_impl(cfg: Config, runtime: Runtime) -> str:
    impl = cfg.model.impl
    if impl == "auto":
        impl = "hogwild" if runtime.device.type == "cpu" and hogwild.available() else "batched"
    if impl == "hogwild":
        if runtime.device.type != "cpu":
            raise DlError(
                f"model.impl=hogwild trains on the CPU; this run is on {runtime.device}. Use model.impl=batched (or auto)."
            )
        if not hogwild.available():
            raise DlError(
                "model.impl=hogwild needs numba: pip install numba (or use model.impl=batched, much slower on a CPU)."
            )
    return impl


def build(cfg: Config, runtime: Runtime, load_weights: bool = True, start: Record | None = None) -> Job:
    """start: with data.update_vocab, the checkpoint a continued run grows from (or, resumed, its own)."""
    _check(cfg, runtime, start)
    corpus = load_corpus(cfg.data, cfg.seed)
    if start is None:
        vocab = Vocabulary.from_corpus(corpus, cfg.data.min_count, cfg.data.max_vocab_size)
        keep = vocab.keep_probabilities(cfg.data.sample)
    else:
        vocab, keep = continued_vocabulary(cfg, corpus, start)
    tables = make_tables(cfg, corpus, vocab, keep)
    model = new_model(cfg, len(vocab), seed=cfg.seed)
    if start is not None and shape_signature(start.config) != shape_signature(to_dict(cfg)):
        _start_from(model, start)  # a new corpus: the old rows, the new words' fresh init
    impl = choose_impl(cfg, runtime)
    pairs = None
    if impl == "hogwild":
        batch_words = cfg.data.batch_words * cfg.train.workers
        update = hogwild_step(cfg, tables, ThreadPoolExecutor(cfg.train.workers, thread_name_prefix="word2vec"))
    else:
        batch_words = cfg.data.batch_words
        m = cfg.model
        # A CBOW prediction reads both sides of a window reduced to 1..window words: window + 1 on average.
        inputs = 1 if m.sg else m.window + 1
        pairs = cfg.train.pairs_per_update or auto_pairs_per_update(
            vocab.counts, m.negative, m.ns_exponent, m.hs, tables.subwords, inputs_per_prediction=inputs
        )
        update = batched_step(cfg, tables, runtime.device, pairs)
    questions = _questions(cfg.data)

    def eval_step(net: SkipGram, lines: list[str]) -> dict[str, torch.Tensor]:
        from dlcli.vectors import evaluate_analogy_lines

        result = evaluate_analogy_lines(
            word_vectors(net, vocab, cfg, tables.subwords), lines, restrict=cfg.data.restrict
        )
        total = result["total"]
        return {"analogy_accuracy": torch.tensor(float(result["correct"])), "count": torch.tensor(float(max(total, 1)))}

    def export(net: SkipGram, run_dir: Path) -> None:
        export_vectors(word_vectors(net, vocab, cfg, tables.subwords), run_dir)

    return Job(
        model=model,
        train_data=CorpusBatches(corpus, batch_words),
        eval_data={"val": Questions(questions)},
        eval_step=eval_step,
        best_metric="analogy_accuracy",
        best_mode="max",
        items_per_batch=lambda batch: batch.words,
        update_step=update,
        export=export,
        extra={
            "impl": impl,
            "vocab_size": len(vocab),
            "corpus_words": corpus.n_words,
            "pairs_per_update": pairs,
            # what a continued run (data.update_vocab) grows, or resumes, this vocabulary from
            "vocab_words": list(vocab.words),
            "vocab_counts": vocab.counts.tolist(),
        },
    )


def _check(cfg: Config, runtime: Runtime, start: Record | None) -> None:
    """The recipe values word2vec cannot train with, refused before the corpus is read."""
    if cfg.data.update_vocab and start is None:
        raise DlError(
            "data.update_vocab grows a trained run's vocabulary: give the run to continue, "
            "--resume-from RUN/checkpoints/last.pt (and the new corpus: --set data.path=...)."
        )
    if start is not None:
        _check_start(cfg, start)
    if runtime.distributed:
        raise DlError(
            "word2vec trains in one process (Hogwild threads on the CPU, batches on one GPU); run it without torchrun/--nproc."
        )
    if cfg.train.grad_accum != 1:
        raise DlError("word2vec updates the vectors itself: train.grad_accum must be 1.")
    if cfg.model.hs and cfg.model.negative:
        # word2vec.c and gensim sum both objectives over two output matrices (syn1, syn1neg); dl keeps one.
        raise DlError(
            f"model.hs=1 with model.negative={cfg.model.negative}: dl trains one objective at a time. "
            "Use model.hs=1 with model.negative=0 (the hierarchical softmax), or model.hs=0."
        )


def _check_start(cfg: Config, start: Record) -> None:
    """A continued run takes over the checkpoint's rows: the vector size and the objective must match."""
    old_model = start.config["model"]
    keys = ("vector_size", "hs", "subwords") + (("min_n", "max_n", "buckets") if cfg.model.subwords else ())
    for key in keys:
        if old_model.get(key, 0) != getattr(cfg.model, key):
            raise DlError(
                f"Cannot continue a run with model.{key}={old_model.get(key, 0)} as model.{key}={getattr(cfg.model, key)}: "
                f"its vectors keep their shape and meaning. Set model.{key}={old_model.get(key, 0)}."
            )
    if "vocab_words" not in start.extra:
        raise DlError(
            "The checkpoint holds no vocabulary (written before data.update_vocab existed): train the run again to continue it."
        )


def continued_vocabulary(cfg: Config, corpus: EncodedCorpus, start: Record) -> tuple[Vocabulary, np.ndarray]:
    """The vocabulary of a continued run and its keep probabilities.

    A new corpus grows the checkpoint's vocabulary (Vocabulary.extended: old + new counts, for the noise
    distribution and the Huffman tree); resuming a continued run reads the grown one back as saved.
    Subsampling uses the new corpus's counts, as gensim's prepare_vocab(update=True) computes sample_int
    from the new raw counts.
    """
    words, counts = start.extra["vocab_words"], start.extra["vocab_counts"]
    if shape_signature(start.config) == shape_signature(to_dict(cfg)):  # resuming this continued run
        vocab = Vocabulary.restored(words, counts, corpus)
    else:
        vocab = Vocabulary.extended(words, counts, corpus, cfg.data.min_count, cfg.data.max_vocab_size)
    in_corpus = Vocabulary(vocab.words, vocab.corpus_counts(corpus), vocab.remap)
    return vocab, in_corpus.keep_probabilities(cfg.data.sample)


@torch.no_grad()
def _start_from(model: SkipGram, start: Record) -> None:
    """The checkpoint's rows for the old words (input and output vectors, as gensim's update_weights keeps
    wv.vectors and syn1neg/syn1); the new words keep SkipGram's fresh init (random inputs, zero outputs)."""
    old = len(start.extra["vocab_words"])
    model.in_vectors[:old] = start.model["in_vectors"]
    model.out_vectors[:old] = start.model["out_vectors"]
    if isinstance(model, FastText):  # the n-gram rows are shared by old and new words alike: all of them
        model.ngram_vectors.copy_(start.model["ngram_vectors"])


def make_tables(cfg: Config, corpus: EncodedCorpus, vocab: Vocabulary, keep: np.ndarray) -> Tables:
    """The step's tables: the noise distribution and the Huffman tree from the vocabulary counts."""
    noise = vocab.counts.astype(np.float64) ** cfg.model.ns_exponent
    tree = huffman_tree(vocab.counts) if cfg.model.hs else huffman_tree(vocab.counts[:0])
    m = cfg.model
    words = list(vocab.words) if m.subwords else []
    subwords = subword_table(words, m.min_n, m.max_n, m.buckets)
    if not m.subwords:  # word2vec: every word has an empty run of n-gram rows
        subwords = SubwordTable(np.zeros(len(vocab) + 1, np.int64), subwords.ids)
    return Tables(
        corpus.ids,
        corpus.bounds,
        vocab.remap,
        keep,
        *hogwild.alias_table(vocab.counts, cfg.model.ns_exponent),
        np.cumsum(noise / noise.sum()),
        tree,
        hogwild.hot_nodes(tree) if m.hs else (0, 0),
        subwords,
    )


def eval_notes(cfg: Config) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}


def _questions(data: Word2VecData) -> list[str]:
    if data.questions:
        path = Path(data.questions)
        if not path.is_file():
            raise DlError(
                f"data.questions: {path} does not exist. Give a questions-words file (': section' lines, then 'a b c d')."
            )
        return read_text(path).splitlines()
    if data.dataset == "planted":
        from dlcli.data.planted import planted_questions

        return planted_questions()
    return []


def restore_model(cfg: Config, extra: dict[str, Any]) -> tuple[SkipGram, dict[str, Any]]:
    """The skip-gram model of a checkpoint. Queries (dl analogy, dl similar) read the exported
    vectors instead: dlcli.vectors.vectors_for_run."""
    return new_model(cfg, extra["vocab_size"]), {}


def new_model(cfg: Config, vocab_size: int, seed: int = 0) -> SkipGram:
    """word2vec's two matrices, or (model.subwords) fastText's three: words, n-gram buckets, outputs."""
    m = cfg.model
    if m.subwords:
        return FastText(vocab_size, m.vector_size, m.buckets, seed=seed)
    return SkipGram(vocab_size, m.vector_size, seed=seed)


def word_vectors(model: SkipGram, vocab: Vocabulary, cfg: Config, table: SubwordTable | None = None):
    """The trained vectors: the input rows, or (subwords) each word's row averaged with its n-grams' rows,
    as gensim's wv[word], with the n-gram matrix for words outside the vocabulary. table: the vocabulary's
    n-gram rows when already hashed (make_tables)."""
    from dlcli.vectors import SubwordVectors, WordVectors

    words, counts = list(vocab.words), vocab.counts.tolist()
    rows = model.in_vectors.detach().float().cpu().numpy().copy()
    m = cfg.model
    if not m.subwords:
        return WordVectors(words, rows, counts)
    ngram_vectors = model.ngram_vectors.detach().float().cpu().numpy().copy()
    table = table if table is not None else subword_table(words, m.min_n, m.max_n, m.buckets)
    composed = compose(rows, ngram_vectors, table)
    return SubwordVectors(words, composed, ngram_vectors, m.min_n, m.max_n, counts)


def export_vectors(wv, run_dir: Path) -> None:
    """vectors.txt and vectors.bin (word2vec formats, as gensim reads them) and vocab.json (counts); for a
    subword run also ngrams.npy, the (buckets, D) n-gram matrix, and subwords.json, its min_n and max_n."""
    from dlcli.vectors import NGRAMS_FILE, SUBWORDS_FILE, SubwordVectors, save_word2vec_format

    save_word2vec_format(wv, run_dir / "vectors.txt", binary=False)
    save_word2vec_format(wv, run_dir / "vectors.bin", binary=True)
    write_json_atomic(run_dir / "vocab.json", {"words": wv.words, "counts": wv.counts})
    if isinstance(wv, SubwordVectors):
        _save_npy_atomic(run_dir / NGRAMS_FILE, wv.ngram_vectors)
        settings = {
            "min_n": wv.min_n,
            "max_n": wv.max_n,
            "buckets": len(wv.ngram_vectors),
            "ngram_vectors": NGRAMS_FILE,
        }
        write_json_atomic(run_dir / SUBWORDS_FILE, settings)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """As the vectors files: written beside its name and renamed, so a crash leaves no truncated matrix."""
    from dlcli.files import temp_path

    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype="<f4"))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
