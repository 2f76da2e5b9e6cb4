"""What a failed run says: the messages a run ends with when it stops on a failure (exit 1), and
which errors count as running out of memory.

The training loop (loop.Loop) decides when a run fails; each message here says what went wrong and
where, which checkpoint is kept to continue from (`kept_checkpoint`), and what to change.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from dlcli import checkpoint
from dlcli.errors import RunFailed

NONFINITE_FIXES = (
    "Lower optim.lr, set train.clip_grad_norm, use train.precision=fp32, "
    "or set train.on_nonfinite=skip to drop the updates of such steps."
)


class NonFiniteLoss(RunFailed):
    """The loss or the weights became NaN/Inf; the last good checkpoint is kept, the CLI exits 1."""


def kept_checkpoint(run_dir: Path) -> str:
    """A sentence on the checkpoint a failed run leaves to continue from: last.pt when its seal
    checks (read in full, once, on this failure path), else last.prev.pt when that does."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    for path in (last, checkpoint.previous_of(last)):
        if path.is_file() and checkpoint.is_intact(path):
            record = checkpoint.peek(path)
            if record is None:
                continue
            step = record.step
            if path == last:
                return f"The last good checkpoint, {path} (step {step}), is kept."
            return f"The last good checkpoint is {path} (step {step}): continue from it with --resume-from {path}."
    return "No intact checkpoint has been written yet (start again with --overwrite)."


# --------------------------------------------------------------------------- NaN/Inf


def nonfinite_loss(step: int, epoch: int, kept: str) -> NonFiniteLoss:
    return NonFiniteLoss(
        f"The training loss became NaN/Inf at optimizer step {step} (epoch {epoch}). {kept} {NONFINITE_FIXES}"
    )


def nonfinite_evaluation(split: str, bad: dict[str, float], step: int, epoch: int, kept: str) -> NonFiniteLoss:
    values = ", ".join(f"{name} {value}" for name, value in bad.items())
    return NonFiniteLoss(
        f"The {split} {values} after optimizer step {step} (epoch {epoch}): the model diverged although its weights "
        f"are finite, so no checkpoint is chosen by it. {kept} {NONFINITE_FIXES}"
    )


def nonfinite_weights(tensor_name: str, checkpoint_name: str, step: int, epoch: int, kept: str) -> NonFiniteLoss:
    return NonFiniteLoss(
        f"The weights became NaN/Inf by optimizer step {step} (epoch {epoch}; first: {tensor_name}), so "
        f"{checkpoint_name} is not written. {kept} {NONFINITE_FIXES}"
    )


def too_many_skips(skips: int, step: int, epoch: int, reason: str, limit: int, kept: str) -> NonFiniteLoss:
    """`skips` optimizer steps in a row were skipped, the last of them step `step`."""
    return NonFiniteLoss(
        f"The last {skips} optimizer steps (steps {step + 1 - skips} to {step}, epoch {epoch}) were all skipped: "
        f"{reason} (train.max_skips_in_a_row = {limit}). Skipping more will not recover. {kept} Lower optim.lr, "
        "set train.clip_grad_norm, use train.precision=fp32, or check the data of these steps."
    )


# --------------------------------------------------------------------------- disk and memory


def checkpoint_write_failed(path: Path, step: int, error: OSError, kept: str) -> RunFailed:
    code = errno.errorcode.get(error.errno, "") if error.errno else ""
    reason = f"{error.strerror} ({code})" if error.strerror else str(error)
    if error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = f"Free disk space (or raise the file size limit) where {path.parent} is"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"Make {path.parent} writable"
    else:
        fix = "Fix the cause"
    return RunFailed(
        f"Could not write the checkpoint {path} at step {step}: {reason}. {kept} {fix}, then continue with --resume."
    )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    # The CPU allocator's, a CUDA call's and the MPS backend's wordings (plain RuntimeErrors), and
    # C++'s own (std::vector and friends inside torch ops, under an address-space limit).
    return any(
        s in text
        for s in (
            "DefaultCPUAllocator: can't allocate memory",
            "out of memory",
            "MPS backend out of memory",
            "std::bad_alloc",
        )
    )


def out_of_memory_while_building(cfg: Any, device: torch.device, error: BaseException) -> RunFailed:
    return RunFailed(
        f"Out of memory on {device} while building the {cfg.task} model and its data, before training: "
        f"{first_line(error)}. The recipe asks for more than this machine has: use a smaller model (the model.* sizes) "
        "or less data (the data.* sizes), or a device with more memory."
    )


def out_of_memory_while_training(
    cfg: Any, device: torch.device, step: int, epoch: int, error: BaseException, kept: str
) -> RunFailed:
    return RunFailed(
        f"Out of memory on {device} after optimizer step {step} (epoch {epoch}): {first_line(error)}. "
        f"{smaller_batch_hint(cfg)} {kept}"
    )


def smaller_batch_hint(cfg: Any) -> str:
    """What to try after running out of memory: half the batch the data section declares (its BATCH)."""
    batch, accum = cfg.data.BATCH, cfg.train.grad_accum
    if batch.key is None:  # fixed at one (style's one pair per step)
        return "Use a smaller model or smaller inputs."
    value = getattr(cfg.data, batch.key)
    if value <= 1:
        return f"data.{batch.key} is already 1: use a smaller model or smaller inputs."
    keep = f", with --set train.grad_accum={2 * accum} to keep the global batch" if batch.accumulates else ""
    return f"Try a smaller batch: --set data.{batch.key}={value // 2} (half of {value}){keep}."


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
