"""The one object that owns device, precision and distribution.

Task code never branches on AMP or on rank: it asks the Runtime for `autocast()`, the device,
and whether this process is the main one. DDP switches on when torchrun sets WORLD_SIZE > 1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from dlcli import threads
from dlcli.config import TrainConfig
from dlcli.errors import DlError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Collectives that wait longer than this mean a peer died: fail instead of hanging forever.
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("DL_COLLECTIVE_TIMEOUT_S", "120")))


@dataclass
class Runtime:
    device: torch.device
    precision: str  # resolved: fp32 | bf16 | fp16
    channels_last: bool
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    _distributed: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self._distributed

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass; a no-op in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Only fp16 needs loss scaling (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def sum_across_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes (the one place metrics are reduced)."""
        if self._distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max_across_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of a tensor over all processes (a reduced copy: the input is kept)."""
        tensor = tensor.clone()
        if self._distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def any_across_ranks(self, flag: bool) -> bool:
        """True on every rank when it is true on any rank."""
        if not self._distributed:
            return flag
        return bool(self.max_across_ranks(torch.tensor(1.0 if flag else 0.0, device=self.device)).item())

    def gather_objects(self, obj: Any) -> list[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects, e.g. RNG states)."""
        if not self._distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_from_main(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite each tensor, in place, with rank 0's: one collective per dtype."""
        if not self._distributed or not tensors:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src=0)
            for tensor, value in zip(group, flat.split([t.numel() for t in group]), strict=True):
                tensor.copy_(value.view_as(tensor))

    def barrier(self) -> None:
        if self._distributed:
            dist.barrier()

    def close(self) -> None:
        if self._distributed and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(wanted: str) -> torch.device:
    """'auto' takes cuda, then mps, then cpu; an explicit device must exist."""
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise DlError(f"Unknown device '{wanted}'. Use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DlError(f"Device '{wanted}' was asked for but CUDA is not available here. Use --device cpu (or auto).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DlError(f"Device '{wanted}' was asked for but MPS is not available here. Use --device cpu (or auto).")
    return device


def pick_precision(wanted: str, device: torch.device) -> str:
    if wanted == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if wanted == "fp16" and device.type == "cpu":
        raise DlError("train.precision=fp16 needs a GPU; on CPU use fp32 or bf16.")
    return wanted


def create_runtime(train: TrainConfig, device_flag: str | None = None) -> Runtime:
    """Device, precision and (under torchrun) the process group, from the recipe and --device."""
    torch.set_num_threads(threads.count(train.threads))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_flag or train.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    precision = pick_precision(train.precision, device)
    channels_last = device.type == "cuda" if train.channels_last == "auto" else bool(train.channels_last)
    if device.type == "cuda":
        # TF32 matmuls/convs: the fp32 baseline every GPU user expects.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    distributed = world_size > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return Runtime(device, precision, channels_last, rank, local_rank, world_size, distributed)
