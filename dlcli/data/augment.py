"""Training augmentation, built from torchvision.transforms.v2: crops, flips, the AutoAugment
family, RandomErasing, and MixUp/CutMix on batches.

    data: {augment: trivial_augment, random_erase: 0.25}    # per image, in the loader
    train: {mixup: 0.2, cutmix: 1.0}                         # per batch, in the classify train step

`data.augment` is a crop with a horizontal flip, optionally followed by a policy, in the order
of torchvision's classification reference (references/classification/presets.py): crop, flip,
policy, then (on the tensor) RandomErasing.

    random_crop          zero-padded random crop (pad = size/8: 4 at 32 px) + flip: the CIFAR
                         recipe of He et al. (2016)
    random_resized_crop  Inception-style crop (8-100% of the area, aspect 3/4-4/3) resized to
                         the image size + flip (Szegedy et al. 2015)
    trivial_augment      random_crop, then TrivialAugmentWide (Müller & Hutter 2021)
    rand_augment         random_crop, then RandAugment, 2 ops at magnitude 9 (Cubuk et al. 2020)
    auto_augment         random_crop, then AutoAugment's ImageNet policy (Cubuk et al. 2019)
    none                 the images as they are

Per-image randomness. A v2 transform draws one set of parameters per call, so called on a
(N, 3, S, S) batch it would crop, flip and erase every image of the batch alike. `BatchAugment`
therefore calls it image by image, on the device the batch is on, and stacks the results.
Every draw comes from torch's CPU generator, reseeded per batch inside `torch.random.fork_rng`
with a seed the loader derives from (seed, epoch, batch, rank): the global RNG (dropout, MixUp)
is left as it was, and a resumed run redraws exactly the augmentation of the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from dlcli.data.loaders import IMAGENET_MEAN

# RandomErasing fills with the ImageNet mean pixel, which normalizes to 0: what the reference
# gets by erasing after Normalize with value 0 (Zhong et al. 2020 erase to the mean too).
MEAN_PIXEL = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104)
POLICIES = ("trivial_augment", "rand_augment", "auto_augment")


def pad_for(image_size: int) -> int:
    """random_crop's zero padding on each side: 4 at 32 px, as in the CIFAR recipe."""
    return max(1, image_size // 8)


def crop_flip(augment: str, image_size: int, sized: bool) -> list[v2.Transform]:
    """The crop and flip of `augment`. sized: the images are already image_size squares (in memory);
    otherwise (PIL images streamed from disk) they are first resized as evaluation sizes them."""
    if augment == "random_resized_crop":
        return [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    resize = [] if sized else [v2.Resize(image_size, antialias=True)]
    if augment == "none":
        return resize + ([] if sized else [v2.CenterCrop(image_size)])
    return resize + [v2.RandomCrop(image_size, padding=pad_for(image_size)), v2.RandomHorizontalFlip()]


def policy(augment: str) -> list[v2.Transform]:
    """The automatic augmentation policy of `augment`, if any, with the reference's bilinear interpolation."""
    bilinear = v2.InterpolationMode.BILINEAR
    if augment == "trivial_augment":
        return [v2.TrivialAugmentWide(interpolation=bilinear)]
    if augment == "rand_augment":
        return [v2.RandAugment(num_ops=2, magnitude=9, interpolation=bilinear)]
    if augment == "auto_augment":
        return [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=bilinear)]
    return []


def erasing(random_erase: float) -> list[v2.Transform]:
    """RandomErasing with probability `random_erase` (Zhong et al. 2020), on uint8 tensors."""
    return [v2.RandomErasing(p=random_erase, value=MEAN_PIXEL)] if random_erase > 0 else []


def tensor_transform(augment: str, image_size: int, random_erase: float) -> v2.Compose | None:
    """uint8 (3, S, S) -> uint8 (3, S, S), for images held in memory; None when nothing is random."""
    ops = crop_flip(augment, image_size, sized=True) + policy(augment) + erasing(random_erase)
    return v2.Compose(ops) if ops else None


def pil_transform(augment: str, image_size: int, random_erase: float) -> v2.Compose:
    """PIL image -> float (3, S, S) in [0, 1], for images streamed from disk (one sample per call)."""
    to_uint8 = [v2.PILToTensor()]  # RandomErasing works on tensors, not PIL images
    to_float = [v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(
        crop_flip(augment, image_size, sized=False) + policy(augment) + to_uint8 + erasing(random_erase) + to_float
    )


class BatchAugment:
    """A per-image v2 transform over a uint8 batch (N, 3, S, S), each image with its own draw.

    One call per image costs ~50 us (crop + flip) to ~250 us (RandAugment) on one CPU thread at
    32 px (6 to 30 ms per batch of 128; scripts/bench_augment.py measures it), against ~170 ms for a
    ResNet-18 step of that batch on 2 cores. On a GPU the same calls launch small kernels on the
    batch's device, a few per image: there they can cost more than the step of a small model.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            # default_generator, not torch.manual_seed: that would reseed (and leave reseeded) the CUDA RNG too.
            torch.default_generator.manual_seed(seed)
            return torch.stack([self.transform(image) for image in images])


def batch_augment(augment: str, image_size: int, random_erase: float) -> BatchAugment | None:
    """data.augment and data.random_erase for a uint8 batch in memory; None when nothing is random."""
    transform = tensor_transform(augment, image_size, random_erase)
    return BatchAugment(transform) if transform is not None else None


def batch_mix(mixup: float, cutmix: float, num_classes: int) -> v2.Transform | None:
    """MixUp (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) of a batch; None when both alphas are 0.

    Called as mix(images, labels) -> (images, targets): labels (B,) int64 become targets (B, C) float,
    each row summing to 1. With both set, each batch gets one of the two with equal probability
    (v2.RandomChoice), as torchvision's reference train.py does. They pair image i with image i-1 of
    the (shuffled) batch and draw from torch's global RNG, which checkpoints restore.
    """
    mixes = []
    if mixup > 0:
        mixes.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        mixes.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
