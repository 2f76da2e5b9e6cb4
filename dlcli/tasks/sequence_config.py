"""The recipe schemas of the `tag` and `seqclass` tasks (dlcli/tasks/tag.py, dlcli/tasks/seqclass.py). Torch-free: see
dlcli/tasks/__init__.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlcli.config import (
    MAX_GENERATED,
    MAX_LAYERS,
    BatchSize,
    DataSection,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    Section,
    TrainConfig,
)


class TagModel(Section):
    arch: Literal["lstm", "gru", "rnn"] = Field("lstm", description="the sentence encoder's cell")
    impl: Literal["torch", "scratch"] = Field(
        "torch", description="torch's fused layers (cuDNN on GPU) or the cells written from the equations"
    )
    embedding_dim: int = Field(
        100, ge=1, description="word embedding size (must equal the vectors' size with pretrained_vectors)"
    )
    char_encoder: Literal["cnn", "lstm", "none"] = Field(
        "cnn", description="character-level word encoder: spelling for unseen words"
    )
    char_dim: int = Field(32, ge=1, description="character embedding size")
    char_hidden: int = Field(64, ge=1, description="char CNN filters (or char BiLSTM size per direction)")
    hidden_size: int = Field(256, ge=1, description="sentence RNN size per direction")
    num_layers: int = Field(2, ge=1, le=MAX_LAYERS, description="stacked sentence RNN layers")
    bidirectional: bool = Field(True, description="read sentences both ways")
    dropout: float = Field(
        0.33, ge=0, lt=1, description="dropout on the RNN's inputs, between layers and on its outputs"
    )
    word_dropout: float = Field(
        0.25, ge=0, le=1, description="train: a word seen once is replaced by <unk> with this probability"
    )
    pretrained_vectors: str | None = Field(
        None, description="word2vec text/binary vectors to initialise the embeddings (e.g. runs/word2vec/vectors.txt)"
    )
    pretrained_limit: int = Field(
        200000, ge=0, description="the most frequent pretrained words added to the vocabulary"
    )


class TagData(DataSection):
    BATCH = BatchSize("batch_size", "sentences")

    dataset: Literal["generated", "conllu"] = Field(
        "generated", description="generated (built-in grammar) or conllu (data.train/val/test files)"
    )
    train: str | None = Field(None, description="conllu: training file (.conllu or .conllu.gz)")
    val: str | None = Field(None, description="conllu: validation file (default: val_fraction of train)")
    test: str | None = Field(None, description="conllu: test file")
    column: Literal["upos", "xpos"] = Field("upos", description="conllu: which tag column to learn")
    train_sentences: int = Field(3000, ge=10, le=MAX_GENERATED, description="generated: training sentences")
    val_sentences: int = Field(500, ge=10, le=MAX_GENERATED, description="generated: validation sentences")
    test_sentences: int = Field(1000, ge=10, le=MAX_GENERATED, description="generated: test sentences")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out as val when there is no val file")
    min_count: int = Field(1, ge=1, description="words seen fewer times in train are <unk> for the word embedding")
    max_word_length: int = Field(24, ge=1, description="characters of a word the char encoder reads")
    batch_size: int = Field(32, ge=1, description="sentences per batch per process")


class TagTrain(TrainConfig):
    epochs: int = Field(10, ge=1, description="passes over the training sentences")
    clip_grad_norm: float | None = Field(5.0, gt=0, description="clip the global gradient norm to this value")
    log_every: int = Field(50, ge=1, description="optimizer steps between progress/metrics.jsonl log lines")


class TagConfig(RunConfig):
    task: Literal["tag"] = Field("tag", description="a label per token (part-of-speech tagging)")
    model: TagModel = Field(default_factory=TagModel, description="the tagger")
    data: TagData = Field(default_factory=TagData, description="tagged sentences")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="adamw", lr=2e-3, weight_decay=0.01), description="the optimizer"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="cosine", warmup_epochs=0.2),
        description="the learning-rate schedule",
    )
    train: TagTrain = Field(default_factory=TagTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """tag.finish_tag_metrics: token accuracy, accuracy on words unseen in training and their share,
        precision and recall per tag."""
        return ("accuracy", "oov_accuracy", "oov_share", "precision.*", "recall.*")


class SeqModel(Section):
    arch: Literal["lstm", "gru", "rnn"] = Field("gru", description="the recurrent cell")
    impl: Literal["torch", "scratch"] = Field(
        "torch", description="torch's fused layers or the cells written from the equations"
    )
    embedding_dim: int = Field(32, ge=1, description="token embedding size")
    hidden_size: int = Field(64, ge=1, description="RNN size per direction")
    num_layers: int = Field(1, ge=1, le=MAX_LAYERS, description="stacked RNN layers")
    bidirectional: bool = Field(False, description="read the sequence both ways")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout between layers and before the classifier")


class SeqData(DataSection):
    BATCH = BatchSize("batch_size", "sequences")

    dataset: Literal["brackets", "tsv"] = Field(
        "brackets", description="brackets (built-in: balanced or not) or tsv (text<TAB>label files)"
    )
    train: str | None = Field(None, description="tsv: training file")
    val: str | None = Field(None, description="tsv: validation file (default: val_fraction of train)")
    test: str | None = Field(None, description="tsv: test file")
    level: Literal["char", "word"] = Field("char", description="tsv: read characters or whitespace-separated words")
    train_size: int = Field(10000, ge=10, le=MAX_GENERATED, description="brackets: training sequences")
    val_size: int = Field(1000, ge=10, le=MAX_GENERATED, description="brackets: validation sequences")
    test_size: int = Field(2000, ge=10, le=MAX_GENERATED, description="brackets: test sequences")
    # Each sequence is drawn character by character in Python and the RNN steps through it.
    min_len: int = Field(8, ge=2, le=1000, description="brackets: shortest sequence")
    max_len: int = Field(40, ge=2, le=1000, description="brackets: longest sequence (at most 1000 characters)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out as val when there is no val file")
    min_count: int = Field(1, ge=1, description="tokens seen fewer times in train are <unk>")
    batch_size: int = Field(64, ge=1, description="sequences per batch per process")


class SeqConfig(RunConfig):
    task: Literal["seqclass"] = Field("seqclass", description="a label per sequence")
    model: SeqModel = Field(default_factory=SeqModel, description="the classifier")
    data: SeqData = Field(default_factory=SeqData, description="labelled sequences")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="adamw", lr=3e-3, weight_decay=0.01), description="the optimizer"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="cosine"), description="the learning-rate schedule"
    )
    train: TagTrain = Field(default_factory=TagTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """seqclass.build's eval_step: cross-entropy and accuracy."""
        return ("loss", "accuracy")
