"""The recipe schema of the `translate` task (dlcli/tasks/translate.py). Torch-free: see dlcli/tasks/__init__.py."""

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

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


class TranslateModel(Section):
    dim: int = Field(256, ge=1, description="d_model: embedding and attention width")
    heads: int = Field(8, ge=1, description="attention heads (dim must divide by it)")
    encoder_layers: int = Field(3, ge=1, le=MAX_LAYERS, description="encoder blocks")
    decoder_layers: int = Field(3, ge=1, le=MAX_LAYERS, description="decoder blocks")
    ff_dim: int = Field(512, ge=1, description="feed-forward inner width")
    dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout on embeddings, attention weights and residual branches"
    )
    norm_first: bool = Field(False, description="pre-norm blocks; false: post-norm as in the paper")
    activation: Literal["relu", "gelu"] = Field("relu", description="feed-forward activation (the paper: relu)")


class TranslateData(DataSection):
    BATCH = BatchSize("max_tokens", "tokens", budget=True)

    dataset: Literal["numbers", "multi30k", "folder", "tsv"] = Field(
        "numbers",
        description="numbers (built-in English -> German number words), multi30k (downloads into data.root), "
        "folder (SPLIT.LANG files in data.root), tsv (data.path, source<TAB>target)",
    )
    root: str = Field("data/multi30k", description="multi30k/folder: the folder of SPLIT.LANG(.gz) files")
    source_lang: str = Field("de", description="multi30k/folder: the source language's file suffix")
    target_lang: str = Field("en", description="multi30k/folder: the target language's file suffix")
    test_split: str = Field(
        "test_2016_flickr", description="folder: the test split's file name (multi30k: test_2016_flickr)"
    )
    path: str | None = Field(None, description="tsv: training pairs")
    val_path: str | None = Field(None, description="tsv: validation pairs (default: 2% of the training pairs held out)")
    test_path: str | None = Field(None, description="tsv: test pairs (optional)")
    numbers_train: int = Field(
        50000, ge=10, le=MAX_GENERATED, description="numbers: training pairs generated from the seed"
    )
    numbers_val: int = Field(
        500, ge=1, le=MAX_GENERATED, description="numbers: validation pairs (numbers not in training)"
    )
    numbers_test: int = Field(1000, ge=1, le=MAX_GENERATED, description="numbers: test pairs (numbers in neither)")
    vocab_size: int = Field(8000, ge=len(SPECIALS) + 1, description="joint BPE vocabulary size (HF tokenizers)")
    max_tokens: int = Field(4096, ge=1, description="padded tokens per batch per process (source or target side)")
    max_len: int = Field(256, ge=1, description="training pairs with a side longer than this many subwords are skipped")


class DecodeConfig(Section):
    beam: int = Field(5, ge=1, description="beam width on the test split and in dl translate (1: greedy)")
    # Bounded so that length^length_penalty stays a float (2^1e300 overflows) and beam search
    # stops in reasonable time: every output token is a decoder pass over the whole beam.
    length_penalty: float = Field(
        1.0, ge=-10, le=10, description="hypothesis score = log-prob sum / length^length_penalty (-10 to 10)"
    )
    max_len_a: float = Field(
        1.5, ge=0, le=10, description="at most max_len_a x source length + max_len_b target tokens"
    )
    max_len_b: int = Field(10, ge=1, le=1024, description="see max_len_a")


class TranslateTrain(TrainConfig):
    epochs: int = Field(20, ge=1, description="passes over the training pairs")
    label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="share of the target probability spread over the vocabulary"
    )
    clip_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm")
    average_last: int = Field(
        0,
        ge=0,
        description="after training, average the weights of the last N epochs into checkpoints/averaged.pt, "
        "which dl translate and dl eval then use (0: off)",
    )


class Config(RunConfig):
    task: Literal["translate"] = Field("translate", description="sequence-to-sequence translation")
    model: TranslateModel = Field(default_factory=TranslateModel, description="the transformer")
    data: TranslateData = Field(default_factory=TranslateData, description="the sentence pairs and their batches")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="beam search")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="adam", lr=1e-3, betas=(0.9, 0.98), eps=1e-9),
        description="Adam(0.9, 0.98), as the paper",
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="inverse_sqrt", warmup_steps=400),
        description="linear warmup, then lr x sqrt(warmup / step)",
    )
    train: TranslateTrain = Field(default_factory=TranslateTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """translate.build's finish_metrics; the number task's single-word targets have no BLEU (reports_bleu)."""
        names = ("loss", "ppl", "chrf", "exact")
        return names if self.data.dataset == "numbers" else (*names, "bleu")
