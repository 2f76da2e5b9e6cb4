"""dl sweep: many runs of one recipe, chosen by Optuna, each an ordinary run folder; a sweep survives a kill.

    dl sweep resnet --param optim.lr=loguniform:1e-4:1e-1 --trials 20 --jobs 2 --metric val.top1 --prune median
    dl sweep runs/resnet18-shapes-sweep --resume          # after a kill: finished trials kept, cut ones resumed

The sweep folder:
    sweep.yaml       what the sweep is (recipe overrides, space, metric, trials, sampler, pruner, storage)
    recipe.yaml      the recipe as it was when the sweep began: every trial and every resume reads this copy
    study.db         the Optuna study (SQLite), unless --storage names another database
    trial-0003/      trial 3: a run folder as `dl train` writes it (config.yaml holds the trial's values),
                     so dl eval, dl runs, dl plot and load_run work on it
    logs/, claims/   each trial's output; the lock files that say which process runs which trial

A trial runs as a child process, `python -m dlcli train recipe.yaml --set ... --out trial-N`, one per --jobs,
each with cores/jobs threads (DL_THREADS) so that parallel trials share the cores instead of fighting for
them (threads.py). The sweep reads the child's metrics.jsonl as it grows and reports each validation to
Optuna, whose pruner may stop it (SIGINT: dl saves and exits 130). A child dies with its sweep
(PR_SET_PDEATHSIG), so a killed sweep leaves its trials RUNNING in the study with their last.pt on disk;
a resume runs each of those with `dl train --resume`, dl's exact resume, so an interrupted trial ends with
the weights an uninterrupted one would have. Which process runs a trial is an flock on claims/trial-N.lock,
held for the trial's life: the kernel frees it when its holder dies, and a live holder is never doubled.

Many processes may work on one study: `dl sweep DIR --resume` beside a running sweep on this machine, or the
same `dl sweep ... --storage postgresql://...` line on many machines. New trials are asked under an flock
on the sweep folder, so processes on one machine never overshoot --trials; across machines a trial asked
past the count is recorded as surplus and not run. Grid cells are enqueued trials, which Optuna hands to
exactly one process each.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlcli import expect, runs, sweep_space, threads
from dlcli.config import apply_overrides, find_recipe, read_yaml, validate
from dlcli.console import log
from dlcli.errors import DlError, Interrupted
from dlcli.files import write_text_atomic

SPEC = "sweep.yaml"
RECIPE = "recipe.yaml"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
_POLL_S = 0.2  # how often a trial's metrics.jsonl is read (and the pruner asked)


@dataclass
class Spec:
    """What a sweep is, as sweep.yaml holds it; a resume reads it back and changes nothing but `jobs`."""

    params: list[str] = field(default_factory=list)  # --param KEY=SPEC, as given
    grid: list[str] = field(default_factory=list)  # --grid KEY=V1,V2, as given
    seeds: int | None = None
    overrides: list[str] = field(default_factory=list)  # --set, applied to every trial
    trials: int = 20
    metric: str = "val.loss"  # SPLIT.NAME as the run's summary.json reports it
    direction: str = "minimize"
    sampler: str = "tpe"
    prune: str = "none"
    storage: str | None = None  # an SQLAlchemy URL; None: study.db in the sweep folder
    study: str = ""  # the study's name in the storage (default: the sweep folder's name)
    seed: int = 0  # the sampler's seed (the recipe's seed)
    jobs: int = 1

    def space(self) -> sweep_space.Space:
        return sweep_space.parse(self.params, self.grid, self.seeds, self.seed)


def default_direction(metric: str) -> str:
    """Optuna's direction for a metric: minimize losses and perplexities, maximize the rest (as expect: reads them)."""
    return "minimize" if expect.lower_is_better(metric) else "maximize"


def create(recipe: str, spec: Spec, folder: Path | None) -> Path:
    """Check everything, then write the sweep folder (sweep.yaml, recipe.yaml) and its study; returns the folder.
    Nothing is written when a flag, key or value is wrong (DlError, exit 2)."""
    recipe_file = find_recipe(recipe)
    raw = apply_overrides(read_yaml(recipe_file), list(spec.overrides))
    from dlcli.tasks import get_config  # on use: the schemas import config.py

    schema = get_config(raw.get("task"))
    cfg = validate(raw, schema)
    spec.seed = cfg.seed
    space = _checked_space(spec)
    sweep_space.check_against(raw, schema, space)
    expect.check_reported(cfg, spec.metric, "--metric")
    folder = Path(folder) if folder is not None else runs.RUNS / f"{cfg.name}-sweep"
    if (folder / SPEC).exists():
        raise DlError(f"{folder} holds a sweep already. Continue it with `dl sweep {folder} --resume`, or give --out.")
    if folder.exists() and any(folder.iterdir()):
        raise DlError(f"{folder} exists and is not a sweep folder; give another with --out.")
    spec.study = spec.study or folder.resolve().name
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        study = _open_study(folder, spec, create=True)  # an unreachable --storage fails here, before any file
    except DlError:
        if created:
            folder.rmdir()
        raise
    write_text_atomic(folder / RECIPE, recipe_file.read_text(encoding="utf-8"))
    write_text_atomic(folder / SPEC, yaml.safe_dump(asdict(spec), sort_keys=False))
    if space.grid and not study.trials:  # another machine's process may have enqueued the cells already
        for cell in space.cells():
            study.enqueue_trial(cell, skip_if_exists=True)
    return folder


def read_spec(folder: Path) -> Spec:
    """sweep.yaml of a sweep folder (DlError when it is not one)."""
    path = Path(folder) / SPEC
    if not path.is_file():
        raise DlError(f"{folder} is not a sweep folder (no {SPEC}). `dl sweep RECIPE ...` starts one.")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return Spec(**data)
    except TypeError as e:
        raise DlError(f"{path} is not a sweep description that this dl writes: {e}") from None


def run(folder: Path, jobs: int | None = None, quiet: bool = False) -> None:
    """Work on the sweep until --trials trials have ended: resume the cut ones of this folder, ask new ones.
    Ctrl-C stops every trial at a checkpoint (Interrupted, exit 130); `--resume` continues them."""
    folder = Path(folder)
    spec = read_spec(folder)
    jobs = jobs or spec.jobs
    if jobs < 1:
        raise DlError(f"--jobs {jobs}: give how many trials to run at once, 1 or more.")
    worker = _Worker(folder, spec, _open_study(folder, spec), jobs, quiet)
    workers = [threading.Thread(target=worker.loop, name=f"sweep-job-{i}", daemon=True) for i in range(jobs)]
    for thread in workers:
        thread.start()
    try:
        while any(thread.is_alive() for thread in workers):
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        worker.stop.set()
        worker.interrupt_children()  # each saves its checkpoint and exits 130 (a terminal's Ctrl-C reached them too)
        for thread in workers:
            thread.join()
        log.print(f"sweep interrupted; continue it with `dl sweep {folder} --resume`", markup=False)
        raise Interrupted() from None
    if worker.interrupted:
        log.print(f"a trial was interrupted; continue the sweep with `dl sweep {folder} --resume`", markup=False)
        raise Interrupted()


def open_study(folder: Path):
    """The Optuna study of a sweep folder, for reading (dl sweep show)."""
    return _open_study(Path(folder), read_spec(folder))


# --------------------------------------------------------------------------- setup


def _checked_space(spec: Spec) -> sweep_space.Space:
    if spec.sampler not in SAMPLERS:
        raise DlError(f"--sampler {spec.sampler}: use one of {', '.join(SAMPLERS)}.")
    if spec.prune not in PRUNERS:
        raise DlError(f"--prune {spec.prune}: use one of {', '.join(PRUNERS)}.")
    if spec.direction not in ("minimize", "maximize"):
        raise DlError(f"--direction {spec.direction}: use minimize or maximize.")
    split, _, name = spec.metric.partition(".")
    if split not in ("val", "test") or not name:
        raise DlError(f"--metric {spec.metric}: name a validation or test metric, such as val.loss or val.top1.")
    space = spec.space()
    if spec.sampler == "grid":  # every --param must be a list of choices: they join the grid
        ranges = [p.key for p in space.params if p.kind != "choice"]
        if ranges:
            raise DlError(f"--sampler grid takes lists of values; {', '.join(ranges)} is a range. Use choice:A,B.")
        spec.grid += [f"{p.key}={','.join(map(json.dumps, p.choices))}" for p in space.params]
        spec.params = []
        space = spec.space()
    if not space.params and not space.grid:
        raise DlError("Nothing to sweep: give --param KEY=SPEC, --grid KEY=V1,V2 or --seeds N.")
    if space.grid:
        cells = len(space.cells())
        if spec.trials not in (0, cells):
            raise DlError(
                f"--trials {spec.trials}: the grid has {cells} cells (values crossed with seeds); "
                "a grid sweep runs each cell once, so leave --trials out."
            )
        spec.trials = cells
    elif spec.trials < 1:
        raise DlError(f"--trials {spec.trials}: give how many trials to run, 1 or more.")
    return space


def _open_study(folder: Path, spec: Spec, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # dl prints one line per trial itself
    url = spec.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    # A new sweep in its own folder samples from the recipe's seed, reproducibly; a process that joins a study
    # (a resume, another machine) gets a seed of its own, or it would propose the same values as the first.
    seed = spec.seed if create and spec.storage is None else spec.seed + os.getpid()
    sampler = (
        optuna.samplers.RandomSampler(seed=seed) if spec.sampler == "random" else optuna.samplers.TPESampler(seed=seed)
    )
    pruner = {
        "none": optuna.pruners.NopPruner(),
        # from the third finished trial on (Optuna's default waits for five: half of a short sweep)
        "median": optuna.pruners.MedianPruner(n_startup_trials=2),
        "hyperband": optuna.pruners.HyperbandPruner(),
    }[spec.prune]
    for attempt in range(5):
        try:
            kwargs = {"study_name": spec.study, "storage": _storage(url), "sampler": sampler, "pruner": pruner}
            if create:
                return optuna.create_study(direction=spec.direction, load_if_exists=True, **kwargs)
            return optuna.load_study(**kwargs)
        except KeyError:
            raise DlError(f"The storage {url} holds no study '{spec.study}'.") from None
        except Exception as e:  # SQLAlchemy's: a bad URL, a missing driver, an unreachable server, a race
            if _lost_a_creation_race(e) and attempt < 4:  # a second look finds what the winner made
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DlError(f"Cannot open the sweep's study storage {url}: {reason}") from None


def _lost_a_creation_race(error: Exception) -> bool:
    """Whether opening the storage failed only because another process created the same tables or study
    first, as machines that start one study at once do."""
    if "Integrity" in type(error).__name__:  # the study's row, or a table's type row: a unique key clashed
        return True
    # A table another connection created since this one looked: PostgreSQL says DuplicateTable or
    # DuplicateObject, SQLite an OperationalError "table studies already exists" (it has no finer code).
    # SQLAlchemy wraps the driver's error in .orig (psycopg's sqlstate, psycopg2's pgcode).
    driver_error = getattr(error, "orig", None)
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if code in ("42P07", "42710"):
        return True
    return type(driver_error).__module__ == "sqlite3" and "already exists" in str(driver_error)


def _storage(url: str):
    import optuna

    if url.startswith("sqlite"):  # processes and threads share the file: wait for its lock, do not fail
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


# --------------------------------------------------------------------------- the work


@dataclass
class _Claimed:
    """A trial this process runs: Optuna's handle, its values, whether it continues a cut run, the claim lock."""

    trial: Any  # optuna.Trial
    values: dict[str, Any]
    resumed: bool
    claim_fd: int


class _Worker:
    """What the sweep's job threads share: the study, the flag that stops them, what the trials ended as."""

    def __init__(self, folder: Path, spec: Spec, study: Any, jobs: int, quiet: bool):
        self.folder, self.spec, self.study, self.quiet = folder, spec, study, quiet
        self.space = spec.space()
        self.threads = max(1, threads.count() // jobs)  # cores shared among the parallel trials
        self.stop = threading.Event()
        self.interrupted = False
        self.children: set[subprocess.Popen] = set()  # the dl train processes running now
        self._lock = threading.Lock()  # one thread at a time asks Optuna for a trial
        # Whose a trial is: the machine and the sweep folder whose claims/ decide who runs it.
        self.owner = f"{socket.gethostname()}:{folder.resolve()}"

    def loop(self) -> None:
        while not self.stop.is_set():
            claimed = self._next()
            if claimed is None:
                return
            try:
                self._run(claimed)
            finally:
                os.close(claimed.claim_fd)

    def interrupt_children(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)

    def _next(self) -> _Claimed | None:
        """A trial to run: one of this folder's that a dead process left, else a new one while fewer than
        --trials exist; None when the sweep has nothing left for this process."""
        import optuna

        with self._lock, _flocked(self.folder / "claims" / ".ask.lock"):
            for frozen in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if not self._asked_here(frozen):
                    continue  # another machine's, or another sweep folder's on this one
                fd = _claim(self._claim_path(frozen.number))
                if fd is not None:
                    return self._take(optuna.trial.Trial(self.study, frozen._trial_id), fd, resumed=True)
            ended_or_running = [t for t in self.study.get_trials(deepcopy=False) if not is_unrun(t)]
            if len(ended_or_running) >= self.spec.trials:
                return None
            trial = self.study.ask()
            if trial.number >= self.spec.trials:  # another machine asked the last ones meanwhile
                trial.set_user_attr("surplus", True)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return None
            return self._take(trial, _claim(self._claim_path(trial.number)), resumed=False)

    def _take(self, trial: Any, claim_fd: int, resumed: bool) -> _Claimed:
        """The trial as this folder's to run: owner and run folder recorded, and its values: those it holds, the
        others drawn (a process killed between asking a trial and drawing its values left it without them)."""
        trial.set_user_attr("owner", self.owner)
        trial.set_user_attr("folder", _trial_name(trial.number))
        return _Claimed(trial, self._suggest(trial), resumed, claim_fd)

    def _asked_here(self, frozen: Any) -> bool:
        """Whether this folder's process asked the trial: its owner, or (a process that died before writing the
        owner, just after asking) no owner and a claim file here, which only the asker makes for its number."""
        owner = frozen.user_attrs.get("owner")
        return owner == self.owner or (owner is None and self._claim_path(frozen.number).exists())

    def _suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's value for every key of the space: the ones it holds, the others drawn (Optuna's suggest_*
        returns a value the trial already has)."""
        values = {key: trial.suggest_categorical(key, list(choices)) for key, choices in self.space.grid}
        for p in self.space.params:
            if p.kind == "choice":
                values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
            elif p.kind in ("int", "logint"):
                values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
            else:
                values[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
        return values

    def _claim_path(self, number: int) -> Path:
        return self.folder / "claims" / f"{_trial_name(number)}.lock"

    def _run(self, claimed: _Claimed) -> None:
        import optuna

        trial, number = claimed.trial, claimed.trial.number
        run_dir = self.folder / _trial_name(number)
        values = ", ".join(f"{k}={_short(v)}" for k, v in claimed.values.items())
        self._say(f"trial {number} {'resumed' if claimed.resumed else 'started'}: {values}")
        outcome = _Child(self, trial, run_dir, claimed).run()
        if outcome.interrupted:
            self.interrupted = True
            self.stop.set()
            self._say(f"trial {number} interrupted at its checkpoint; `dl sweep {self.folder} --resume` continues it")
            return  # left RUNNING: a resume continues it
        if outcome.pruned:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self._say(f"trial {number} pruned at step {outcome.last_step}: {self.spec.metric} {outcome.last_value}")
        elif outcome.error is not None:
            trial.set_user_attr("error", outcome.error)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._say(f"trial {number} failed: {outcome.error}")
        else:
            self.study.tell(trial, outcome.value)
            self._say(f"trial {number} finished: {self.spec.metric} {outcome.value:.6g}")

    def _say(self, message: str) -> None:
        if not self.quiet:
            log.print(message, highlight=False, markup=False)


@dataclass
class _Outcome:
    value: float | None = None
    error: str | None = None
    pruned: bool = False
    interrupted: bool = False
    last_step: int | None = None
    last_value: float | None = None


class _Child:
    """One `dl train` child for one trial: started, watched (its validations reported, maybe pruned), ended."""

    def __init__(self, worker: _Worker, trial: Any, run_dir: Path, claimed: _Claimed):
        self.worker, self.trial, self.run_dir, self.claimed = worker, trial, run_dir, claimed
        self.split, _, self.name = worker.spec.metric.partition(".")
        self._offset = 0
        self.outcome = _Outcome()

    def command(self) -> list[str]:
        sets = [f"{key}={json.dumps(value)}" for key, value in self.claimed.values.items()]
        command = [sys.executable, "-m", "dlcli", "train", str(self.worker.folder / RECIPE), "-q"]
        for item in [*self.worker.spec.overrides, *sets]:
            command += ["--set", item]
        command += ["--out", str(self.run_dir)]
        if (self.run_dir / "checkpoints" / "last.pt").is_file():
            command.append("--resume")  # dl's exact resume from the trial's own last checkpoint
        elif self.run_dir.exists():
            command.append("--overwrite")  # cut before its first checkpoint: nothing to continue from
        return command

    def run(self) -> _Outcome:
        env = {**os.environ, "DL_THREADS": str(self.worker.threads), "OMP_NUM_THREADS": str(self.worker.threads)}
        log_path = self.worker.folder / "logs" / f"{self.run_dir.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as output:
            child = subprocess.Popen(
                self.command(), stdout=output, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
            )
            self.worker.children.add(child)
            try:
                while child.poll() is None:
                    self._report_validations(child)
                    time.sleep(_POLL_S)
            finally:
                self.worker.children.discard(child)
        self._report_validations(None)
        return self._ended(child.returncode, log_path)

    def _report_validations(self, child: subprocess.Popen | None) -> None:
        """Report the validations metrics.jsonl gained since the last look; SIGINT the child if Optuna prunes."""
        for record in self._new_records():
            value = record.get(self.name)
            if record.get("split") != "val" or not isinstance(value, int | float):
                continue
            self.trial.report(float(value), int(record["step"]))
            self.outcome.last_step, self.outcome.last_value = int(record["step"]), value
            if child is not None and not self.outcome.pruned and self.trial.should_prune():
                self.outcome.pruned = True
                child.send_signal(signal.SIGINT)  # dl saves a checkpoint and exits 130

    def _new_records(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:
                    self._offset = 0  # a resume cut the file back to its checkpoint
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next look
        self._offset += len(complete)
        records = []
        for line in complete.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def _ended(self, code: int, log_path: Path) -> _Outcome:
        if self.outcome.pruned:
            return self.outcome
        if code == 130 or code == -signal.SIGINT:
            self.outcome.interrupted = True
        elif code != 0:
            self.outcome.error = f"exit {code}: {_last_line(log_path)} (log: {log_path})"
        else:
            summary = json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8"))
            value = summary.get("metrics", {}).get(self.split, {}).get(self.name)
            if isinstance(value, int | float):
                self.outcome.value = float(value)
            else:
                reported = sorted(f"{s}.{n}" for s, m in summary.get("metrics", {}).items() for n in m)
                self.outcome.error = f"the run reports no {self.worker.spec.metric} (it reports {', '.join(reported)})"
        return self.outcome


# --------------------------------------------------------------------------- small helpers


def _trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def is_unrun(trial: Any) -> bool:
    """An enqueued grid cell not started yet, or a surplus trial (asked past --trials by another machine):
    a trial of the study with no run, which neither the count of trials nor `dl sweep show` includes."""
    return trial.state.name == "WAITING" or bool(trial.user_attrs.get("surplus"))


def _claim(path: Path) -> int | None:
    """An exclusive flock on `path` (created), or None when a live process holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _flocked(path: Path):
    """Hold an exclusive flock on `path` for the block, waiting for it (processes of one machine take turns)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the sweep dies (Linux; elsewhere it outlives it)."""
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no output"
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no output"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
