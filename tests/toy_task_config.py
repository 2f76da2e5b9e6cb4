"""The recipe schema of the toy task in tests/toy_task.py (tests/test_toy_task.py registers both).

Torch-free, as every dlcli/tasks/<module>_config.py is: `dl config show` reads it without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class ToyModel(Section):
    features: int = Field(
        4, ge=1, le=1000, description="inputs per row: the length of the true w, and of the model's weight"
    )


class ToyData(DataSection):
    BATCH = BatchSize("batch_size", "rows")

    train_size: int = Field(128, ge=1, le=MAX_GENERATED, description="generated training rows")
    val_size: int = Field(32, ge=1, le=MAX_GENERATED, description="generated validation rows")
    test_size: int = Field(32, ge=1, le=MAX_GENERATED, description="generated test rows")
    noise: float = Field(0.1, ge=0, description="standard deviation of the Gaussian noise added to y = X w")
    batch_size: int = Field(16, ge=1, description="rows per batch per process")


class ToyConfig(RunConfig):
    task: Literal["toyreg"] = Field("toyreg", description="linear regression on generated rows (a test's toy task)")
    model: ToyModel = Field(default_factory=ToyModel, description="the linear model")
    data: ToyData = Field(default_factory=ToyData, description="rows of y = X w + noise")
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(name="sgd", lr=0.1, momentum=0.0), description="the optimizer"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(name="constant"), description="the learning-rate schedule"
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=3, log_every=1), description="the training loop"
    )

    def metric_names(self) -> tuple[str, ...]:
        """toy_task.build's eval_step: the mean squared error."""
        return ("loss",)
