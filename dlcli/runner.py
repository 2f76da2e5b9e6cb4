"""The shared runner: a training run set up (or resumed) for every task, then handed to dlcli.loop.

A task hands the runner a `Job`: the model, its batch iterators, a training step that
returns a dict with the (mean) `loss`, and an eval step that returns metric *sums* with a
`count`. The runner owns everything else: precision, gradient accumulation and clipping,
the optimizer and LR schedule, logging, evaluation, checkpoints and exact resume. This module
builds those and restores a checkpoint; dlcli.loop.Loop trains.

Position bookkeeping (what a checkpoint records, and why resume is exact):

    epoch e:  | b0 b1 | b2 b3 | b4 b5 | ...      micro-batches, grad_accum = 2
              |step s |s+1    |s+2    |          one optimizer step per group
                              ^ checkpoint: epoch=e, batch=4, step=s+2

A resumed run re-creates epoch e's batch order from (seed, e), skips the first `batch`
micro-batches and restores the RNGs, so its remaining steps equal the uninterrupted run's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli import checkpoint, expect, failures
from dlcli.checkpoint import Position
from dlcli.config import RunConfig, render_yaml, to_dict
from dlcli.console import Logger, MetricsFile
from dlcli.ema import WeightEMA
from dlcli.errors import DlError, Interrupted
from dlcli.files import remove_stale_temps, write_json_atomic, write_text_atomic
from dlcli.loop import Loop, RunState
from dlcli.optim import build_optimizer, build_scheduler, parameter_groups
from dlcli.runtime import Runtime
from dlcli.trackers import Outcome, RunInfo, open_trackers

Batch = Any
Metrics = dict[str, torch.Tensor]


class Loader:
    """What the runner needs of a batch iterator (see dlcli.data.loaders)."""

    def __len__(self) -> int: ...
    def batches(self, epoch: int, start: int = 0) -> Iterable[Batch]: ...


@dataclass
class Job:
    """What a task builds for the runner."""

    model: nn.Module
    train_data: Loader
    eval_data: dict[str, Loader]  # "val" (chooses best.pt) and, when there is one, "test"
    eval_step: Callable[[nn.Module, Batch], Metrics]  # -> metric sums and "count" (+ "total.*" kept as sums)
    # One way to train, exactly: train_step (the runner does backward + optimizer) or update_step below.
    train_step: Callable[[nn.Module, Batch], Metrics] | None = None  # -> {"loss": mean loss, ...}
    best_metric: str = "loss"
    best_mode: str = "min"  # or "max"
    items_per_batch: Callable[[Batch], int] = lambda batch: len(batch[0])
    params: Iterable | None = None  # what the optimizer updates (default: trainable parameters)
    finish_metrics: Callable[[dict[str, float]], dict[str, float]] = lambda m: m
    extra: dict[str, Any] = field(default_factory=dict)  # saved in checkpoints (class names, vocab...)
    # A step that updates the weights itself (word2vec's Hogwild SGD), given the scheduled lr;
    # used instead of train_step + backward + optimizer. Returns {"loss": ...} like train_step.
    update_step: Callable[[nn.Module, Batch, float], Metrics] | None = None
    # Writes the task's artifacts (vectors.txt, vocab.json, ...) into the run folder after training.
    export: Callable[[nn.Module, Path], None] | None = None
    # Called on the main process after each finished epoch's checkpoint, with the epoch count
    # (translation keeps the last epochs' weights for averaging).
    on_epoch_end: Callable[[nn.Module, int, Path], None] | None = None

    def __post_init__(self) -> None:
        if (self.train_step is None) == (self.update_step is None):
            given = "both" if self.train_step is not None else "neither"
            raise TypeError(f"A Job trains one way: give train_step or update_step, not {given}.")


# --------------------------------------------------------------------------- entry points


def train(
    task: Any,
    cfg: RunConfig,
    run_dir: Path,
    runtime: Runtime,
    logger: Logger,
    resume_from: Path | None = None,
    strict_expect: bool = False,
) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (resuming from a checkpoint if given); returns the summary.
    strict_expect (dl check): an expect: on a split the data lacks is a DlError before the first step."""
    resume, start = _resume_or_start(task, cfg, run_dir, resume_from)
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    torch.manual_seed(cfg.seed + runtime.rank)
    job, model = _build(task, cfg, runtime, load_weights=resume is None, start=start)
    if strict_expect:
        expect.check_splits(cfg, job.eval_data)  # an expect: on a split the data lacks (test/): exit 2, untrained
    params = job.params if job.params is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optim, parameter_groups(model, params, cfg.optim), runtime.device)
    steps_per_epoch = math.ceil(len(job.train_data) / cfg.train.grad_accum)
    # train.fit_to_minutes: a resumed run keeps the length fitted after its first epoch (Loop._fit_to_minutes)
    epochs = resume.fitted_epochs if resume is not None and resume.fitted_epochs else cfg.train.epochs
    total_steps = cfg.schedule.total_steps or epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.optim.lr, total_steps, steps_per_epoch, job.best_mode)
    scaler = runtime.grad_scaler()
    state = _restore(resume, resume_from, model, optimizer, scheduler, scaler) if resume else RunState(Position())
    forward = _wrap_for_forward(model, cfg, runtime)
    ema = _make_ema(model, cfg, resume, logger)
    if runtime.is_main and resume is not None:
        _cut_metrics_back(run_dir, resume, resume_from)  # before the trackers open: metrics.csv is rebuilt from it
    # Before any run file is written: a required logger that cannot start leaves no run to --overwrite.
    run = RunInfo(Path(run_dir), cfg.name, to_dict(cfg), resume.step if resume is not None else None)
    trackers = open_trackers(cfg, run, runtime, logger)
    loop = Loop(
        job=job,
        cfg=cfg,
        runtime=runtime,
        logger=logger,
        run_dir=run_dir,
        model=model,
        forward=forward,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        state=state,
        steps_per_epoch=steps_per_epoch,
        ema=ema,
        trackers=trackers,
    )
    outcome: Outcome = "failed"
    try:
        if runtime.is_main:
            _write_run_files(run_dir, cfg, runtime, steps_per_epoch, len(job.train_data))
            for folder in (run_dir, run_dir / "checkpoints"):
                remove_stale_temps(folder)  # left by a process killed mid-write
        logger.info(_start_line(cfg, runtime, steps_per_epoch, state.position if resume else None))
        if resume is not None:
            saved = resume.rng
            checkpoint.set_rng_state(saved[runtime.rank] if len(saved) == runtime.world_size else saved[0])
        try:
            loop.run()
        except (RuntimeError, MemoryError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not failures.is_out_of_memory(e):
                raise
            raise loop.out_of_memory(e) from e
        summary = loop.summary()
        if cfg.expect is not None:
            summary["expect"] = expect.judge(cfg.expect, summary["metrics"])
        if runtime.is_main and job.export is not None:
            job.export(model, run_dir)
        if runtime.is_main:
            write_json_atomic(run_dir / "summary.json", summary, indent=2)
        outcome = "finished"
        return summary
    except Interrupted:
        outcome = "interrupted"
        raise
    finally:
        trackers.close(outcome)  # after summary.json, which MLflow keeps as an artifact


def _cut_metrics_back(run_dir: Path, resume: checkpoint.Record, resume_from: Path) -> None:
    """A run resumed in its own folder trains (and logs) the steps after its checkpoint again: metrics.jsonl
    loses the records those steps wrote the first time."""
    same_run = Path(resume_from).resolve().parent.parent == Path(run_dir).resolve()
    if same_run and resume.metrics_bytes is not None:
        MetricsFile(run_dir / "metrics.jsonl").truncate(resume.metrics_bytes)


def _start_line(cfg: RunConfig, runtime: Runtime, steps_per_epoch: int, resumed_at: Position | None) -> str:
    line = (
        f"[bold]{cfg.name}[/]: {cfg.task} on {runtime.device} ({runtime.precision}), {steps_per_epoch} steps/epoch "
        f"x {cfg.train.epochs} epochs, global batch {global_batch(cfg, runtime)}"
    )
    return line + (f", resuming at epoch {resumed_at.epoch + 1} step {resumed_at.step}" if resumed_at else "")


def global_batch(cfg: RunConfig, runtime: Runtime) -> int | str:
    """What one optimizer step consumes over all processes, from the data section's BATCH:
    a count of examples (images, sentences, ...), or a budget with its unit ("8192 tokens")."""
    batch = cfg.data.BATCH
    per_process = getattr(cfg.data, batch.key) if batch.key else 1
    total = per_process * runtime.world_size * cfg.train.grad_accum
    return f"{total} {batch.unit}" if batch.budget else total


# --------------------------------------------------------------------------- helpers


def _wrap_for_forward(model: nn.Module, cfg: RunConfig, runtime: Runtime) -> nn.Module:
    """What runs the forward pass: the model, under DDP and/or torch.compile when asked."""
    forward = model
    if runtime.distributed:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.train.sync_batchnorm:
            if runtime.device.type != "cuda":
                raise DlError(
                    "train.sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no CPU kernel); set it to false."
                )
            # Replaces the BatchNorm children in place, so `model` (what is saved) follows.
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=ids)
    if cfg.train.compile:
        forward = torch.compile(forward, mode=cfg.train.compile_mode)
    return forward


def _make_ema(model: nn.Module, cfg: RunConfig, resume: checkpoint.Record | None, logger: Logger) -> WeightEMA | None:
    """train.ema's moving average of `model` (None when off), restored from the checkpoint when it holds one."""
    if cfg.train.ema is None:
        return None
    ema = WeightEMA(model, cfg.train.ema, cfg.train.ema_warmup)
    if resume is not None and resume.ema is not None:
        ema.load(resume.ema, resume.ema_updates)
    elif resume is not None:
        logger.warn(
            f"train.ema: the checkpoint holds no average (trained without train.ema); it starts at step {resume.step + 1}"
        )
    return ema


def _load_resume(task: Any, cfg: RunConfig, path: Path) -> checkpoint.Record:
    resume = checkpoint.load(path)
    if resume.task != cfg.task:
        raise DlError(f"Checkpoint {path} is from a '{resume.task}' run; this recipe is task '{cfg.task}'.")
    if cfg.continues_training():
        return resume  # the task's build checks what it takes over (word2vec: the vector size)
    before, now = task.shape_signature(resume.config), task.shape_signature(to_dict(cfg))
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        diffs = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
        raise DlError(
            f"Cannot resume {path}: the recipe changes the model's shape ({diffs}). Resume with the "
            "original values, or start a new run with --out DIR (or --overwrite)."
        )
    return resume


def _resume_or_start(
    task: Any, cfg: RunConfig, run_dir: Path, resume_from: Path | None
) -> tuple[checkpoint.Record | None, checkpoint.Record | None]:
    """(the checkpoint this run resumes, the checkpoint a continued run starts from): a resume continues a run
    exactly; continued training (cfg.continues_training(), word2vec's data.update_vocab) on other data takes
    the checkpoint's weights as the start of a new run, and resumes nothing."""
    resume = _load_resume(task, cfg, resume_from) if resume_from else None
    start = resume if cfg.continues_training() else None
    if start is not None and task.shape_signature(start.config) != task.shape_signature(to_dict(cfg)):
        _refuse_a_run_in(run_dir, resume_from)
        resume = None
    return resume, start


def _refuse_a_run_in(run_dir: Path, checkpoint_path: Path) -> None:
    """Continued training on other data (cfg.continues_training()) is a new run: position 0, a new
    schedule, the checkpoint's weights as the start. It never writes into a folder that holds a run
    (the one it starts from included)."""
    if any((Path(run_dir) / name).exists() for name in ("config.yaml", "checkpoints", "metrics.jsonl")):
        raise DlError(
            f"{run_dir} already holds a run; continued training from {checkpoint_path} on a new corpus starts a "
            "new run. Give it its own folder with --out DIR."
        )


def _build(
    task: Any, cfg: RunConfig, runtime: Runtime, load_weights: bool, start: checkpoint.Record | None = None
) -> tuple[Job, nn.Module]:
    """The task's Job and its model on the device. A resumed run's weights come from the checkpoint
    (load_weights=False): no pretrained files are needed. `start`: the checkpoint a continued run
    (cfg.continues_training()) builds from, passed only then. Running out of memory here is a RunFailed."""
    try:
        continued = {"start": start} if start is not None else {}
        job = task.build(cfg, runtime, load_weights=load_weights, **continued)
        model = job.model.to(runtime.device)
    except (RuntimeError, MemoryError) as e:
        if not failures.is_out_of_memory(e):
            raise
        raise failures.out_of_memory_while_building(cfg, runtime.device, e) from e
    if cfg.train.on_nonfinite == "skip" and job.update_step is not None:
        raise DlError(
            f"train.on_nonfinite=skip cannot drop a {cfg.task} step: its update_step changes the weights while it "
            "computes the loss. Use train.on_nonfinite=stop."
        )
    if cfg.train.ema is not None and job.update_step is not None:
        raise DlError(
            f"train.ema cannot average a {cfg.task} run's weights: its update_step changes them itself (word2vec's "
            "Hogwild SGD, style's fit of each pair), not through the optimizer step the average follows. "
            "Leave train.ema unset (null)."
        )
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return job, model


def _restore(resume: checkpoint.Record, path: Path, model, optimizer, scheduler, scaler) -> RunState:
    """Load a checkpoint's weights and training state into the run's objects; the state to continue from."""
    model.load_state_dict(resume.model)
    try:
        optimizer.load_state_dict(resume.optimizer)
    except ValueError as e:  # torch: "loaded state dict has a different number of parameter groups"
        raise DlError(
            f"Cannot resume {path}: its optimizer state does not fit this recipe's ({e}). Setting or removing "
            "optim.norm_weight_decay changes the parameter groups; resume with the original value."
        ) from None
    scheduler.load_state_dict(resume.scheduler)
    scaler.load_state_dict(resume.scaler)
    return RunState(
        resume.position,
        resume.best_value,
        resume.best_metrics,
        resume.wall_s,
        resume.skipped_steps,
        resume.skips_in_a_row,
        best_weights=resume.weights,
        evals_without_improvement=resume.evals_without_improvement,
        patience_best=resume.patience_best,
        patience_best_epoch=resume.patience_best_epoch,
        fitted_epochs=resume.fitted_epochs,
    )


def _write_run_files(run_dir: Path, cfg: RunConfig, runtime: Runtime, steps_per_epoch: int, batches: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    derived = (
        f"# derived: device {runtime.device}, precision {runtime.precision}, processes {runtime.world_size}, "
        f"global batch {global_batch(cfg, runtime)}, {batches} batches and {steps_per_epoch} optimizer steps per epoch\n"
    )
    write_text_atomic(run_dir / "config.yaml", derived + render_yaml(cfg, comments=False))
