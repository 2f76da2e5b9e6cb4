"""The training loop: micro-batches, optimizer steps, logging, evaluation, checkpoints and stops.

runner.train sets a run up (the task's Job, the optimizer, a resumed state) and hands it to `Loop`;
the loop's one decision point is `Loop._due`: what an optimizer step calls for (log, save, stop).
Validation decides the rest (`Loop._validate`): best.pt, train.patience's early stop, schedule plateau's cuts.
Its failures (NaN/Inf, a full disk, out of memory) are raised with the messages of dlcli.failures.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlcli import checkpoint, failures
from dlcli.checkpoint import Position
from dlcli.config import to_dict
from dlcli.console import MetricsFile, fmt_metrics
from dlcli.errors import Interrupted, RunFailed
from dlcli.optim import PlateauLR, build_scheduler, continued, improves
from dlcli.runtime import Runtime

if TYPE_CHECKING:
    from dlcli.ema import WeightEMA
    from dlcli.runner import Batch, Job, Loader  # dlcli.runner imports this module
    from dlcli.trackers import Trackers


@dataclass
class RunState:
    """Everything that changes while training, and goes into a checkpoint."""

    position: Position
    best_value: float | None = None
    best_metrics: dict[str, float] | None = None
    wall_s: float = 0.0
    skipped_steps: int = 0  # optimizer steps dropped for a NaN/Inf loss or gradient (train.on_nonfinite=skip)
    skips_in_a_row: int = 0  # of them, the latest run of consecutive ones (train.max_skips_in_a_row)
    best_weights: str = "raw"  # which weights scored best_value: "raw", or "ema" (train.ema's average)
    # train.patience: the scheduled validations (not a stop's) in a row whose score did not beat patience_best
    # by more than train.min_delta, and that best and the epoch it was reached at. Kept apart from best_value,
    # which a stop's validation may lower, so that a resumed run counts as the uninterrupted one.
    evals_without_improvement: int = 0
    patience_best: float | None = None
    patience_best_epoch: int = 0
    fitted_epochs: int | None = None  # train.fit_to_minutes: the epochs fitted after the first (Loop._fit_to_minutes)


def evaluate(model: nn.Module, loader: Loader, job: Job, runtime: Runtime) -> dict[str, float]:
    """Average the eval step's metric sums over a split (summed across ranks first)."""
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    with torch.no_grad(), runtime.autocast():
        for batch in loader.batches(0):
            for name, value in job.eval_step(model, batch).items():
                value = torch.as_tensor(value).detach().to(runtime.device).double()  # a step may return CPU counts
                totals[name] = totals[name] + value if name in totals else value
    if not totals:
        return {}
    names = sorted(totals)
    summed = runtime.sum_across_ranks(torch.stack([totals[n] for n in names]))
    values = dict(zip(names, summed.tolist(), strict=True))
    count = values.pop("count")
    # "total.*" are statistics summed over the split as they are (BLEU's n-gram counts), for
    # finish_metrics to combine; the others are averaged over `count`.
    return job.finish_metrics(
        {name: value if name.startswith("total.") else value / count for name, value in values.items()}
    )


class Loop:
    """One training run's loop. State lives here so the loop body reads top to bottom."""

    def __init__(
        self,
        *,  # fourteen collaborators: named at the call, never by position
        job,
        cfg,
        runtime,
        logger,
        run_dir,
        model,
        forward,
        optimizer,
        scheduler,
        scaler,
        state,
        steps_per_epoch,
        ema: WeightEMA | None = None,
        trackers: Trackers | None = None,
    ):
        self.job, self.cfg, self.rt, self.logger, self.run_dir = job, cfg, runtime, logger, Path(run_dir)
        self.model, self.forward = model, forward
        self.ema = ema  # train.ema's moving average of `model`, updated after each optimizer step
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.metrics_file = MetricsFile(self.run_dir / "metrics.jsonl") if runtime.is_main else None
        self.trackers = trackers  # train.loggers beside metrics.jsonl (rank 0's; runner.train opens and closes them)
        self.final_metrics: dict[str, dict[str, float]] = {}
        self._interrupted = False
        self._timed_out = False  # train.max_minutes reached
        self._started = time.perf_counter()
        self._wrote_last = False  # whether this process has written last.pt (see _save)
        self._best_written_at: int | None = None  # the step at which this process last wrote best.pt
        self.window: _Window | None = None  # the log interval in progress (see _train_epoch)

    # -- the run
    def run(self) -> None:
        cfg, pos = self.cfg.train, self.state.position
        previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            while pos.epoch < self.epochs and not self._done() and not self._stalled():
                finished = self._train_epoch()  # False: stopped mid-epoch by max_steps, max_minutes or Ctrl-C
                if finished:
                    pos.epoch, pos.batch = pos.epoch + 1, 0
                # Scheduled validations count for train.patience and schedule plateau; a stop's does not, as
                # the uninterrupted run has none there.
                scheduled = finished and (pos.epoch % cfg.eval_every == 0 or pos.epoch == self.epochs)
                if scheduled or not finished or self._done():
                    self._validate(counts=scheduled)
                if finished and pos.epoch == 1 and cfg.fit_to_minutes and self.state.fitted_epochs is None:
                    self._fit_to_minutes()  # before the save: last.pt holds the fitted length
                self._save("last.pt")
                if finished and self.job.on_epoch_end is not None and self.rt.is_main:
                    self.job.on_epoch_end(self.model, pos.epoch, self.run_dir)
            if "val" not in self.final_metrics:
                # A resumed run that had already finished: its last validation is in
                # metrics.jsonl already (it comes before the final save); this only refills the summary.
                self._validate(counts=False, record=False)
            self._test_best()
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            if self.metrics_file:
                self.metrics_file.close()

    @property
    def epochs(self) -> int:
        """The epochs this run trains: train.epochs, or those train.fit_to_minutes fitted after the first."""
        return self.state.fitted_epochs or self.cfg.train.epochs

    def _fit_to_minutes(self) -> None:
        """train.fit_to_minutes: the whole epochs that fit train.max_minutes at the first epoch's pace (its
        validation and the run's start included, so the estimate errs short) become the run's epochs and the
        schedule's length. The first epoch's lr came from train.epochs' schedule; from here on the new one's."""
        cfg = self.cfg
        seconds = self.rt.gather_objects(self._elapsed())[0]  # rank 0's clock: every rank fits the same length
        limit = cfg.train.max_minutes
        self.state.fitted_epochs = max(1, int(limit * 60 // max(seconds, 1e-9)))
        total = self.state.fitted_epochs * self.steps_per_epoch
        rebuilt = build_scheduler(
            self.optimizer, cfg.schedule, cfg.optim.lr, total, self.steps_per_epoch, self.job.best_mode
        )
        self.scheduler = continued(rebuilt, self.scheduler)
        self.logger.info(
            f"train.fit_to_minutes: the first epoch took {seconds:.0f} s, so {self.state.fitted_epochs} epochs fit "
            f"{limit:g} minutes; the schedule now spans {total} steps"
        )
        if self._best_written_at == self.state.position.step:
            # the validation just wrote best.pt, and last.pt would become a second name of it: both hold the length
            self._save("best.pt")

    def _done(self) -> bool:
        max_steps = self.cfg.train.max_steps
        return self._timed_out or (max_steps is not None and self.state.position.step >= max_steps)

    def _stalled(self) -> bool:
        """train.patience evaluations in a row without an improvement: the run stops (see _count_evaluation)."""
        patience = self.cfg.train.patience
        return patience is not None and self.state.evals_without_improvement >= patience

    def _stopped_early(self) -> bool:
        return self._stalled() and self.state.position.epoch < self.epochs

    def _check_time_budget(self, at_log_step: bool) -> None:
        """Stop at train.max_minutes. Reading the clock costs nothing, but under DDP the ranks
        must stop at the same step, so there the decision is agreed on at log steps only."""
        limit = self.cfg.train.max_minutes
        if limit is None or self._timed_out:
            return
        over = self._elapsed() >= limit * 60
        if self.rt.distributed:
            if not at_log_step:
                return
            over = self.rt.any_across_ranks(over)
        if over:
            self._timed_out = True
            self.logger.info(f"train.max_minutes ({limit:g}) reached at step {self.state.position.step}: stopping")

    def _train_epoch(self) -> bool:
        """Train from the current position to the epoch's end (True) or to a stop (False: max_steps,
        max_minutes or Ctrl-C). A pass of the loop is one micro-batch; the last of a group of
        train.grad_accum makes one optimizer step, and then what that step calls for is done here."""
        pos, train = self.state.position, self.cfg.train
        n_batches = len(self.job.train_data)
        self.forward.train()
        self.window = _Window(self.rt.device)
        bar = self.logger.bar(n_batches, f"epoch {pos.epoch + 1}/{self.epochs}", initial=pos.batch, unit="batch")
        group = _Group()
        for batch in self.job.train_data.batches(pos.epoch, pos.batch):
            self._train_micro_batch(batch, group)
            bar.update(1)
            if group.size < train.grad_accum and pos.batch + group.size < n_batches:
                continue
            self._update(group)
            pos.batch, pos.step, group = pos.batch + group.size, pos.step + 1, _Group()
            due = self._due(end_of_epoch=pos.batch == n_batches)
            if due.log:
                self._log_train(self.window, bar)  # it checks the loss is finite: before any save
            if due.save:
                self._save("last.pt")
            if due.interrupted:
                raise Interrupted
            if due.stop:
                break
        bar.close()
        return pos.batch == n_batches

    def _due(self, end_of_epoch: bool) -> _Due:
        """What the optimizer step just taken calls for: the one place that decides it."""
        pos, train = self.state.position, self.cfg.train
        self._check_time_budget(pos.step % train.log_every == 0 or end_of_epoch)
        checkpoint_due = bool(train.checkpoint_every) and pos.step % train.checkpoint_every == 0
        log = pos.step % train.log_every == 0 or end_of_epoch or checkpoint_due or self._done()
        interrupted = self._agreed_interrupt(log)
        stop = interrupted or self._done()
        # run() saves at an epoch's end and at a stop; here: train.checkpoint_every within an epoch, and Ctrl-C.
        save = interrupted or (checkpoint_due and not end_of_epoch and not stop)
        return _Due(log=log or stop, save=save, stop=stop, interrupted=interrupted)

    def _train_micro_batch(self, batch: Batch, group: _Group) -> None:
        """Forward and backward (the gradients add up over the group), or the task's own update_step."""
        if self.job.update_step is not None:
            loss = self.job.update_step(self.model, batch, self.optimizer.param_groups[0]["lr"])["loss"]
        else:
            loss = self._backward(batch, first_in_group=group.size == 0)
        if loss is None:  # non-finite, on_nonfinite=skip: the whole group's update is dropped
            group.dropped = True
        else:
            self.window.add(loss.detach(), self.job.items_per_batch(batch), self.state.position.step + 1)
        group.size += 1

    def _update(self, group: _Group) -> None:
        """One optimizer step from the group's gradients, or the group's update dropped (on_nonfinite=skip)."""
        if group.dropped:
            self._skip_step("the loss is NaN/Inf")
        elif not self._optimizer_step():
            self._skip_step("a gradient is NaN/Inf (the loss was finite)")
        else:
            self.state.skips_in_a_row = 0
            if self.ema is not None:  # the average follows the weights only when they changed
                self.ema.update(self.model, self.state.position.step + 1)

    def _backward(self, batch: Batch, first_in_group: bool) -> torch.Tensor | None:
        """The micro-batch's loss, its gradients added to the group's; None (and no backward) when
        train.on_nonfinite=skip and the loss is NaN/Inf on any rank."""
        train = self.cfg.train
        with self.rt.autocast():
            loss = self.job.train_step(self.forward, batch)["loss"]
        if first_in_group:
            # Freed here, just before backward re-creates them, rather than right after
            # the optimizer step: backward then reuses the memory at once (on the CPU this
            # spares big models' gradients a round trip through the OS allocator).
            self.optimizer.zero_grad(set_to_none=True)
        if train.on_nonfinite == "skip":
            # The one host sync per micro-batch that skip costs (stop checks at log steps only).
            # Agreed across ranks before backward: under DDP a rank that skipped backward would
            # leave the others waiting in its gradient all-reduce.
            if self.rt.any_across_ranks(not bool(torch.isfinite(loss.detach()))):
                return None
        # Gradients of a group are summed, so each micro-batch's loss is scaled down.
        self.scaler.scale(loss / train.grad_accum if train.grad_accum > 1 else loss).backward()
        return loss

    def _skip_step(self, reason: str) -> None:
        """Drop a group's update (on_nonfinite=skip): no optimizer step, so no weight, moment or
        step-count changes; the schedule still advances, as for a step the fp16 scaler skips.
        Too many in a row stop the run: then the weights or the data are broken, not one batch."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        state, pos, limit = self.state, self.state.position, self.cfg.train.max_skips_in_a_row
        state.skipped_steps += 1
        state.skips_in_a_row += 1
        if state.skips_in_a_row >= limit:
            raise failures.too_many_skips(
                state.skips_in_a_row, pos.step + 1, pos.epoch + 1, reason, limit, self._kept_checkpoint()
            )
        self.logger.warn(
            f"step {pos.step + 1} (epoch {pos.epoch + 1}): {reason}; its update is skipped "
            f"({state.skipped_steps} skipped so far)"
        )

    def _agreed_interrupt(self, at_log_step: bool) -> bool:
        """Whether to stop for Ctrl-C. Under DDP all ranks must stop at the same step, so the
        flag is agreed on (one tiny all-reduce) at log steps only, not at every step."""
        if not self.rt.distributed:
            return self._interrupted
        return at_log_step and self.rt.any_across_ranks(self._interrupted)

    def _optimizer_step(self) -> bool:
        """Update the weights from the group's gradients. False (nothing changed) when
        train.on_nonfinite=skip and a gradient is NaN/Inf: a finite loss can still overflow in
        backward, and one such update would make every weight NaN."""
        if self.job.update_step is not None:
            # The weights are already updated; the optimizer (no gradients: a no-op) only
            # keeps the scheduler's bookkeeping in order.
            self.optimizer.step()
            self.scheduler.step()
            return True
        clip = self.cfg.train.clip_grad_norm
        # fp16's scaler checks the gradients itself: it skips the step and lowers the scale.
        check = self.cfg.train.on_nonfinite == "skip" and not self.scaler.is_enabled()
        if clip is not None or check:
            self.scaler.unscale_(self.optimizer)
            # With no clip asked for, an infinite max_norm only measures (the scale factor is 1).
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip is not None else math.inf)
            # Gradients are all-reduced before this, so every rank decides alike.
            if check and not bool(torch.isfinite(norm)):
                return False
        self.scaler.step(self.optimizer)  # skipped by the fp16 scaler when gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        return True

    # -- logging and evaluation
    def _log_train(self, window: "_Window", bar: Any) -> None:
        pos = self.state.position
        if window.count == 0:  # every step of the interval was skipped: no loss to report
            window.flush(self.rt)
            return
        self._check_losses_finite()
        loss, items, seconds = window.flush(self.rt)  # the one host sync of a log interval
        record = {
            "step": pos.step,
            "epoch": pos.epoch + 1,
            "split": "train",
            "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "items_per_s": items / max(seconds, 1e-9),
            "elapsed_s": self._elapsed(),
        }
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", items_per_s=f"{record['items_per_s']:.0f}", refresh=False)
        self._record(record)

    def _check_losses_finite(self) -> None:
        """Stop (exit 1) if a training loss since the last check was NaN/Inf. Each step only ANDs a
        flag on the device; this reads it, at log steps, evaluations and checkpoints, which sync anyway."""
        window = self.window
        if window is None:
            return
        first_bad = int(self.rt.max_across_ranks(window.first_nonfinite_step))
        if first_bad < 0:
            return
        raise failures.nonfinite_loss(first_bad, self.state.position.epoch + 1, self._kept_checkpoint())

    def _check_eval_finite(self, split: str, metrics: dict[str, float]) -> None:
        """A NaN/Inf loss in evaluation is a failed run too (the weights are finite but the model's
        outputs overflow, e.g. BatchNorm running statistics blown up by a diverging step), and a NaN
        must never choose best.pt: NaN compares false with everything, so it would stay 'best'."""
        names = ("loss", self.job.best_metric)
        bad = {
            name: metrics[name]
            for name in (*names, *(f"ema_{n}" for n in names))  # ema_: train.ema's average (see _validate)
            if name in metrics and not math.isfinite(metrics[name])
        }
        if not bad:
            return
        pos = self.state.position
        raise failures.nonfinite_evaluation(split, bad, pos.step, max(pos.epoch, 1), self._kept_checkpoint())

    def _validate(self, counts: bool = True, record: bool = True) -> None:
        """Score the weights on "val" (and train.ema's average beside them, as ema_<metric>); a better
        best_metric than any before writes best.pt. A scheduled validation (`counts`) also counts for
        train.patience and schedule plateau, before best.pt is written: the checkpoint holds the counts."""
        self._check_losses_finite()
        val = self.job.eval_data["val"]
        metrics = evaluate(self.forward, val, self.job, self.rt)
        self.model.train()
        if self.ema is not None:
            averaged = evaluate(self.ema.for_evaluation(self.rt), val, self.job, self.rt)
            metrics |= {f"ema_{name}": value for name, value in averaged.items()}
        self._check_eval_finite("validation", metrics)
        self.final_metrics["val"] = metrics
        pos = self.state.position
        if record:
            self._record(
                {"step": pos.step, "epoch": pos.epoch, "split": "val", **metrics, "elapsed_s": self._elapsed()}
            )
        self.logger.info(f"epoch {pos.epoch} step {pos.step} val: {fmt_metrics(metrics)}")
        # The raw weights' best_metric and the average's: the better one competes (the raw weights on a tie).
        candidates = {"raw": metrics.get(self.job.best_metric), "ema": metrics.get(f"ema_{self.job.best_metric}")}
        scored = [(weights, value) for weights, value in candidates.items() if value is not None]
        if not scored:
            return
        weights, value = (max if self.job.best_mode == "max" else min)(scored, key=lambda wv: wv[1])
        if counts:
            self._count_evaluation(value)
        if improves(value, self.state.best_value, self.job.best_mode):
            self.state.best_value, self.state.best_metrics, self.state.best_weights = value, metrics, weights
            self._save("best.pt")

    def _count_evaluation(self, value: float) -> None:
        """A scheduled validation's score (the better of the weights' and the average's best_metric) for
        train.patience's count, which run() stops on, and for schedule plateau's lr cuts."""
        state, pos, train, metric = self.state, self.state.position, self.cfg.train, self.job.best_metric
        if improves(value, state.patience_best, self.job.best_mode, train.min_delta):
            state.patience_best, state.patience_best_epoch, state.evals_without_improvement = value, pos.epoch, 0
        else:
            state.evals_without_improvement += 1
        if isinstance(self.scheduler, PlateauLR):
            before = self.optimizer.param_groups[0]["lr"]
            if self.scheduler.observe(value):
                self.logger.info(
                    f"schedule plateau: no better val {metric} in {_evaluations(self.cfg.schedule.patience)}: "
                    f"lr {before:.4g} -> {self.optimizer.param_groups[0]['lr']:.4g}"
                )
        if self._stopped_early():
            by = f" by more than {train.min_delta:g}" if train.min_delta else ""
            self.logger.info(
                f"train.patience: no val {metric} better than {state.patience_best:.6g} (epoch "
                f"{state.patience_best_epoch}){by} in {_evaluations(train.patience)}: stopping after epoch "
                f"{pos.epoch} of {self.epochs}"
            )

    def _test_best(self) -> None:
        """Final metrics: the best checkpoint's val metrics, and its test metrics (of the weights it chose)."""
        if self.state.best_metrics is not None:
            self.final_metrics["val"] = self.state.best_metrics
        if "test" not in self.job.eval_data:
            return
        best_path = self.run_dir / "checkpoints" / "best.pt"
        self.rt.barrier()  # every rank waits until rank 0 has written best.pt
        weights = "raw"
        if best_path.exists():
            best = checkpoint.load(best_path, self.rt.device)
            weights = best.weights if best.ema is not None else "raw"
            self.model.load_state_dict(best.ema if weights == "ema" else best.model)
        metrics = evaluate(self.forward, self.job.eval_data["test"], self.job, self.rt)
        self._check_eval_finite("test", metrics)
        self.final_metrics["test"] = metrics
        pos = self.state.position
        self._record({"step": pos.step, "epoch": pos.epoch, "split": "test", **metrics, "elapsed_s": self._elapsed()})
        chosen = ", EMA weights" if weights == "ema" else ""
        self.logger.info(f"test (best checkpoint{chosen}): {fmt_metrics(metrics)}")

    def _record(self, record: dict[str, Any]) -> None:
        """metrics.jsonl first (the source of truth; its errors stop the run), then each tracker (whose do not)."""
        if self.metrics_file:
            self.metrics_file.write(record)
        if self.trackers is not None:
            self.trackers.write(record)

    def _elapsed(self) -> float:
        return self.state.wall_s + time.perf_counter() - self._started

    # -- checkpoints
    def _save(self, name: str) -> None:
        # Every rank calls this at the same points (the decisions to save depend only on the
        # step and on reduced metrics), so each rank's RNG state can be gathered: dropout under
        # DDP then resumes exactly. A run resumed with another number of processes uses rank 0's.
        self._check_losses_finite()
        self._check_weights_finite(name)  # on every rank: their weights are the same, so all stop alike
        rng_per_rank = self.rt.gather_objects(checkpoint.rng_state())
        if not self.rt.is_main:
            return
        state = self.state
        record = checkpoint.Record(
            task=self.cfg.task,
            config=to_dict(self.cfg),
            model=self.model.state_dict(),
            position=Position(**vars(state.position)),
            extra=self.job.extra,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            best_value=state.best_value,
            best_metrics=state.best_metrics,
            wall_s=self._elapsed(),
            skipped_steps=state.skipped_steps,
            skips_in_a_row=state.skips_in_a_row,
            metrics_bytes=self.metrics_file.size() if self.metrics_file else None,
            rng=rng_per_rank,
            ema=self.ema.module.state_dict() if self.ema is not None else None,
            ema_updates=self.ema.updates if self.ema is not None else 0,
            weights=state.best_weights if self.ema is not None else "raw",
            evals_without_improvement=state.evals_without_improvement,
            patience_best=state.patience_best,
            patience_best_epoch=state.patience_best_epoch,
            fitted_epochs=state.fitted_epochs,
        )
        path = self.run_dir / "checkpoints" / name
        # The last.pt being replaced is kept as last.prev.pt, a fallback should last.pt ever be
        # damaged. Only an intact one: after a resume from last.prev.pt the old last.pt may be the
        # damaged file, which must not replace the good fallback (checked once per process).
        keep = name == "last.pt" and (self._wrote_last or checkpoint.is_intact(path))
        previous = checkpoint.previous_of(path) if keep else None
        step = self.state.position.step
        try:
            if name == "last.pt" and self._best_written_at == step:
                # best.pt was written at this very step, from the same state: last.pt becomes a second
                # name of that file rather than a second serialisation (a ResNet-18 with AdamW's moments
                # is 135 MB, half a second a save on a 2-core machine).
                checkpoint.link_atomic(path.parent / "best.pt", path, previous=previous)
            else:
                checkpoint.save(record, path, previous=previous)
        except OSError as e:
            raise failures.checkpoint_write_failed(path, step, e, self._kept_checkpoint()) from e
        self._wrote_last = self._wrote_last or name == "last.pt"
        if name == "best.pt":
            self._best_written_at = step

    def _check_weights_finite(self, name: str) -> None:
        """Refuse to write a checkpoint of NaN/Inf weights over a good one. The loss is checked
        at log steps, but an update from an overflowed gradient leaves NaN weights behind a
        finite loss until the next step; one pass over the weights per save closes that gap."""
        tensors = {k: t for k, t in self.model.state_dict().items() if t.is_floating_point()}
        if not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors.values()]).all()):
            return
        bad = next(k for k, t in tensors.items() if not torch.isfinite(t).all())
        pos = self.state.position
        raise failures.nonfinite_weights(bad, name, pos.step, pos.epoch + 1, self._kept_checkpoint())

    def _kept_checkpoint(self) -> str:
        return failures.kept_checkpoint(self.run_dir)

    def out_of_memory(self, error: BaseException) -> RunFailed:
        """The failure to raise for running out of memory while training."""
        pos = self.state.position
        return failures.out_of_memory_while_training(
            self.cfg, self.rt.device, pos.step, pos.epoch + 1, error, self._kept_checkpoint()
        )

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self._interrupted = True
        self.logger.warn("interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

    def summary(self) -> dict[str, Any]:
        pos = self.state.position
        summary = {
            "run": str(self.run_dir),
            "task": self.cfg.task,
            "steps": pos.step,
            "epochs": pos.epoch + (1 if pos.batch else 0),
            "wall_s": round(self._elapsed(), 3),
            "device": str(self.rt.device),
            "precision": self.rt.precision,
            "torch": torch.__version__,
            "metrics": self.final_metrics,
        }
        if self.state.fitted_epochs is not None:
            summary["fitted_epochs"] = self.state.fitted_epochs  # train.fit_to_minutes' length
        if self.cfg.train.on_nonfinite == "skip":
            summary["skipped_steps"] = self.state.skipped_steps
        if self.ema is not None:
            summary["weights"] = self.state.best_weights  # what best.pt chose: "raw" or "ema"
        if self.cfg.train.patience is not None:
            summary["stopped_early"] = self._stopped_early()
            if summary["stopped_early"]:
                summary["stopped_epoch"], summary["best_epoch"] = pos.epoch, self.state.patience_best_epoch
        if self.rt.device.type == "cuda":
            summary["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(self.rt.device) / 2**20, 1)
        return summary


def _evaluations(n: int) -> str:
    return f"{n} evaluation{'s' if n != 1 else ''}"


@dataclass
class _Group:
    """The micro-batches of the optimizer step in progress (train.grad_accum of them, fewer at an epoch's end)."""

    size: int = 0
    dropped: bool = False  # a micro-batch's loss was NaN/Inf under on_nonfinite=skip: no update for the group


@dataclass
class _Due:
    """What an optimizer step calls for (_Loop._due)."""

    log: bool  # a train record (mean loss, lr, speed); it checks the losses are finite
    save: bool  # last.pt now (run() saves at epochs' ends and stops itself)
    stop: bool  # leave the epoch: max_steps, max_minutes or Ctrl-C
    interrupted: bool  # Ctrl-C: exit 130 after the save


class _Window:
    """Sums of the loss over a log interval, kept on the device: no host sync per step. Also the
    first optimizer step whose loss was NaN/Inf (-1: none yet), kept until the run fails on it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.first_nonfinite_step = torch.full((), -1, device=device, dtype=torch.int64)
        self._reset()

    def _reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float32)
        self.count = 0
        self.items = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, items: int, step: int) -> None:
        self.loss_sum += loss  # small kernels, no host sync
        nonfinite_first = (self.first_nonfinite_step < 0) & ~torch.isfinite(loss)
        self.first_nonfinite_step.masked_fill_(nonfinite_first, step)
        self.count += 1
        self.items += items

    def flush(self, runtime: Runtime) -> tuple[float, int, float]:
        """Mean loss and item count over the interval, summed over all ranks."""
        sums = torch.stack(
            [
                self.loss_sum,
                torch.tensor(float(self.count), device=self.device),
                torch.tensor(float(self.items), device=self.device),
            ]
        )
        loss_sum, count, items = runtime.sum_across_ranks(sums).tolist()
        result = (loss_sum / max(1.0, count), int(items), time.perf_counter() - self.started)
        self._reset()
        return result
