"""Tests for `dl export` (dlcli.export): ONNX, TorchScript and safetensors files of tiny runs.

The runs are trained once per module through the CLI: one optimizer step on 32 px shapes
(ResNet-18, MobileNet v2), and a character LSTM whose output layer shares the embedding matrix.
The exported classifiers are checked against the PyTorch model on ImageNet-normalized shapes
images (what `dl predict` feeds the network) at two batch sizes, neither the traced one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from dlcli import checkpoint, export
from dlcli.config import validate
from dlcli.data.loaders import normalize
from dlcli.data.synthetic import make_shapes
from dlcli.tasks import classify

from conftest import TINY_SHAPES

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

IMAGE_SIZE = 32
BATCH_SIZES = (1, 3)  # the export traces batch 2: both differ from it
ARCH_RECIPES = {"resnet18": "resnet", "mobilenet_v2": "mobilenet"}
ONE_STEP = ["--set", "train.max_steps=1", "-q", "--json"]
TINY_CLASSIFY = ["--set", f"data.image_size={IMAGE_SIZE}", *TINY_SHAPES]
# embedding_dim == hidden_size, so model.tie_weights can share the matrix (Press & Wolf 2017)
TINY_TIED_LM = [
    "--set",
    "model.embedding_dim=16",
    "--set",
    "model.hidden_size=16",
    "--set",
    "model.num_layers=1",
    "--set",
    "model.tie_weights=true",
    "--set",
    "data.builtin_sentences=200",
    "--set",
    "data.bptt=16",
    "--set",
    "schedule.warmup_steps=1",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """trained("resnet18" | "mobilenet_v2" | "tied_lm") -> a run folder, trained on first use."""
    from dlcli.cli import app

    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            args = ["char_lstm", *TINY_TIED_LM] if name == "tied_lm" else [ARCH_RECIPES[name], *TINY_CLASSIFY]
            run = tmp_path_factory.mktemp(name) / "run"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("DL_OFFLINE", "1")
                result = CliRunner().invoke(app, ["train", *args, *ONE_STEP, "--out", str(run)])
            assert result.exit_code == 0, result.output
            runs[name] = run
        return runs[name]

    return get


def _exported(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _pytorch_classifier(run: Path) -> torch.nn.Module:
    """The run's model as `dl predict --run` builds it, in eval mode."""
    ckpt = checkpoint.load(run / "checkpoints" / "best.pt")
    cfg = validate(ckpt.config, classify.Config)
    model = classify.build_model(cfg.model, len(ckpt.extra["classes"]), cfg.data.image_size, load_weights=False)
    model.load_state_dict(ckpt.model)
    return model.eval()


def _normalized_images(count: int) -> torch.Tensor:
    """(count, 3, S, S) shapes test images, scaled to [0, 1] and ImageNet-normalized: the export's input."""
    pixels, _ = make_shapes(count, IMAGE_SIZE, seed=7, split="test")
    return normalize(pixels.float() / 255, torch.contiguous_format)


# --------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("arch", list(ARCH_RECIPES))
def test_onnx_matches_pytorch_at_two_batch_sizes(
    cli: Callable[..., Result], trained: Callable[[str], Path], arch: str
) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")  # torch's ONNX exporter needs it
    run = trained(arch)
    report = _exported(cli("export", run, "--format", "onnx", "--json"))
    assert Path(report["path"]) == run / "export" / "model.onnx"
    assert report["opset"] == 18 and report["input"]["shape"] == ["N", 3, IMAGE_SIZE, IMAGE_SIZE]

    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    (images_in,) = session.get_inputs()
    assert images_in.name == "images"
    assert isinstance(images_in.shape[0], str), images_in.shape  # a named (dynamic) batch dimension, not a number
    model = _pytorch_classifier(run)
    for batch in BATCH_SIZES:
        images = _normalized_images(batch)
        (logits,) = session.run(["logits"], {"images": images.numpy()})
        with torch.no_grad():
            expected = model(images)
        assert logits.shape == (batch, 10)
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=1e-4)
    assert expected.std(dim=1).min() > 1e-3  # logits that vary: the comparison is not of near-constants

    card = json.loads(session.get_modelmeta().custom_metadata_map["dlcli"])
    assert card["classes"] == checkpoint.load(run / "checkpoints" / "best.pt").extra["classes"]
    assert card["input"]["mean"] == [0.485, 0.456, 0.406]


def test_onnx_of_a_language_model_is_a_usage_error(cli: Callable[..., Result], trained: Callable[[str], Path]) -> None:
    result = cli("export", trained("tied_lm"), "--format", "onnx")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    assert "'lm' run" in result.stderr and "--format safetensors" in result.stderr


# --------------------------------------------------------------------------- TorchScript

# Runs in a fresh interpreter: it imports torch, nothing else (no dlcli, no torchvision).
LOAD_WITH_TORCH_ONLY = """
import sys
import torch

torch.set_num_threads(1)
model = torch.jit.load(sys.argv[1])
with torch.no_grad():
    outputs = [model(images) for images in torch.load(sys.argv[2])]
others = sorted({name.split(".")[0] for name in sys.modules} & {"dlcli", "torchvision"})
assert not others, f"imported {others}"
torch.save(outputs, sys.argv[3])
"""


@pytest.mark.parametrize("arch", list(ARCH_RECIPES))
def test_torchscript_runs_with_torch_alone(
    cli: Callable[..., Result], trained: Callable[[str], Path], tmp_path: Path, arch: str
) -> None:
    run = trained(arch)
    target = tmp_path / "elsewhere" / "classifier.pt"
    report = _exported(cli("export", run, "--format", "torchscript", "-o", target, "--json"))
    assert Path(report["path"]) == target and target.is_file()

    inputs = [_normalized_images(batch) for batch in BATCH_SIZES]
    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITH_TORCH_ONLY,
            str(target),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "outputs.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    outputs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    model = _pytorch_classifier(run)
    with torch.no_grad():
        for images, logits in zip(inputs, outputs, strict=True):
            torch.testing.assert_close(logits, model(images), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- safetensors


@pytest.mark.parametrize("name", ["resnet18", "tied_lm"])
def test_safetensors_holds_the_checkpoints_state_dict(
    cli: Callable[..., Result], trained: Callable[[str], Path], name: str
) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    run = trained(name)
    report = _exported(cli("export", run, "--format", "safetensors", "--json"))
    assert Path(report["path"]) == run / "export" / "model.safetensors"

    state = checkpoint.load(run / "checkpoints" / "best.pt").model
    if name == "tied_lm":  # the case safetensors' save_file refuses: two names, one storage
        assert state["head.weight"].data_ptr() == state["embed.weight"].data_ptr()
    loaded = safetensors_torch.load_file(report["path"])
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key


# --------------------------------------------------------------------------- every format


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_the_file_gets_the_mode_of_a_plain_open(
    cli: Callable[..., Result],
    trained: Callable[[str], Path],
    set_umask: Callable[[int], None],
    tmp_path: Path,
    fmt: str,
) -> None:
    """0644 under umask 022, 0600 under 077, as open(path, "w") makes: safetensors' own writer makes 0600 always."""
    pytest.importorskip({"onnx": "onnxscript", "torchscript": "torch", "safetensors": "safetensors"}[fmt])
    run = trained("resnet18")
    for umask in (0o022, 0o077):
        set_umask(umask)
        report = _exported(
            cli("export", run, "--format", fmt, "-o", tmp_path / f"{umask:03o}" / f"model.{fmt}", "--json")
        )
        assert Path(report["path"]).stat().st_mode & 0o777 == 0o666 & ~umask, (fmt, oct(umask))


def test_onnx_with_its_weights_in_a_side_file_runs_from_where_it_was_written(
    cli: Callable[..., Result], trained: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models over 1.8 GB keep their weights in model.onnx.data, which model.onnx names: both leave the staging
    folder under the names the model expects (a limit of 0 bytes makes a tiny model take that path)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setattr(export, "ONNX_INLINE_LIMIT_BYTES", 0)
    run = trained("resnet18")
    folder = tmp_path / "onnx"
    report = _exported(cli("export", run, "--format", "onnx", "-o", folder / "model.onnx", "--json"))
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert (folder / "model.onnx.data").stat().st_size > (folder / "model.onnx").stat().st_size
    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    images = _normalized_images(BATCH_SIZES[-1])
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), _pytorch_classifier(run)(images), atol=1e-4, rtol=1e-4)


def test_an_export_that_fails_midway_leaves_the_previous_file(
    trained: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("safetensors")
    run = trained("tied_lm")
    target = tmp_path / "lm.safetensors"
    export.export_run(run, "safetensors", target)
    before = target.read_bytes()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".lm.safetensors.tmp-{int(dead.stdout)}"  # an exporter SIGKILLed mid-write
    stale.mkdir()
    (stale / "lm.safetensors").write_bytes(b"torn")

    def disk_full(state, path, card):
        path.write_bytes(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "save_safetensors", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export.export_run(run, "safetensors", target)
    assert target.read_bytes() == before  # the old export, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors"]  # no staging folder, the stale one gone


# --------------------------------------------------------------------------- bad input


def test_a_missing_package_names_the_extra(
    cli: Callable[..., Result], trained: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import` fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    result = cli("export", trained("tied_lm"), "--format", "safetensors")
    assert result.exit_code == 2, result.output
    assert "'safetensors'" in result.stderr and "pip install 'dlcli[export]'" in result.stderr

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = cli("export", trained("resnet18"), "--format", "onnx")
    assert result.exit_code == 2, result.output
    assert "'onnxscript'" in result.stderr and "pip install 'dlcli[export]'" in result.stderr


def test_a_folder_without_checkpoints_is_a_usage_error(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("export", tmp_path, "--format", "safetensors")
    assert result.exit_code == 2, result.output
    assert "holds no checkpoint" in result.stderr


def test_an_unknown_format_lists_the_choices(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("export", tmp_path, "--format", "tflite")
    assert result.exit_code == 2
    assert "onnx" in result.output and "safetensors" in result.output
