"""The recipe schema of the `style` task and the settings of `dl stylize` (dlcli/tasks/style.py, dlcli/stylize.py).
Torch-free: see dlcli/tasks/__init__.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dlcli.config import BatchSize, DataSection, OptimConfig, RunConfig, ScheduleConfig, Section, TrainConfig
from dlcli.errors import DlError

# The paper's layers (section 3): content on conv4_2, style on conv1_1 ... conv5_1 with w_l = 1/5.
CONTENT_LAYERS = {"conv4_2": 1.0}
STYLE_LAYERS = {"conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2, "conv4_1": 0.2, "conv5_1": 0.2}


class StyleModel(Section):
    features: str = Field(
        "imagenet",
        description="imagenet (torchvision's VGG19 from the torch hub cache), random (a fixed random VGG19, "
        "offline, cruder results) or a state_dict / dl checkpoint of a torchvision VGG",
    )
    pooling: Literal["avg", "max"] = Field(
        "avg", description="avg: the paper's choice (better gradient flow); max: as trained"
    )
    content_layers: dict[str, float] = Field(
        default_factory=lambda: dict(CONTENT_LAYERS), description="content layer -> weight"
    )
    style_layers: dict[str, float] = Field(
        default_factory=lambda: dict(STYLE_LAYERS), description="style layer -> weight w_l"
    )

    @field_validator("content_layers", "style_layers")
    @classmethod
    def _not_empty(cls, layers: dict[str, float]) -> dict[str, float]:
        if not layers:
            raise ValueError("give at least one layer, e.g. {conv4_2: 1.0}")
        return layers


class StyleOptions(Section):
    size: int = Field(512, ge=16, description="the output's long side in pixels (aspect ratio kept)")
    style_scale: float = Field(1.0, gt=0, description="the style image's long side = size x style_scale")
    scales: list[int] | None = Field(
        None, description="coarse to fine: optimise at each long side in turn (e.g. [256, 512]); the last one is size"
    )
    steps: int = Field(
        500, ge=1, description="loss evaluations per scale (L-BFGS makes several per step(), as neural-style counts)"
    )
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="lbfgs (the paper's) or adam")
    lr: float | None = Field(
        None, gt=0, description="step size (default: 1 for lbfgs, 0.02 for adam, on pixels in [0, 1])"
    )
    content_weight: float = Field(1.0, ge=0, description="alpha")
    style_weight: float = Field(
        1.0e6,
        ge=0,
        description="beta; L_content grows with the image's area, L_style does not: larger images want more",
    )
    tv_weight: float = Field(0.1, ge=0, description="gamma: total variation (squared neighbour differences), smooths")
    init: Literal["content", "style", "noise"] = Field("content", description="the image the optimisation starts from")
    preserve_color: bool = Field(False, description="transfer on luminance only and keep the content's colours (YIQ)")
    save_every: int | None = Field(
        None, ge=1, description="also write the image every N evaluations (OUT_000100.png, ...)"
    )

    @field_validator("scales")
    @classmethod
    def _increasing(cls, scales: list[int] | None) -> list[int] | None:
        if scales is not None and (not scales or any(s < 16 for s in scales) or sorted(set(scales)) != scales):
            raise ValueError("scales must be increasing long sides of at least 16 px, e.g. [256, 512, 1024]")
        return scales

    def sizes(self) -> list[int]:
        """The long sides optimised in turn; the last is the output's."""
        if self.scales is None:
            return [self.size]
        if self.scales[-1] != self.size:
            raise DlError(
                f"--scales {','.join(map(str, self.scales))} must end at the output size {self.size} (--size)."
            )
        return list(self.scales)

    def step_size(self) -> float:
        return self.lr if self.lr is not None else (1.0 if self.optimizer == "lbfgs" else 0.02)


class StyleData(DataSection):
    BATCH = BatchSize(None, "pairs", accumulates=False)  # one content x style pair per step

    dataset: Literal["files", "generated"] = Field(
        "files",
        description="files: data.contents and data.styles; generated: built-in pictures from the seed (offline tests)",
    )
    contents: list[str] = Field(default_factory=list, description="content images: files, folders or glob patterns")
    styles: list[str] = Field(default_factory=list, description="style images: files, folders or glob patterns")
    generated: int = Field(2, ge=1, le=4, description="generated: how many content and how many style pictures")


class StyleTrain(TrainConfig):
    epochs: int = Field(
        1, ge=1, le=1, description="always 1: each pair is optimised once, for stylize.steps evaluations"
    )
    log_every: int = Field(1, ge=1, description="pairs between log lines")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast for the VGG on a GPU that has it, fp32 on CPU (the Gram sums are always fp32)",
    )


class Config(RunConfig):
    task: Literal["style"] = Field("style", description="Gatys style transfer over a grid of contents x styles")
    model: StyleModel = Field(default_factory=StyleModel, description="the feature network and its loss layers")
    data: StyleData = Field(default_factory=StyleData, description="the content and style images")
    optim: OptimConfig = Field(
        default_factory=OptimConfig, description="unused: stylize.optimizer optimises each image"
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="unused: stylize.optimizer optimises each image"
    )
    train: StyleTrain = Field(default_factory=StyleTrain, description="the loop over pairs")
    stylize: StyleOptions = Field(default_factory=StyleOptions, description="the optimisation, as dl stylize's flags")

    def metric_names(self) -> tuple[str, ...]:
        """models.gatys.losses, averaged over the pairs: the unweighted losses and the weighted total."""
        return ("content", "style", "tv", "total")
