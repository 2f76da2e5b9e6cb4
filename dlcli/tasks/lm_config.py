"""The recipe schema of the `lm` task (dlcli/tasks/lm.py). Torch-free: see dlcli/tasks/__init__.py."""

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


class LMModel(Section):
    arch: Literal["rnn", "lstm", "gru", "transformer"] = Field(
        "lstm", description="rnn (Elman, tanh), lstm, gru, or transformer (decoder-only, GPT)"
    )
    impl: Literal["torch", "scratch"] = Field(
        "torch", description="torch: nn.RNN/LSTM/GRU (fused, cuDNN); scratch: the layers written from the equations"
    )
    embedding_dim: int = Field(128, ge=1, description="size of the token embeddings")
    hidden_size: int = Field(256, ge=1, description="units per recurrent layer")
    num_layers: int = Field(2, ge=1, le=MAX_LAYERS, description="stacked recurrent layers (transformer: blocks)")
    dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout between the recurrent layers and before the output layer"
    )
    tie_weights: bool = Field(
        False,
        description="share the embedding and output matrices (Press & Wolf 2017; needs embedding_dim == hidden_size)",
    )
    heads: int = Field(4, ge=1, description="transformer: attention heads (embedding_dim must divide by it)")
    ff_dim: int | None = Field(None, ge=1, description="transformer: feed-forward width (default 4 x embedding_dim)")
    norm_first: bool = Field(True, description="transformer: pre-norm blocks (GPT-2); false: post-norm as in the paper")
    positions: Literal["learned", "sinusoidal"] = Field("learned", description="transformer: position embeddings")


class LMData(DataSection):
    BATCH = BatchSize("batch_size", "streams")

    dataset: Literal["builtin", "text"] = Field(
        "builtin", description="builtin (generated sentences, offline) or text (data.path)"
    )
    path: str | None = Field(None, description="text: a UTF-8 text file, e.g. tiny-shakespeare's input.txt")
    level: Literal["char", "word"] = Field("char", description="tokens: characters, or whitespace-separated words")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the last this share of the text is the validation split")
    batch_size: int = Field(32, ge=1, description="parallel streams per batch per process")
    bptt: int = Field(
        128,
        ge=1,
        description="tokens per stream per batch: how far back gradients flow (transformer: its context length)",
    )
    eval_batch_size: int = Field(16, ge=1, description="parallel streams of the validation text")
    builtin_sentences: int = Field(
        5000, ge=10, le=MAX_GENERATED, description="builtin: sentences generated from the seed, one per line"
    )


class LMTrain(TrainConfig):
    epochs: int = Field(10, ge=1, description="passes over the training text; sets the LR schedule's length")
    clip_grad_norm: float | None = Field(
        1.0, gt=0, description="clip the global gradient norm (exploding RNN gradients)"
    )


class Config(RunConfig):
    task: Literal["lm"] = Field("lm", description="a language model")
    model: LMModel = Field(default_factory=LMModel, description="the network")
    data: LMData = Field(default_factory=LMData, description="the text and how it is batched")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="adamw", lr=2e-3, weight_decay=0.01), description="AdamW"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="cosine", warmup_steps=100, min_lr=2e-4),
        description="cosine decay to lr / 10 after a 100-step warmup",
    )
    train: LMTrain = Field(default_factory=LMTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """lm.build's finish_metrics: loss (nats per token), perplexity, and bits per character at char level."""
        return ("loss", "ppl", "bpc") if self.data.level == "char" else ("loss", "ppl")
