"""Tests for image classification (dlcli.tasks.classify) through the `dl` command line.

Everything runs on the CPU, offline, on tiny data: the shapes at 32 px (or the architecture's
minimum input size), batches of 2, two optimizer steps. Pretrained weights are stand-ins:
a randomly initialised torchvision state_dict written where torch hub caches the real file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms
from typer.testing import CliRunner, Result

from dlcli.config import validate
from dlcli.data.download import hub_weights_path, torchvision_weights
from dlcli.data.imagecheck import read_image
from dlcli.data.synthetic import make_shapes
from dlcli.errors import DlError
from dlcli.runtime import create_runtime
from dlcli.tasks import classify

from conftest import TINY_SHAPES, dl, sets

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Tiny shapes data (TINY_SHAPES): 5 train batches of 4, and small val/test splits. Batches of 4, not 2:
# at 32 px most nets end in 1x1 maps, where a batch of 2 gives their BatchNorms 2 values per channel (refused).
SMALL = TINY_SHAPES

# recipe -> the image size it is tested at: max(32, torchvision's min_size for the arch).
RECIPES = {
    "resnet": 32,
    "alexnet": 63,
    "squeezenet": 32,
    "vgg16": 32,
    "densenet": 32,
    "inception": 75,
    "googlenet": 32,
    "shufflenet": 32,
    "mobilenet": 32,
    "resnext": 32,
    "wide_resnet": 32,
    "mnasnet": 32,
}
# Their checkpoints hold 0.5-1 GB each (weights and SGD momentum), written three times and read
# twice per run: 10-25 s each on a shared 2-core machine. The default run takes one training
# step of each instead (test_heavy_recipe_takes_a_training_step); `pytest -m slow` trains them.
HEAVY = {"vgg16", "wide_resnet"}
RECIPE_ARCHS = {
    "resnet18",
    "alexnet",
    "squeezenet1_0",
    "vgg16",
    "densenet161",
    "inception_v3",
    "googlenet",
    "shufflenet_v2_x1_0",
    "mobilenet_v2",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mnasnet1_0",
}


def _summary(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _assert_usage_error(result: Result, *needles: str) -> str:
    """Exit 2, a short message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("error:"), err
    assert len(err) < 2500, err
    for needle in needles:
        assert needle in err, err
    return err


def _write_png(path: Path, size: int, index: int = 0) -> Path:
    images, _ = make_shapes(index + 1, size, seed=7, split="test")
    Image.fromarray(images[index].permute(1, 2, 0).numpy()).save(path)
    return path


def _fake_hub_resnet18() -> tuple[Path, dict[str, torch.Tensor]]:
    """A random resnet18 state_dict where torch hub keeps torchvision's ImageNet weights file."""
    path = hub_weights_path(torchvision_weights("resnet18"))
    path.parent.mkdir(parents=True, exist_ok=True)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    state = torchvision.models.resnet18().state_dict()
    torch.random.set_rng_state(gen_state)
    torch.save(state, path)
    return path, state


# --------------------------------------------------------------------------- a trained run, shared


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-18 that memorises 100 shapes (8 epochs of 10 steps): a run with sane BN statistics."""
    from dlcli.cli import app

    run = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DL_OFFLINE", "1")
        result = CliRunner().invoke(
            app,
            [
                "train",
                str(CONFIGS / "resnet.yaml"),
                "--out",
                str(run),
                "--json",
                "-q",
                "--set",
                "optim.name=adamw",
                "--set",
                "optim.lr=2e-3",
                "--set",
                "optim.weight_decay=0.05",
                "--set",
                "train.epochs=8",
                "--set",
                "train.log_every=10",
                "--set",
                "data.augment=none",
                "--set",
                "data.batch_size=10",
                "--set",
                "data.train_size=100",
                "--set",
                "data.val_size=20",
                "--set",
                "data.test_size=20",
                "--set",
                "data.image_size=32",
            ],
        )
    assert result.exit_code == 0, result.output
    return run


# --------------------------------------------------------------------------- every bundled recipe


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=pytest.mark.slow) if r in HEAVY else r for r in RECIPES])
def test_recipe_trains_and_evaluates(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path, recipe: str
) -> None:
    run = tmp_path / "run"
    extra = ["--set", "model.aux_logits=auto"] if recipe == "inception" else []
    result = cli(
        "train",
        repo_configs / f"{recipe}.yaml",
        "--out",
        run,
        "--json",
        "-q",
        "--set",
        "train.max_steps=2",
        "--set",
        f"data.image_size={RECIPES[recipe]}",
        *SMALL,
        *extra,
    )
    summary = _summary(result)
    assert summary["task"] == "classify"
    assert summary["steps"] == 2
    assert 0.0 <= summary["metrics"]["val"]["top1"] <= 1.0
    assert set(summary["metrics"]) == {"val", "test"}
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    assert json.loads((run / "summary.json").read_text()) == summary

    evaluated = cli("eval", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["split"] == "test"
    assert set(report["metrics"]) == {"loss", "top1", "top5"}
    assert 0.0 <= report["metrics"]["top1"] <= report["metrics"]["top5"] <= 1.0
    # eval reproduces the test metrics training reported for the same (best) checkpoint. After two
    # steps the BatchNorm running statistics are far off, so deep nets' eval logits can overflow
    # (the loss is then inf/nan, in plain PyTorch too); the accuracies are still well defined.
    for key in ("loss", "top1", "top5"):
        assert report["metrics"][key] == pytest.approx(summary["metrics"]["test"][key], rel=1e-4, nan_ok=True)
    shutil.rmtree(run)  # up to 2 GB of checkpoints: don't keep them in pytest's tmp folders


@pytest.mark.parametrize("recipe", sorted(HEAVY))
def test_heavy_recipe_takes_a_training_step(repo_configs: Path, recipe: str) -> None:
    from dlcli.config import apply_overrides, read_yaml
    from dlcli.tasks import get_task

    small = ["data.batch_size=4", "data.train_size=10", "data.val_size=10", "data.test_size=10", "data.image_size=32"]
    raw = apply_overrides(read_yaml(repo_configs / f"{recipe}.yaml"), small)
    task = get_task(raw["task"])
    cfg = validate(raw, task.Config)
    job = task.build(cfg, create_runtime(cfg.train, "cpu"))
    net = job.model.train()
    loss = job.train_step(net, next(iter(job.train_data.batches(0))))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    net.eval()
    with torch.no_grad():
        sums = job.eval_step(net, next(iter(job.eval_data["val"].batches(0))))
    assert int(sums["count"]) == 4
    assert set(sums) == {"loss", "top1", "top5", "count"}


def test_every_bundled_classifier_recipe_is_tested(repo_configs: Path) -> None:
    import yaml

    archs = {}
    for path in repo_configs.glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        if raw.get("task") == "classify" and raw["data"]["dataset"] == "shapes":
            archs[path.stem] = raw["model"]["arch"]
    assert set(archs) == set(RECIPES)
    assert set(archs.values()) == RECIPE_ARCHS
    for recipe, size in RECIPES.items():
        assert size == max(32, classify.min_input_size(archs[recipe]))


# --------------------------------------------------------------------------- auxiliary heads


def test_googlenet_trains_its_auxiliary_heads() -> None:
    cfg = validate(
        {
            "task": "classify",
            "model": {"arch": "googlenet", "aux_logits": True},
            "data": {"image_size": 32, "batch_size": 4, "train_size": 10, "val_size": 10, "test_size": 10},
        },
        classify.Config,
    )
    model = classify.build_model(cfg.model, 10, 32)
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple)
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 10)

    job = classify.build(cfg, create_runtime(cfg.train, "cpu"))
    images, labels = next(iter(job.train_data.batches(0)))
    net = job.model.train()
    torch.manual_seed(5)  # the same dropout masks for both forward passes
    loss = job.train_step(net, (images, labels))["loss"]
    torch.manual_seed(5)
    out = net(images)
    expected = F.cross_entropy(out.logits, labels) + 0.4 * (
        F.cross_entropy(out.aux_logits1, labels) + F.cross_entropy(out.aux_logits2, labels)
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for head in (net.aux1.fc2, net.aux2.fc2, net.fc):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- learning


def test_training_loss_falls(trained_run: Path) -> None:
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(10, 81, 10))
    for r in records:
        assert {"step", "epoch", "split", "elapsed_s"} <= set(r)
    assert train[-1]["loss"] < 0.6 * train[0]["loss"], [r["loss"] for r in train]
    assert {r["split"] for r in records} == {"train", "val", "test"}


@pytest.mark.slow
def test_resnet18_learns_shapes(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    """2000 shapes, 4 epochs: well above chance (0.1) on val. About 45 s on one CPU thread."""
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "--json",
        "-q",
        "--set",
        "optim.name=adamw",
        "--set",
        "optim.lr=2e-3",
        "--set",
        "optim.weight_decay=0.05",
        "--set",
        "train.epochs=4",
        "--set",
        "data.batch_size=32",
        "--set",
        "data.train_size=2000",
        "--set",
        "data.val_size=200",
        "--set",
        "data.test_size=200",
        "--set",
        "data.image_size=32",
    )
    assert _summary(result)["metrics"]["val"]["top1"] > 0.3


# --------------------------------------------------------------------------- pretrained and fine-tuning


def test_pretrained_weights_come_from_the_hub_cache(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    _, state = _fake_hub_resnet18()
    run = tmp_path / "run"
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        run,
        "--json",
        "-q",
        "--set",
        "train.max_steps=2",
        "--set",
        "data.image_size=32",
        *SMALL,
        "--set",
        "model.pretrained=true",
        "--set",
        "model.num_classes=10",
        "--set",
        "model.freeze_backbone=true",
    )
    assert _summary(result)["steps"] == 2
    trained = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(trained["conv1.weight"], state["conv1.weight"])
    assert torch.equal(trained["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert trained["fc.weight"].shape == (10, 512)


def test_pretrained_weights_missing_offline(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    expected = hub_weights_path(torchvision_weights("resnet18"))
    assert str(tmp_path) in str(expected)  # the test's own hub cache
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        "--set",
        "train.max_steps=2",
        "--set",
        "data.image_size=32",
        *SMALL,
        "--set",
        "model.pretrained=true",
    )
    _assert_usage_error(result, "resnet18-f37072fd.pth", str(expected.parent))


def test_fine_tune_from_a_previous_runs_checkpoint(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path, trained_run: Path
) -> None:
    best = trained_run / "checkpoints" / "best.pt"
    run = tmp_path / "run"
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        run,
        "--json",
        "-q",
        "--set",
        "train.max_steps=2",
        "--set",
        "data.image_size=32",
        *SMALL,
        "--set",
        f"model.weights={best}",
        "--set",
        "model.freeze_backbone=true",
    )
    assert _summary(result)["steps"] == 2
    before = torch.load(best, weights_only=True)["model"]
    after = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])  # the head trained


def test_weights_from_a_damaged_checkpoint_are_refused(tmp_path: Path, trained_run: Path) -> None:
    """model.weights reads a dl checkpoint only when its sha256 seal still matches (a flipped bit is refused)."""
    damaged = tmp_path / "best.pt"
    data = bytearray((trained_run / "checkpoints" / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(DlError, match="model.weights: .*best.pt is corrupt"):
        classify.load_weights_file(torchvision.models.resnet18(num_classes=10), damaged)


# --------------------------------------------------------------------------- data.eval_flip: flip test-time augmentation


def test_eval_logits_with_flip_average_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    images = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(classify.eval_logits(net, images, False), net(images))
        by_hand = (net(images) + net(images.flip(-1))) / 2  # left-right: the last (width) axis
        torch.testing.assert_close(classify.eval_logits(net, images, True), by_hand)
        symmetric = torch.cat([images[..., :4], images[..., :4].flip(-1)], dim=-1)  # its own mirror image
        torch.testing.assert_close(classify.eval_logits(net, symmetric, True), net(symmetric))


def test_dl_eval_flip_scores_the_mirrored_images_too(cli: Callable[..., Result], trained_run: Path) -> None:
    plain = _summary(cli("eval", trained_run, "--json"))
    assert plain["flip"] is False  # the recipe's data.eval_flip
    assert _summary(cli("eval", trained_run, "--no-flip", "--json"))["metrics"] == plain["metrics"]
    flipped = _summary(cli("eval", trained_run, "--flip", "--json", "--confusion", trained_run.parent / "c.png"))
    assert flipped["flip"] is True
    assert flipped["metrics"]["loss"] != plain["metrics"]["loss"]  # other logits: a shape is rarely symmetric
    counts = torch.tensor(flipped["confusion"]["counts"])
    # the confusion matrix counts the same (mirrored-too) predictions as the metrics
    assert counts.diagonal().sum().item() / counts.sum().item() == pytest.approx(flipped["metrics"]["top1"])


def test_a_run_with_eval_flip_validates_and_tests_mirrored(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = sets("data.image_size=16", "train.max_steps=2", "data.eval_flip=true")
    summary = _summary(cli("train", CONFIGS / "resnet.yaml", "--out", run, "--json", "-q", *TINY_SHAPES, *settings))
    val = _summary(cli("eval", run, "--split", "val", "--json"))
    assert val["flip"] is True
    assert val["metrics"]["loss"] == pytest.approx(summary["metrics"]["val"]["loss"])
    assert _summary(cli("eval", run, "--split", "val", "--no-flip", "--json"))["metrics"] != val["metrics"]


# --------------------------------------------------------------------------- predict


def test_predict_matches_a_hand_written_pipeline(cli: Callable[..., Result], tmp_path: Path, trained_run: Path) -> None:
    image = _write_png(tmp_path / "shape.png", 48)  # not the run's 32 px: the resize matters
    result = cli("predict", image, "--run", trained_run, "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert len(answer) == 1 and answer[0]["image"] == str(image)
    top = answer[0]["top"]
    assert len(top) == 3
    assert [r["prob"] for r in top] == sorted((r["prob"] for r in top), reverse=True)

    ckpt = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=True)
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(ckpt["model"])
    model.eval()
    size = 32
    pipeline = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    x = pipeline(Image.open(image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    p, i = probs.max(dim=0)
    assert top[0]["label"] == ckpt["extra"]["classes"][int(i)]
    assert abs(top[0]["prob"] - float(p)) < 1e-5
    assert 0.0 < top[0]["prob"] < 1.0  # a run with sane BN statistics: not a saturated softmax


def test_predict_sees_a_photo_upright_by_its_exif_orientation(
    cli: Callable[..., Result], tmp_path: Path, trained_run: Path
) -> None:
    """A JPEG stored sideways with EXIF orientation 6 (as phones save portraits) is predicted as the
    upright picture: the same answer as a lossless PNG of those pixels turned upright by hand."""
    upright = Image.open(_write_png(tmp_path / "shape.png", 48)).crop(
        (0, 0, 48, 32)
    )  # not square: the crop differs when turned
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", exif=exif)
    by_hand = Image.open(tmp_path / "sideways.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_270)
    by_hand.save(tmp_path / "by_hand.png")
    answers = [
        _summary(cli("predict", tmp_path / name, "--run", trained_run, "--top", "3", "--json"))[0]["top"]
        for name in ("sideways.jpg", "by_hand.png")
    ]
    assert answers[0] == answers[1]
    assert read_image(tmp_path / "sideways.jpg").size == (48, 32)


def test_predict_with_imagenet_weights(cli: Callable[..., Result], tmp_path: Path) -> None:
    _, state = _fake_hub_resnet18()
    image = _write_png(tmp_path / "shape.png", 48)
    result = cli("predict", image, "--arch", "resnet18", "--weights", "imagenet", "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]["top"]
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    assert len(categories) == 1000
    assert len(top) == 3 and all(r["label"] in categories for r in top)

    model = torchvision.models.resnet18()
    model.load_state_dict(state)
    model.eval()
    pipeline = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    with torch.no_grad():
        probs = model(pipeline(Image.open(image).convert("RGB")).unsqueeze(0)).softmax(dim=1)[0]
    p, i = probs.max(dim=0)
    assert top[0]["label"] == categories[int(i)]
    assert abs(top[0]["prob"] - float(p)) < 1e-5


# --------------------------------------------------------------------------- dl models


def test_models_lists_the_classifiers(cli: Callable[..., Result]) -> None:
    result = cli("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["arch"]: row for row in json.loads(result.stdout)}
    assert RECIPE_ARCHS <= set(rows)
    for arch in RECIPE_ARCHS:
        row = rows[arch]
        assert isinstance(row["params"], int) and row["params"] > 1_000_000
        assert row["gflops"] > 0
        assert 0.0 < row["imagenet_top1"] < 1.0
        assert row["min_size"] >= 1
        assert row["aux_logits"] is (arch in ("googlenet", "inception_v3"))
    assert rows["inception_v3"]["min_size"] == 75
    assert rows["alexnet"]["min_size"] == 63
    assert rows["resnet18"]["imagenet_top1"] == pytest.approx(0.69758)


# --------------------------------------------------------------------------- bad input: exit 2, no traceback


def test_yaml_syntax_error(cli: Callable[..., Result], tmp_path: Path) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("task: classify\nmodel: {arch: resnet18\ndata: {image_size: 32}\n")
    _assert_usage_error(cli("train", recipe, "-q"), "broken.yaml", "line")


def test_unknown_key_suggests_the_right_one(cli: Callable[..., Result], repo_configs: Path) -> None:
    result = cli("train", repo_configs / "resnet.yaml", "-q", "--set", "optim.lrr=0.1")
    _assert_usage_error(result, "optim.lrr", "optim.lr'")


def test_wrong_type(cli: Callable[..., Result], repo_configs: Path) -> None:
    result = cli("train", repo_configs / "resnet.yaml", "-q", "--set", "train.epochs=abc")
    _assert_usage_error(result, "train.epochs", "abc")


def test_unknown_arch_suggests_a_close_one(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        *SMALL,
        "--set",
        "model.arch=resnet19",
    )
    _assert_usage_error(result, "resnet19", "Did you mean resnet18")
    assert not (tmp_path / "run").exists()


def test_missing_image_folder(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={missing}",
    )
    _assert_usage_error(result, str(missing), "train/")


def test_image_size_below_the_architectures_minimum(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    result = cli(
        "train",
        repo_configs / "alexnet.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        *SMALL,
        "--set",
        "data.image_size=32",
    )
    _assert_usage_error(result, "alexnet", "63")


def test_resume_from_a_corrupt_checkpoint(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", repo_configs / "resnet.yaml", "--out", run, "-q", "--set", "data.image_size=32", *SMALL]
    assert cli(*args, "--set", "train.max_steps=1").exit_code == 0
    (run / "checkpoints" / "last.pt").write_bytes(b"these bytes are not a checkpoint\n" * 10)
    _assert_usage_error(cli(*args, "--set", "train.max_steps=2", "--resume"), "last.pt")


def test_predict_a_file_that_is_not_an_image(cli: Callable[..., Result], tmp_path: Path, trained_run: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is text, not a JPEG\n")
    _assert_usage_error(cli("predict", fake, "--run", trained_run, "--json"), "photo.jpg")


def test_an_existing_run_is_never_overwritten_silently(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    # No --out: the run folder is runs/<name> under the current directory (the test's tmp folder).
    args = [
        "train",
        repo_configs / "resnet.yaml",
        "-q",
        "--set",
        "train.max_steps=1",
        "--set",
        "data.image_size=32",
        *SMALL,
    ]
    assert cli(*args).exit_code == 0
    run = tmp_path / "runs" / "resnet18-shapes"
    assert (run / "checkpoints" / "last.pt").is_file()
    before = (run / "checkpoints" / "last.pt").read_bytes()
    _assert_usage_error(cli(*args), "--resume", "--overwrite")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_with_nothing_to_resume(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    result = cli("train", repo_configs / "resnet.yaml", "--out", tmp_path / "run", "-q", *SMALL, "--resume")
    _assert_usage_error(result, "Nothing to resume")


# --------------------------------------------------------------------------- an image folder


def _image_folder(root: Path) -> Path:
    """root/{train,test}/{blue,red}/*.png: 6 images of 16x16 per class and split."""
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for name, rgb in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(6):
                noise = torch.randint(-20, 21, (16, 16, 3), generator=gen)
                pixels = (torch.tensor(rgb) + noise).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "loading",
    [
        pytest.param([], id="in_memory"),
        pytest.param(["--set", "data.in_memory=false", "--set", "data.num_workers=0"], id="streaming"),
    ],
)
def test_image_folder(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path, loading: list[str]) -> None:
    root = _image_folder(tmp_path / "images")
    run = tmp_path / "run"
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        run,
        "--json",
        "-q",
        "--set",
        "data.dataset=imagefolder",
        "--set",
        f"data.root={root}",
        "--set",
        "data.image_size=16",
        "--set",
        "data.val_fraction=0.25",
        "--set",
        "data.batch_size=4",
        "--set",
        "train.max_steps=2",
        *loading,
    )
    summary = _summary(result)
    assert summary["steps"] == 2
    assert set(summary["metrics"]) == {"val", "test"}
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["extra"]["classes"] == ["blue", "red"]
    assert ckpt["model"]["fc.weight"].shape == (2, 512)


# --------------------------------------------------------------------------- user text in messages


def test_error_messages_show_file_names_verbatim(cli: Callable[..., Result], tmp_path: Path, trained_run: Path) -> None:
    """A name with brackets is the user's text, not rich markup: shown as is, never a crash."""
    fake = tmp_path / "holiday [edited].jpg"
    fake.write_text("not an image\n")
    _assert_usage_error(cli("predict", fake, "--run", trained_run, "--json"), "holiday [edited].jpg")


def test_error_messages_with_markup_like_values_do_not_crash(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        *SMALL,
        "--set",
        "model.arch=res[/net]",
    )
    _assert_usage_error(result, "res[/net]")


def test_eval_human_output_names_the_split(cli: Callable[..., Result], trained_run: Path) -> None:
    result = cli("eval", trained_run)
    assert result.exit_code == 0, result.output
    assert "[test]" in result.stdout, result.stdout
    assert "top1" in result.stdout


# --------------------------------------------------------------------------- GoogLeNet / Inception v3 weights


def _fake_hub_file(arch: str) -> Path:
    """Like torchvision's own file for the arch: GoogLeNet/Inception v3 files hold the aux heads too."""
    path = hub_weights_path(torchvision_weights(arch))
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"aux_logits": True, "init_weights": True} if arch in classify.AUX_ARCHS else {}
    torch.save(torchvision.models.get_model(arch, weights=None, **kwargs).state_dict(), path)
    return path


@pytest.mark.parametrize("arch", ["googlenet", "inception_v3"])
def test_predict_with_imagenet_weights_of_an_aux_arch(cli: Callable[..., Result], tmp_path: Path, arch: str) -> None:
    _fake_hub_file(arch)
    image = _write_png(tmp_path / "shape.png", 48)
    result = cli("predict", image, "--arch", arch, "--weights", "imagenet", "--top", "2", "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]["top"]
    assert all(r["label"] in torchvision_weights(arch).meta["categories"] for r in top)


def test_pretrained_inception_trains_below_the_aux_head_size(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    """At 75 px aux_logits=auto turns the aux head off; torchvision's file still holds its weights."""
    _fake_hub_file("inception_v3")
    result = cli(
        "train",
        repo_configs / "inception.yaml",
        "--out",
        tmp_path / "run",
        "--json",
        "-q",
        *SMALL,
        "--set",
        "train.max_steps=2",
        "--set",
        "data.image_size=75",
        "--set",
        "model.aux_logits=auto",
        "--set",
        "model.pretrained=true",
    )
    assert _summary(result)["steps"] == 2


def test_a_pretrained_googlenet_is_evaluated_as_it_was_trained(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    """torchvision's ImageNet GoogLeNet re-normalizes its input (transform_input); so must eval/predict."""
    _fake_hub_file("googlenet")
    cfg = validate(
        {
            "task": "classify",
            "model": {"arch": "googlenet", "pretrained": True, "aux_logits": True},
            "data": {"image_size": 32},
        },
        classify.Config,
    )
    trained = classify.build_model(cfg.model, 10, 32)
    rebuilt = classify.build_model(cfg.model, 10, 32, load_weights=False)  # what eval, predict, resume build
    # (trained, rebuilt for eval): both re-normalize the input, as torchvision's ImageNet GoogLeNet does
    assert (trained.transform_input, rebuilt.transform_input) == (True, True)

    run = tmp_path / "run"
    summary = _summary(
        cli(
            "train",
            repo_configs / "googlenet.yaml",
            "--out",
            run,
            "--json",
            "-q",
            "--set",
            "train.max_steps=2",
            "--set",
            "data.batch_size=4",
            "--set",
            "data.train_size=20",
            "--set",
            "data.val_size=20",
            "--set",
            "data.test_size=20",
            "--set",
            "data.image_size=32",
            "--set",
            "model.pretrained=true",
        )
    )
    evaluated = cli("eval", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics["loss"] == pytest.approx(summary["metrics"]["test"]["loss"], rel=1e-4)


def test_resume_does_not_need_the_pretrained_file(
    cli: Callable[..., Result], repo_configs: Path, tmp_path: Path
) -> None:
    """The checkpoint holds every weight: resuming offline works after the hub file is gone."""
    path, _ = _fake_hub_resnet18()
    run = tmp_path / "run"
    args = [
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        run,
        "--json",
        "-q",
        "--set",
        "data.image_size=32",
        *SMALL,
        "--set",
        "model.pretrained=true",
        "--set",
        "model.num_classes=10",
    ]
    assert _summary(cli(*args, "--set", "train.max_steps=1"))["steps"] == 1
    path.unlink()
    assert _summary(cli(*args, "--set", "train.max_steps=2", "--resume"))["steps"] == 2


def test_torchvision_dataset_missing_offline(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    result = cli(
        "train",
        repo_configs / "resnet.yaml",
        "--out",
        tmp_path / "run",
        "--set",
        "data.dataset=cifar10",
        "--set",
        f"data.root={root}",
    )
    assert result.exit_code == 2
    assert "cifar10" in result.stderr and str(root) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.output


def test_dropout_on_an_arch_without_one(cli: Callable[..., Result], repo_configs: Path, tmp_path: Path) -> None:
    result = cli("train", repo_configs / "resnet.yaml", "--out", tmp_path / "run", "-q", "--set", "model.dropout=0.1")
    _assert_usage_error(result, "resnet18 has no dropout setting")


def test_sync_batchnorm_needs_cuda() -> None:
    import torch

    from dlcli.config import apply_overrides, validate
    from dlcli.errors import DlError
    from dlcli.runner import _wrap_for_forward
    from dlcli.runtime import Runtime
    from dlcli.tasks import classify

    cfg = validate(apply_overrides({"task": "classify"}, ["train.sync_batchnorm=true"]), classify.Config)
    runtime = Runtime(torch.device("cpu"), "fp32", False, world_size=2, _distributed=True)
    with pytest.raises(DlError, match="needs CUDA"):
        _wrap_for_forward(torch.nn.BatchNorm2d(3), cfg, runtime)


# --------------------------------------------------------------------------- recipe knobs (issue 17, part 4)


def test_the_cifar_stem_keeps_32px_maps_large_trains_evaluates_and_refuses_other_archs(tmp_path: Path) -> None:
    cfg = classify.ClassifyModel(arch="resnet18", stem="cifar")
    model = classify.build_model(cfg, 10, 32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    seen = {}
    model.layer4.register_forward_hook(lambda module, inputs, output: seen.update(shape=tuple(output.shape)))
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert seen["shape"][-2:] == (4, 4)  # the ImageNet stem ends at 1 x 1 for 32 px images

    run = tmp_path / "run"
    trained = dl(
        "train", "resnet", "--out", run, *SMALL, *sets("model.stem=cifar", "train.max_steps=2"), "-q", "--json"
    )
    assert trained.exit_code == 0, trained.output
    assert dl("eval", run, "--json").exit_code == 0  # rebuilt from the checkpoint's recipe: the same stem
    changed = dl("train", "resnet", "--out", run, *SMALL, *sets("train.max_steps=3"), "--resume", "-q")
    assert changed.exit_code == 2 and "model.stem" in changed.output

    refused = dl("train", "vgg16", "--out", tmp_path / "vgg", *SMALL, *sets("model.stem=cifar"), "-q")
    assert refused.exit_code == 2 and "has no such stem" in refused.output and "Traceback" not in refused.output


def test_bn_momentum_sets_every_batchnorm_and_refuses_archs_without_one(tmp_path: Path) -> None:
    def momenta(model: torch.nn.Module) -> set[float]:
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta(classify.build_model(classify.ClassifyModel(arch="mnasnet0_5"), 10, 32)) == {1 - 0.9997}
    tuned = classify.build_model(classify.ClassifyModel(arch="mnasnet0_5", bn_momentum=0.1), 10, 32)
    assert momenta(tuned) == {0.1}
    # the running statistics now follow the batches: one training forward moves them a tenth of the way
    tuned.train()(torch.randn(4, 3, 32, 32) * 3 + 2)
    assert tuned.layers[1].running_mean.abs().max() > 0.01

    refused = dl("train", "vgg16", "--out", tmp_path / "vgg", *SMALL, *sets("model.bn_momentum=0.1"), "-q")
    assert refused.exit_code == 2 and "no BatchNorm" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "vgg").exists()


def test_norm_weight_decay_puts_norm_layers_and_biases_in_their_own_group(tmp_path: Path) -> None:
    from dlcli.config import OptimConfig
    from dlcli.optim import parameter_groups

    model = torchvision.models.resnet18(num_classes=10)
    assert parameter_groups(model, model.parameters(), OptimConfig()) == list(model.parameters())  # unset: as given
    norm, rest = parameter_groups(model, model.parameters(), OptimConfig(weight_decay=0.05, norm_weight_decay=0.0))
    names = {id(p): n for n, p in model.named_parameters()}
    assert norm["weight_decay"] == 0.0 and "weight_decay" not in rest  # the rest take optim.weight_decay
    assert {names[id(p)] for p in norm["params"]} == {
        n for n, _ in model.named_parameters() if ".bn" in n or n.startswith("bn1") or "downsample.1" in n
    } | {"fc.bias"}
    assert all(names[id(p)].endswith("weight") and p.dim() > 1 for p in rest["params"])

    run = tmp_path / "run"
    knobs = sets("optim.name=adamw", "optim.weight_decay=0.05", "optim.norm_weight_decay=0", "train.max_steps=2")
    assert dl("train", "resnet", "--out", run, *SMALL, *knobs, "-q").exit_code == 0
    groups = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.05]
    unset = dl(
        "train", "resnet", "--out", run, *SMALL, *sets("optim.name=adamw", "train.max_steps=3"), "--resume", "-q"
    )
    assert unset.exit_code == 2 and "optim.norm_weight_decay" in unset.output and "Traceback" not in unset.output
