"""Export a run's model for use outside dlcli: ONNX and TorchScript (classifiers), safetensors (any run).

    dl export runs/resnet18-shapes --format onnx          # -> runs/resnet18-shapes/export/model.onnx
    dl export runs/resnet18-shapes --format torchscript   # -> runs/resnet18-shapes/export/model.pt
    dl export runs/char-lstm --format safetensors -o lm.safetensors

Every format reads the checkpoint `dl eval` and `dl predict` use, through dlcli.loading.

An exported classifier computes what `dl predict` runs inside the network, no more:

    images (N, 3, S, S) float32  ->  logits (N, classes)

`images` are RGB pixels scaled to [0, 1], resized to S = the run's data.image_size, then
normalized with the ImageNet mean and std ((x - mean) / std, data.loaders.IMAGENET_MEAN/STD):
`dl predict` does that outside the model, so a consumer of the file does it too, and
softmax(logits) gives `dl predict`'s probabilities. N is free (a dynamic batch dimension); S is
fixed to the size the model was traced at. Each file carries this contract and the class names
as JSON under the key "dlcli" (ONNX metadata_props, a TorchScript extra file "dlcli.json",
safetensors metadata).

The optional packages come with `pip install 'dlcli[export]'`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli import loading, runlock
from dlcli.data.loaders import IMAGENET_MEAN, IMAGENET_STD
from dlcli.errors import DlError, missing_package
from dlcli.files import remove_stale_temps, temp_path

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_FILE = {"onnx": "model.onnx", "torchscript": "model.pt", "safetensors": "model.safetensors"}
# Opset 18 (2022): every onnxruntime since 1.14 runs it; torch's exporter translates to it natively.
ONNX_OPSET = 18
# protobuf cannot serialize a message over 2 GiB; bigger models keep their weights in a
# side file (model.onnx.data) that must travel with model.onnx.
ONNX_INLINE_LIMIT_BYTES = 1_800_000_000
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_run(run_dir: Path, fmt: str, output: Path | None = None) -> dict[str, Any]:
    """Write a run's best checkpoint as `fmt` to `output` (default RUN/export/model.<ext>).

    Args:
        run_dir: a run folder (one with checkpoints/best.pt or last.pt).
        fmt: "onnx" or "torchscript" (task classify only), or "safetensors" (any task).
        output: the file to write; its folder is created.

    Returns:
        {"run", "format", "path"} and the description stored in the file (task, step, and for
        classifiers the input, the output and the class names).
    """
    if fmt not in FORMATS:
        raise DlError(f"Unknown export format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    path = Path(output) if output is not None else run_dir / "export" / DEFAULT_FILE[fmt]
    # A file written into the run folder makes dl export one of its writers (dlcli.runlock); one written elsewhere does not.
    into_run = run_dir.is_dir() and path.resolve().is_relative_to(run_dir.resolve())
    with runlock.holding(run_dir, "or write the file elsewhere with -o FILE") if into_run else contextlib.nullcontext():
        return _export(run_dir, fmt, path)


def _export(run_dir: Path, fmt: str, path: Path) -> dict[str, Any]:
    run = loading.open_run(run_dir)
    if fmt != "safetensors" and run.task.NAME != "classify":
        raise DlError(
            f"{run_dir} is a '{run.task.NAME}' run; --format {fmt} exports image classifiers (task classify) only. "
            "Export its weights with --format safetensors."
        )
    require_packages(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged(path) as staged_path:
        if fmt == "safetensors":
            card = {"task": run.task.NAME, "step": run.step}
            save_safetensors(run.state, staged_path, card)
        else:
            model, card = classifier_card(loading.restore(run, "cpu"))
            example = example_input(card)
            if fmt == "onnx":
                card["opset"] = ONNX_OPSET
                save_onnx(model, example, staged_path, card)
            else:
                save_torchscript(model, example, staged_path, card)
    return {"run": str(run_dir), "format": fmt, "path": str(path), **card}


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """Where an exporter writes `path`: the same name in a staging folder beside it, `.NAME.tmp-PID/`
    (files.temp_path).

    The files it holds then replace their namesakes beside `path`, side files first (ONNX's
    model.onnx.data, which model.onnx names) and `path` last, each by an atomic rename. An exporter
    that fails or is interrupted leaves the previous export as it was, never a torn file. Temp files
    and staging folders of writers that died (SIGKILL) in that folder are removed by the next export.
    """
    remove_stale_temps(path.parent)
    staging = temp_path(path)
    shutil.rmtree(staging, ignore_errors=True)  # left by a dead exporter that had this PID
    staging.mkdir()
    try:
        yield staging / path.name
        for written in sorted(staging.iterdir(), key=lambda file: file.name == path.name):  # path last
            os.replace(written, path.parent / written.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def require_packages(fmt: str) -> None:
    """A DlError naming the pip extra when a package the format needs is not installed."""
    # torch's ONNX exporter builds the graph with onnxscript and saves it with onnx.
    needed = {"onnx": ("onnx", "onnxscript"), "torchscript": (), "safetensors": ("safetensors",)}[fmt]
    for package in needed:
        try:
            importlib.import_module(package)
        except ImportError:
            raise missing_package(package, "export", f"{fmt} export") from None


# --------------------------------------------------------------------------- classifiers


def classifier_card(run: loading.LoadedRun) -> tuple[nn.Module, dict[str, Any]]:
    """A loaded `classify` run's classifier (as loaded: eval mode) and its description."""
    cfg = run.config
    classes = list(run.assets["classes"])
    num_classes = cfg.model.num_classes or len(classes)
    # The same model `dl predict --run` loads: for pretrained GoogLeNet/Inception v3 it
    # includes torchvision's transform_input, which then runs inside the exported graph too.
    model = run.model
    size = cfg.data.image_size
    card = {
        "task": "classify",
        "arch": cfg.model.arch,
        "step": run.step,
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", 3, size, size],
            "dtype": "float32",
            "pixels": "RGB in [0, 1], then (x - mean) / std per channel",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["N", num_classes],
            "meaning": "logits; softmax gives the class probabilities",
        },
        "classes": classes,
    }
    return model.eval(), card


def example_input(card: dict[str, Any]) -> torch.Tensor:
    """A seeded input of the card's shape for tracing: (2, 3, S, S).

    Batch 2, not 1: torch.export specializes dimensions of size 0 and 1 to constants, so a
    batch of 1 could not be declared dynamic.
    """
    _, channels, height, width = card["input"]["shape"]
    return torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0))


def save_onnx(model: nn.Module, example: torch.Tensor, path: Path, card: dict[str, Any]) -> None:
    """ONNX (opset ONNX_OPSET) through torch's torch.export-based exporter, batch dimension dynamic.

    The exporter (`dynamo=True`, torch's default since 2.9; the TorchScript-based one is
    deprecated) needs onnx and onnxscript (require_packages); nothing is downloaded.
    """
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        verbose=False,  # the exporter's progress lines would land on stdout, where --json writes
        opset_version=ONNX_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    program.model.metadata_props["dlcli"] = json.dumps(card)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    program.save(str(path), external_data=weight_bytes > ONNX_INLINE_LIMIT_BYTES)


def save_torchscript(model: nn.Module, example: torch.Tensor, path: Path, card: dict[str, Any]) -> None:
    """A traced TorchScript module: `torch.jit.load(path)` runs it with torch alone.

    Tracing, not scripting: a classifier in eval mode takes one path through its code for any
    input, and tracing works for every torchvision classifier. The batch dimension stays free.
    """
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.14 marks torch.jit as deprecated (FutureWarning); TorchScript is still what
        # this format promises, so the warning would only be noise here.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={"dlcli.json": json.dumps(card)})


# --------------------------------------------------------------------------- any run: safetensors


def save_safetensors(state: dict[str, torch.Tensor], path: Path, card: dict[str, Any]) -> None:
    """A state_dict as safetensors, every key kept: `safetensors.torch.load_file` gives it back.

    safetensors refuses tensors that share memory, such as tied weights (a language model's
    embedding and output matrix). Those are written as separate copies, so each name loads
    as is; safetensors.torch.save_model would instead drop all names but one, which only its
    own load_model puts back.
    """
    from safetensors.torch import save_file  # checked by require_packages

    tensors: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen_storages:
            tensor = tensor.clone()
        seen_storages.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    save_file(tensors, str(path), metadata={"dlcli": json.dumps(card)})
    # save_file writes a 0600 temp file and renames it (atomic, but private); give the file the
    # mode the other formats' files get, as a plain open() would make it.
    os.chmod(path, _new_file_mode())


def _new_file_mode() -> int:
    """0o666 less the process umask: the mode open(path, "w") gives a new file."""
    umask = os.umask(0)  # reading the umask means setting it: put it back at once
    os.umask(umask)
    return 0o666 & ~umask
