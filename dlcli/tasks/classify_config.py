"""The recipe schema of the `classify` task (dlcli/tasks/classify.py): its `model`, `data` and `train` sections.

Torch-free, as every <task>_config.py, so that `dl config show` validates and prints a recipe
without importing torch (see dlcli/tasks/__init__.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from dlcli.config import MAX_GENERATED, SHAPES_MIN_SIZE, BatchSize, DataSection, RunConfig, Section, TrainConfig


class ClassifyModel(Section):
    arch: str = Field(
        "resnet18", description="a torchvision classifier: resnet18, vgg16, densenet161, ... (`dl models`)"
    )
    num_classes: int | None = Field(None, ge=2, description="output classes (default: the dataset's)")
    pretrained: bool = Field(False, description="start from torchvision's ImageNet weights (torch hub cache)")
    weights: str | None = Field(None, description="start from a state_dict file or a dl checkpoint (fine-tuning)")
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="dropout before the classifier (default: torchvision's for the arch; not all archs have one)",
    )
    freeze_backbone: bool = Field(False, description="train the classification head(s) only")
    aux_logits: Literal["auto", True, False] = Field(
        "auto", description="GoogLeNet/Inception v3 auxiliary heads (auto: when the input is large enough)"
    )
    bn_momentum: float | None = Field(
        None,
        gt=0,
        le=1,
        description="BatchNorm's running-statistics momentum, PyTorch's convention (each batch's weight; default: "
        "the arch's own: 0.1, MNASNet's 0.0003)",
    )
    stem: Literal["imagenet", "cifar"] = Field(
        "imagenet",
        description="ResNet family: cifar = a 3x3 stride-1 first conv and no max-pool, for ~32 px images",
    )


class ImageDataConfig(DataSection):
    BATCH = BatchSize("batch_size", "images")

    dataset: Literal["shapes", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagefolder"] = Field(
        "shapes",
        description="shapes (generated), cifar10/100, mnist, fashion_mnist, imagefolder (root/train, root/val|test)",
    )
    root: str = Field(
        "data",
        description="dataset folder (downloads go here; an image folder's root, or a .tar/.tar.gz/.tgz/.zip "
        "of it, unpacked once into $XDG_CACHE_HOME/dlcli/archives, ~/.cache by default)",
    )
    image_size: int = Field(
        64,
        ge=8,
        le=1024,
        description="images are resized/cropped to this square size (8 to 1024; the arch may need more)",
    )
    batch_size: int = Field(128, ge=1, description="images per batch per process")
    eval_batch_size: int | None = Field(None, ge=1, description="images per evaluation batch (default: batch_size)")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (streamed image folders only)")
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of train held out as val when the data has no val split"
    )
    augment: Literal[
        "random_crop", "random_resized_crop", "trivial_augment", "rand_augment", "auto_augment", "none"
    ] = Field(
        "random_crop",
        description="train augmentation (torchvision.transforms.v2), each with a horizontal flip: random_crop "
        "(zero-padded by size/8), random_resized_crop (Inception-style), or random_crop followed by "
        "TrivialAugmentWide, RandAugment or AutoAugment (ImageNet policy)",
    )
    eval_flip: bool = Field(
        False,
        description="evaluation (val, test, dl eval, dl predict): score each image and its mirror image and average "
        "the two logits (flip test-time augmentation; twice an evaluation's compute)",
    )
    random_erase: float = Field(
        0.0, ge=0, le=1, description="probability of RandomErasing a rectangle of each training image (0: off)"
    )
    on_bad_file: Literal["skip", "stop"] = Field(
        "skip",
        description="imagefolder: a file that is not a readable image (not an image, truncated, a decompression bomb): "
        "skip it (a warning counts and names them) or stop with exit 2 naming it",
    )
    in_memory: Literal["auto", True, False] = Field(
        "auto", description="decode an image folder into memory once (auto: when it takes < 2 GiB)"
    )
    train_size: int = Field(5000, ge=10, le=MAX_GENERATED, description="shapes: training images")
    val_size: int = Field(500, ge=10, le=MAX_GENERATED, description="shapes: validation images")
    test_size: int = Field(1000, ge=10, le=MAX_GENERATED, description="shapes: test images")

    @field_validator("image_size")
    @classmethod
    def _shapes_fit(cls, image_size: int, info: ValidationInfo) -> int:
        # The generator keeps a whole shape (radius up to 0.45 of the side) inside the frame.
        if info.data.get("dataset") == "shapes" and image_size < SHAPES_MIN_SIZE:
            raise ValueError(
                f"the shapes dataset is drawn at {SHAPES_MIN_SIZE} px or more; set it to {SHAPES_MIN_SIZE} or more"
            )
        return image_size


class ClassifyTrain(TrainConfig):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing (Szegedy et al. 2016)")
    aux_weight: float = Field(0.4, ge=0, description="weight of the auxiliary heads' losses (GoogLeNet, Inception v3)")
    mixup: float = Field(
        0.0, ge=0, description="MixUp's Beta(alpha, alpha) per batch (Zhang et al. 2018; 0: off, 0.2 is common)"
    )
    cutmix: float = Field(
        0.0,
        ge=0,
        description="CutMix's Beta(alpha, alpha) per batch (Yun et al. 2019; 0: off, 1.0 is common); with mixup "
        "also set, each batch gets one of the two, with equal probability",
    )


class Config(RunConfig):
    task: Literal["classify"] = Field(description="which task trains: classify")
    model: ClassifyModel = Field(default_factory=ClassifyModel, description="the network")
    data: ImageDataConfig = Field(default_factory=ImageDataConfig, description="the images")
    train: ClassifyTrain = Field(default_factory=ClassifyTrain, description="the training loop")

    def metric_names(self) -> tuple[str, ...]:
        """classify.build's eval_step: cross-entropy, top-1 and top-5 accuracy (fractions)."""
        return ("loss", "top1", "top5")
