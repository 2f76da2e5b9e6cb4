"""What this machine offers dlcli: package versions, devices, threads (`dl env`, `dl env --json`).

dl env --json | jq .versions.torch
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch

from dlcli import __version__
from dlcli.runtime import pick_device

# Optional package -> the pip extra that installs it (pyproject.toml's optional-dependencies).
OPTIONAL_PACKAGES = {
    "matplotlib": "plot",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "safetensors": "export",
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
    "wandb": "wandb",
}


def collect() -> dict[str, Any]:
    """The report `dl env --json` prints.

    Returns:
        versions: python, dlcli, then each package's installed version (None: not installed);
        optional: package -> the extra that brings it; devices: CUDA GPUs, MPS, what
        `--device auto` picks; cpu: architecture, logical CPUs, those this process may use, torch's threads;
        platform: the OS string.
    """
    import torchvision

    # torch's and torchvision's own strings keep the build's local part ("2.14.1+cu130"),
    # which their package metadata may drop.
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "dlcli": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": package_version("numpy"),
    }
    for package in OPTIONAL_PACKAGES:
        versions[package] = package_version(package)
    return {
        "versions": versions,
        "optional": dict(OPTIONAL_PACKAGES),
        "devices": devices(),
        "cpu": {
            "machine": platform.machine(),
            "count": os.cpu_count(),
            # Containers and taskset limit a process to fewer CPUs than the machine has.
            "usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
        },
        "platform": platform.platform(),
    }


def package_version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata (nothing is imported)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def devices() -> dict[str, Any]:
    """CUDA GPUs (name, memory, compute capability), CUDA/cuDNN versions, MPS, the `auto` choice."""
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 2),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return {
        "cuda": gpus,
        "cuda_version": torch.version.cuda,  # the CUDA torch was built for (None: a CPU build)
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mps": torch.backends.mps.is_available(),
        "auto": str(pick_device("auto")),
    }
