"""The recipe schema of the `word2vec` task (dlcli/tasks/word2vec.py). Torch-free: see dlcli/tasks/__init__.py."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from dlcli.config import (
    MAX_GENERATED,
    BatchSize,
    DataSection,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    Section,
    TrainConfig,
)


class Word2VecModel(Section):
    sg: Literal[0, 1] = Field(
        1, description="1: skip-gram (each word predicts its context), 0: CBOW (the context predicts the word)"
    )
    vector_size: int = Field(100, ge=1, description="dimensions of the word vectors")
    window: int = Field(
        5, ge=1, description="largest distance between a word and its context (a reduced width is drawn per word)"
    )
    negative: int = Field(
        5, ge=0, description="noise words per prediction (negative sampling); 0: the full softmax (small vocabularies)"
    )
    hs: Literal[0, 1] = Field(
        0,
        description="1: the hierarchical softmax over word2vec.c's Huffman tree (needs negative: 0); 0: negative or full softmax",
    )
    ns_exponent: float = Field(0.75, description="noise distribution: unigram counts to this power (0.75 in the paper)")
    impl: Literal["auto", "hogwild", "batched"] = Field(
        "auto", description="hogwild: numba SGD threads on the CPU; batched: PyTorch batches (GPU); auto: by device"
    )
    subwords: bool = Field(
        False,
        description="fastText (Bojanowski et al. 2017): a word's input vector is the average of its row and its character n-grams' rows",
    )
    min_n: int = Field(3, ge=1, description="subwords: shortest character n-gram of <word> (fastText's minn)")
    max_n: int = Field(6, ge=1, description="subwords: longest character n-gram of <word> (fastText's maxn)")
    buckets: int = Field(
        2_000_000,
        ge=1,
        description="subwords: rows of the n-gram matrix the n-grams are hashed into (fastText's bucket)",
    )

    @model_validator(mode="after")
    def _ngram_lengths(self) -> Word2VecModel:
        """min_n > max_n would leave every word without n-grams: a config error, not a silent word2vec."""
        if self.subwords and self.min_n > self.max_n:
            raise ValueError(f"model.min_n={self.min_n} is greater than model.max_n={self.max_n}: no n-gram fits")
        return self


class Word2VecData(DataSection):
    BATCH = BatchSize("batch_words", "words", budget=True, accumulates=False)

    dataset: Literal["planted", "text8", "text"] = Field(
        "planted", description="planted (built-in corpus with planted relations), text8 (downloads), text (data.path)"
    )
    path: str | None = Field(
        None, description="text: a file or folder of .txt/.gz files, one sentence per line; text8: a local copy"
    )
    root: str = Field("data", description="where text8 is downloaded and encoded corpora are cached")
    token_pattern: str = Field(
        r"[^\W\d_]+", description="regex of a token in lowercased text (letters; text8's is [a-z]+)"
    )
    min_count: int = Field(5, ge=1, description="ignore words seen fewer times")
    max_vocab_size: int | None = Field(None, ge=1, description="keep only the most frequent words")
    sample: float = Field(1e-3, ge=0, description="subsampling threshold of frequent words (0: off)")
    batch_words: int = Field(10000, ge=100, description="corpus words per batch (per thread for hogwild)")
    planted_sentences: int = Field(
        55000, ge=100, le=MAX_GENERATED, description="planted: sentences generated from the seed"
    )
    update_vocab: bool = Field(
        False,
        description="continued training (--resume-from a run): add this corpus's new words to its vocabulary, as gensim's build_vocab(update=True)",
    )
    questions: str | None = Field(
        None, description="questions-words file for the validation accuracy (planted: built in)"
    )
    restrict: int = Field(
        30000, ge=1, description="validation: questions and answers among this many most frequent words"
    )

    @field_validator("token_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        """A regex that does not compile is a config error, found before the corpus is read."""
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"not a regular expression ({e})") from None
        if compiled.match(""):  # it would find an empty token between every two characters
            raise ValueError("the pattern matches the empty string; a token needs at least one character (e.g. [a-z]+)")
        return pattern


class Word2VecTrain(TrainConfig):
    epochs: int = Field(5, ge=1, description="passes over the corpus")
    workers: int = Field(2, ge=1, description="hogwild: training threads (gensim's workers); 1 is exactly reproducible")
    log_every: int = Field(100, ge=1, description="batches between progress/metrics.jsonl log lines")
    pairs_per_update: int | None = Field(
        None,
        ge=1,
        description="batched: predictions read from the same vectors before their summed updates land (default: auto)",
    )


class Config(RunConfig):
    task: Literal["word2vec"] = Field("word2vec", description="word vectors")
    model: Word2VecModel = Field(default_factory=Word2VecModel, description="the embedding model")
    data: Word2VecData = Field(default_factory=Word2VecData, description="the corpus and vocabulary")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="sgd", lr=0.025, momentum=0.0), description="SGD; lr is gensim's alpha"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="linear", min_lr=1e-4),
        description="linear decay to min_lr (gensim's min_alpha)",
    )
    train: Word2VecTrain = Field(default_factory=Word2VecTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """word2vec.build's eval_step: the analogy accuracy, when there are questions (planted: built in)."""
        return ("analogy_accuracy",) if self.data.questions or self.data.dataset == "planted" else ()

    def continues_training(self) -> bool:
        return self.data.update_vocab
