"""Training augmentation (dlcli/data/augment.py): data.augment and data.random_erase per image,
train.mixup and train.cutmix per batch, through the loaders, the classify task and `dl train`.

All on the CPU with fixed seeds: 8 shapes images of 32 px for the transforms, resnet18 on tiny
shapes runs (16-32 px, batch 4, 2 steps) for the command line, one resume of 13 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dlcli import checkpoint
from dlcli.config import validate
from dlcli.data.augment import MEAN_PIXEL, batch_augment, batch_mix, pil_transform
from dlcli.data.images import Split, make_loader
from dlcli.data.loaders import _SeededItems
from dlcli.data.synthetic import make_shapes
from dlcli.runtime import create_runtime
from dlcli.tasks import classify

from conftest import TINY_SHAPES, assert_same_training_state, dl, sets

# Results that depend on the CPU's kernels (resampling, the resumed run's weights).
pytestmark = pytest.mark.numerics

SIZE = 32
AUGMENTS = ["random_crop", "random_resized_crop", "trivial_augment", "rand_augment", "auto_augment"]
# (data.augment, data.random_erase): every option, and erasing alone and on top of a crop.
OPTIONS = [(name, 0.0) for name in AUGMENTS] + [("none", 1.0), ("random_crop", 0.5)]


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """8 shapes images (8, 3, 32, 32) uint8 and their labels."""
    return make_shapes(8, SIZE, 0, "train")


# --------------------------------------------------------------------------- per image, in memory


@pytest.mark.parametrize("augment, random_erase", OPTIONS)
def test_batch_augment_is_seeded_per_batch_and_changes_the_images(images, augment, random_erase) -> None:
    x, _ = images
    aug = batch_augment(augment, SIZE, random_erase)
    rng_before = torch.get_rng_state()
    out = aug(x, 123)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, aug(x, 123))  # the same seed, the same batch
    assert not torch.equal(out, aug(x, 124))
    assert not torch.equal(out, x)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG (dropout, MixUp) is untouched


@pytest.mark.parametrize("augment, random_erase", OPTIONS)
def test_each_image_of_a_batch_gets_its_own_draw(images, augment, random_erase) -> None:
    """A v2 transform called on a whole batch would treat 8 copies of one image alike."""
    x, _ = images
    copies = x[:1].expand(8, -1, -1, -1).contiguous()
    out = batch_augment(augment, SIZE, random_erase)(copies, 7)
    assert len({tuple(image.flatten().tolist()) for image in out}) > 1


def test_random_crop_is_a_padded_crop_and_a_flip(images) -> None:
    """random_crop keeps its meaning: an image shifted by at most 4 px (pad 32/8), zeros outside, maybe mirrored."""
    x, _ = images
    out = batch_augment("random_crop", SIZE, 0.0)(x, 3)
    padded = F.pad(x, (4, 4, 4, 4))
    for image, source in zip(out, padded, strict=True):
        windows = [source[:, i : i + SIZE, j : j + SIZE] for i in range(9) for j in range(9)]
        assert any(torch.equal(image, w) or torch.equal(image, w.flip(-1)) for w in windows)


def test_random_erasing_fills_with_the_mean_pixel(images) -> None:
    x, _ = images
    out = batch_augment("none", SIZE, 1.0)(x, 0)
    changed = (out != x).any(dim=1)  # (N, H, W)
    assert changed.any(dim=(1, 2)).all()  # p=1: every image has a rectangle erased
    mean = torch.tensor(MEAN_PIXEL, dtype=torch.uint8)[:, None]
    for image, mask in zip(out, changed, strict=True):
        assert torch.equal(image[:, mask], mean.expand(-1, int(mask.sum())))


def test_no_augmentation_is_no_transform() -> None:
    assert batch_augment("none", SIZE, 0.0) is None


def test_the_loaders_augment_training_batches_only(images) -> None:
    x, y = images
    cfg = validate(
        {"task": "classify", "data": {"image_size": SIZE, "batch_size": 4, "augment": "trivial_augment"}},
        classify.Config,
    )
    runtime = create_runtime(cfg.train, "cpu")
    train = make_loader(Split(x, y), cfg.data, 0, runtime, train=True)
    evaluation = make_loader(Split(x, y), cfg.data, 0, runtime, train=False)
    assert train.augment is not None and evaluation.augment is None
    first = [b[0] for b in train.batches(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, [b[0] for b in train.batches(1)], strict=True))
    resumed = [b[0] for b in train.batches(1, start=1)]  # batch 1 of epoch 1 on its own, as after a resume
    assert torch.equal(resumed[0], first[1])
    assert not torch.equal(first[0], [b[0] for b in train.batches(2)][0])


# --------------------------------------------------------------------------- per image, streamed


@pytest.mark.parametrize("augment, random_erase", OPTIONS)
def test_streamed_images_are_augmented_one_by_one_and_seeded(images, augment, random_erase) -> None:
    x, y = images
    pictures = [(Image.fromarray(image.permute(1, 2, 0).numpy()), int(label)) for image, label in zip(x, y)]
    items = _SeededItems(pictures, pil_transform(augment, SIZE, random_erase), seed=0, random=True)
    out, label = items[(2, 5)]
    assert out.dtype == torch.float32 and out.shape == (3, SIZE, SIZE) and label == int(y[2])
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, items[(2, 5)][0])  # (index, epoch) fixes the draw
    assert not torch.equal(out, items[(2, 6)][0])
    assert not torch.equal((out * 255).round().to(torch.uint8), x[2])


# --------------------------------------------------------------------------- MixUp / CutMix


@pytest.mark.parametrize("mixup, cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixed_targets_are_distributions(images, mixup, cutmix) -> None:
    x, y = images
    mix = batch_mix(mixup, cutmix, num_classes=10)
    torch.manual_seed(0)
    mixed, targets = mix(x.float(), y)
    assert mixed.shape == x.shape and targets.shape == (8, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
    assert (targets >= 0).all()
    assert not torch.equal(mixed, x.float()) and not torch.equal(targets, F.one_hot(y, 10).float())
    torch.manual_seed(0)
    again, again_targets = mix(x.float(), y)
    assert torch.equal(again, mixed) and torch.equal(again_targets, targets)


def test_both_mixes_are_used_with_equal_probability() -> None:
    """CutMix pastes pixels of the previous image (each pixel is one of the two); MixUp blends them."""
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, SIZE, SIZE), torch.arange(8)
    mix = batch_mix(0.2, 1.0, num_classes=10)
    cuts = 0
    for _ in range(40):
        mixed, _ = mix(x, y)
        cuts += bool(((mixed == x) | (mixed == x.roll(1, 0))).all())
    assert 10 <= cuts <= 30, cuts


def test_no_mixing_is_no_transform() -> None:
    assert batch_mix(0.0, 0.0, num_classes=10) is None


def test_the_loss_takes_the_mixed_targets_with_label_smoothing() -> None:
    cfg = validate(
        {
            "task": "classify",
            "data": {"image_size": 16, "batch_size": 4, "train_size": 10, "val_size": 10, "test_size": 10},
            "train": {"mixup": 0.4, "cutmix": 1.0, "label_smoothing": 0.1},
        },
        classify.Config,
    )
    job = classify.build(cfg, create_runtime(cfg.train, "cpu"))
    images, labels = next(iter(job.train_data.batches(0)))
    net = job.model.eval()  # the same outputs for both passes
    torch.manual_seed(3)
    loss = job.train_step(net, (images, labels))["loss"]
    torch.manual_seed(3)
    mixed, targets = batch_mix(0.4, 1.0, 10)(images, labels)
    torch.testing.assert_close(loss, F.cross_entropy(net(mixed), targets, label_smoothing=0.1))
    assert not torch.equal(mixed, images)


# --------------------------------------------------------------------------- dl train


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(["train.mixup=0.2"], id="mixup"),
        pytest.param(["train.cutmix=1.0"], id="cutmix"),
        pytest.param(
            [
                "train.mixup=0.2",
                "train.cutmix=1.0",
                "train.label_smoothing=0.1",
                "data.augment=trivial_augment",
                "data.random_erase=0.25",
            ],
            id="everything",
        ),
    ],
)
def test_a_mixed_run_trains_end_to_end(tmp_path: Path, settings: list[str]) -> None:
    run = tmp_path / "run"
    result = dl(
        "train", "resnet", "--out", run, "-q", "--json", *TINY_SHAPES,
        *sets("data.image_size=16", "train.max_steps=2", *settings),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)


def test_a_streamed_image_folder_trains_with_augmentation(tmp_path: Path) -> None:
    root = tmp_path / "images"
    gen = torch.Generator().manual_seed(0)
    for name, rgb in {"red": (220, 30, 30), "blue": (30, 30, 220)}.items():
        (root / "train" / name).mkdir(parents=True)
        for i in range(6):
            pixels = (torch.tensor(rgb) + torch.randint(-20, 21, (20, 24, 3), generator=gen)).clamp(0, 255)
            Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / "train" / name / f"{i}.png")
    settings = [
        "data.dataset=imagefolder", f"data.root={root}", "data.image_size=16", "data.val_fraction=0.25",
        "data.batch_size=4", "data.in_memory=false", "data.num_workers=0", "data.augment=rand_augment",
        "data.random_erase=0.5", "train.cutmix=1.0", "train.max_steps=2",
    ]  # fmt: skip
    result = dl("train", "resnet", "--out", tmp_path / "run", "-q", "--json", *sets(*settings))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2


def test_resume_with_augmentation_and_mixing_is_bit_identical(tmp_path: Path) -> None:
    """Stopped at step 7 (mid-epoch: 10 batches per epoch) and resumed to 13 (into epoch 2)."""
    tiny = [
        *sets(
            "data.image_size=16", "data.batch_size=4", "data.train_size=40", "data.val_size=10",
            "data.test_size=10", "train.epochs=3", "optim.lr=0.05", "data.augment=trivial_augment",
            "data.random_erase=0.25", "train.mixup=0.2", "train.cutmix=1.0",
        ),
        "-q", "--json",
    ]  # fmt: skip

    def train(out: str, steps: int, *resume: str):
        result = dl("train", "resnet", "--out", tmp_path / out, *resume, *tiny, *sets(f"train.max_steps={steps}"))
        assert result.exit_code == 0, result.output
        return checkpoint.load(tmp_path / out / "checkpoints" / "last.pt")

    straight = train("straight", 13)
    assert train("resumed", 7).step == 7
    resumed = train("resumed", 13, "--resume")
    assert_same_training_state(straight, resumed)


# --------------------------------------------------------------------------- bad values: exit 2


@pytest.mark.parametrize(
    "setting, needles",
    [
        ("train.mixup=-0.2", ["train.mixup", "greater than or equal to 0"]),
        ("train.cutmix=-1", ["train.cutmix", "greater than or equal to 0"]),
        ("data.random_erase=1.5", ["data.random_erase", "less than or equal to 1"]),
        ("data.augment=cutout", ["data.augment", "'trivial_augment'", "cutout"]),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, setting: str, needles: list[str]) -> None:
    result = dl("train", "resnet", "--out", tmp_path / "run", "-q", *sets(setting))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
