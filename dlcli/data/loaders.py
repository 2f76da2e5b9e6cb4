"""Batch iterators the runner trains on: a deterministic order that survives resume.

Every loader has the same two-method surface:

    len(loader)                      # batches per epoch on this process
    loader.batches(epoch, start=0)   # the epoch's batches from batch `start`, on the device

The order of epoch e is a pure function of (seed, epoch) (the same permutation as
torch's DistributedSampler, which also shards it across ranks), and random augmentation
(torchvision.transforms.v2, dlcli/data/augment.py) draws from torch's CPU generator reseeded
by (seed, epoch, position) inside `torch.random.fork_rng`, which puts the global state back
after. So a run resumed at batch k of epoch e sees exactly the batches the uninterrupted run
saw, and the model's own RNG use (dropout, MixUp) stays on the global RNG the checkpoint restores.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def epoch_order(
    size: int, epoch: int, seed: int, shuffle: bool, rank: int, world_size: int, drop_last: bool
) -> list[int]:
    """This rank's sample indices for an epoch (torch's DistributedSampler, set_epoch included)."""
    sampler = DistributedSampler(
        range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (SplitMix-style), for per-batch generators."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & 0xFFFFFFFFFFFFFFFF
        value = (value * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return value >> 1


class TensorImages:
    """Images held in memory as uint8 (N, 3, S, S): batched, augmented and normalized on the device.

    No worker processes: for datasets that fit in memory (shapes, CIFAR, MNIST, a small image
    folder) slicing one tensor is faster than any DataLoader, on the CPU and on a GPU alike.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        augment: Callable[[torch.Tensor, int], torch.Tensor] | None,
        seed: int,
        device: torch.device,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment if train else None  # (uint8 batch, seed) -> uint8 batch: data/augment.py
        self.seed = seed
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        per_rank = len(self.labels) // self.world_size if self.train else math.ceil(len(self.labels) / self.world_size)
        if self.train:  # drop the last partial batch: a batch of 1 breaks BatchNorm
            return max(1, per_rank // self.batch_size)
        return math.ceil(per_rank / self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(
            len(self.labels), epoch, self.seed, self.train, self.rank, self.world_size, drop_last=self.train
        )
        index = torch.tensor(order, dtype=torch.long, device=self.device)
        for b in range(start, len(self)):
            idx = index[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment is not None:  # per-image draws, seeded by the batch's place in the run
                x = self.augment(x, mix_seed(self.seed, epoch, b, self.rank))
            yield normalize_uint8(x, self.memory_format), self.labels[idx]


def normalize(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """[0, 1] pixels -> ImageNet mean/std, in the memory format the model wants."""
    mean, std = _mean_std(x.device)
    return x.sub_(mean).div_(std).contiguous(memory_format=memory_format)


def normalize_uint8(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """uint8 pixels -> ImageNet mean/std in one fused multiply-add: x * 1/(255 std) - mean/std."""
    scale, shift = _uint8_affine(x.device)
    return torch.addcmul(shift, x.float(), scale).contiguous(memory_format=memory_format)


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device: a host-to-device copy per batch would stall the GPU."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


@functools.lru_cache(maxsize=8)
def _uint8_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = _mean_std(device)
    return 1.0 / (255.0 * std), -mean / std


class _SeededItems(Dataset):
    """Wraps a dataset so each item's random transform is seeded by (seed, epoch, index).

    Keys are (index, epoch) pairs, so persistent workers learn the epoch with every item. The
    seed is set inside a forked RNG: the main process's global RNG is untouched whether items
    load in workers or in the main process.
    """

    def __init__(self, dataset: Dataset, transform: Callable, seed: int, random: bool):
        self.dataset, self.transform, self.seed, self.random = dataset, transform, seed, random

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        image, label = self.dataset[index]
        if not self.random:  # evaluation transforms draw nothing
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            # default_generator, not torch.manual_seed: that would reseed (and leave reseeded) the CUDA RNG too.
            torch.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
            return self.transform(image), label


class _Keys(Sampler):
    """The (index, epoch) keys of the epoch in progress; set before each pass."""

    def __init__(self):
        self.keys: list[tuple[int, int]] = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class StreamingImages:
    """Images decoded from disk by persistent DataLoader workers (an ImageNet-sized folder)."""

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable,
        batch_size: int,
        *,
        train: bool,
        seed: int,
        device: torch.device,
        num_workers: int,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.size = len(dataset)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.rank, self.world_size = rank, world_size
        self.keys = _Keys()
        self.loader = DataLoader(
            _SeededItems(dataset, transform, seed, random=train),
            batch_size=batch_size,
            sampler=self.keys,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=device.type == "cuda",
            # A private generator: DataLoader draws its base seed from it, not from the global
            # RNG that dropout uses (augmentation is seeded per item, above).
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        per_rank = self.size // self.world_size if self.train else math.ceil(self.size / self.world_size)
        return max(1, per_rank // self.batch_size) if self.train else math.ceil(per_rank / self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(self.size, epoch, self.seed, self.train, self.rank, self.world_size, self.train)
        self.keys.keys = [(index, epoch) for index in order[start * self.batch_size : len(self) * self.batch_size]]
        for x, y in self.loader:
            x = normalize(x.to(self.device, non_blocking=True), self.memory_format)
            yield x, y.to(self.device, non_blocking=True)
