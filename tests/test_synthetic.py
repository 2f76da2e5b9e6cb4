"""Tests for the built-in "shapes" dataset (dlcli.data.synthetic)."""

from __future__ import annotations

import pytest
import torch

from dlcli.data.synthetic import SHAPE_CLASSES, make_shapes


def test_ten_distinct_class_names() -> None:
    assert len(SHAPE_CLASSES) == 10
    assert len(set(SHAPE_CLASSES)) == 10


def test_shapes_and_dtypes() -> None:
    images, labels = make_shapes(12, 32, seed=0, split="train")
    assert images.shape == (12, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert labels.shape == (12,)
    assert labels.dtype == torch.int64


def test_same_call_gives_same_data() -> None:
    a_images, a_labels = make_shapes(20, 32, seed=3, split="val")
    b_images, b_labels = make_shapes(20, 32, seed=3, split="val")
    assert torch.equal(a_images, b_images)
    assert torch.equal(a_labels, b_labels)


def test_image_i_does_not_depend_on_count() -> None:
    small_images, small_labels = make_shapes(7, 32, seed=5, split="train")
    big_images, big_labels = make_shapes(25, 32, seed=5, split="train")
    assert torch.equal(small_images, big_images[:7])
    assert torch.equal(small_labels, big_labels[:7])


def test_splits_and_seeds_differ() -> None:
    train, _ = make_shapes(10, 32, seed=0, split="train")
    val, _ = make_shapes(10, 32, seed=0, split="val")
    test, _ = make_shapes(10, 32, seed=0, split="test")
    other_seed, _ = make_shapes(10, 32, seed=1, split="train")
    for other in (val, test, other_seed):
        # Not one image in common, not just "not all equal".
        for i in range(10):
            assert not torch.equal(train[i], other[i])
    assert not torch.equal(val, test)


def test_images_within_a_split_differ() -> None:
    images, _ = make_shapes(20, 32, seed=0, split="train")
    flat = images.reshape(20, -1)
    assert len({tuple(row.tolist()) for row in flat}) == 20


def test_all_labels_present_and_balanced() -> None:
    _, labels = make_shapes(50, 16, seed=0, split="train")
    counts = torch.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.tolist() == [5] * len(SHAPE_CLASSES)


@pytest.mark.parametrize("size", [16, 24, 33, 64, 128, 300, 512])
def test_any_image_size(size: int) -> None:
    images, labels = make_shapes(3, size, seed=0, split="test")
    assert images.shape == (3, 3, size, size)
    assert labels.tolist() == [0, 1, 2]


def test_shape_contrasts_with_background() -> None:
    # The image centre region must not be a flat copy of the corners: the
    # shape is large and inside the frame, so each image has real structure.
    images, _ = make_shapes(30, 32, seed=0, split="train")
    per_image_std = images.float().reshape(30, 3, -1).std(dim=2).max(dim=1).values
    assert bool((per_image_std > 20).all())


def test_zero_count() -> None:
    images, labels = make_shapes(0, 32, seed=0, split="train")
    assert images.shape == (0, 3, 32, 32)
    assert labels.shape == (0,)


def test_unknown_split_raises() -> None:
    with pytest.raises(ValueError, match="split"):
        make_shapes(4, 32, seed=0, split="training")


@pytest.mark.parametrize("kwargs", [{"count": -1}, {"image_size": 4}, {"seed": -1}])
def test_bad_arguments_raise(kwargs: dict[str, int]) -> None:
    args = {"count": 4, "image_size": 32, "seed": 0, "split": "train"} | kwargs
    with pytest.raises(ValueError):
        make_shapes(**args)  # type: ignore[arg-type]
