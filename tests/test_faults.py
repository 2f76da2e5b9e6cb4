"""Faults injected the way storage engines test themselves: torn and flipped checkpoints, SIGKILL at
random moments, a full disk, a read-only folder, NaN losses and out-of-memory errors.

Each test drives `dl train` (through the CLI, in-process or as a subprocess) on a tiny character
transformer and checks what a user relies on: the exit code, one message that names the problem and the
checkpoint to continue from, that checkpoint intact, and (after kills) weights bit-identical to an
uninterrupted run.

    pytest tests/test_faults.py -s            # prints the kill loop's counts (50 kills)
    pytest tests/test_faults.py -m slow -s    # 60 kills of fresh `python -m dlcli` processes
"""

from __future__ import annotations

import errno
import glob
import json
import os
import random
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlcli import checkpoint, failures, loop
from dlcli.api import load_config
from dlcli.cli import app
from dlcli.console import MetricsFile
from dlcli.errors import DlError
from dlcli.files import remove_stale_temps
from dlcli.runs import read_metrics
from dlcli.tasks import lm

from conftest import assert_same_training_state

# A tiny character transformer on the built-in corpus: 20 sentences in batches of 4 windows of 16
# characters -> 15 steps per epoch, 58 KB checkpoints, about 1 s for 60 steps with a checkpoint at
# every step. A transformer, not the char LSTM: the LSTM's carried state is not in the checkpoint, so
# it resumes exactly only at epoch ends, and these tests resume mid-epoch. Dropout on: resume must
# restore the RNG too.
RECIPE = "transformer_lm"
TINY_LM = [
    "--set",
    "model.embedding_dim=8",
    "--set",
    "model.heads=2",
    "--set",
    "model.num_layers=1",
    "--set",
    "model.dropout=0.1",
    "--set",
    "data.builtin_sentences=20",
    "--set",
    "data.batch_size=4",
    "--set",
    "data.bptt=16",
    "--set",
    "data.eval_batch_size=4",
    "--set",
    "schedule.warmup_steps=0",
    "--set",
    "train.log_every=1",
    "--set",
    "train.checkpoint_every=2",
    "--device",
    "cpu",
    "-q",
    "--json",
]

# A ResNet-18 on 16 px shapes (3 batches of 4 per epoch, 2 steps): the recipe with a test split.
TINY_CLASSIFY = [
    "--set",
    "data.image_size=16",
    "--set",
    "data.batch_size=4",
    "--set",
    "data.train_size=12",
    "--set",
    "data.val_size=10",
    "--set",
    "data.test_size=10",
    "--set",
    "train.max_steps=2",
    "-q",
]


def dl(*args):
    return CliRunner().invoke(app, ["train", RECIPE, *[str(a) for a in args], *TINY_LM])


def ckpt_dir(run: Path) -> Path:
    return run / "checkpoints"


def step_of(path: Path) -> int:
    return checkpoint.load(path).step


def temp_files(folder: Path) -> list[str]:
    return sorted(glob.glob(str(folder / ".*.tmp-*")))


def inject(monkeypatch, at_calls: set[int], fault) -> None:
    """lm's train_step, with `fault(out)` applied at these calls (1-based: call n is step n when
    grad_accum is 1); `fault` returns the step's result or raises."""
    original = lm.build

    def build(cfg, runtime, load_weights=True):
        job = original(cfg, runtime, load_weights=load_weights)
        inner, calls = job.train_step, [0]

        def train_step(model, batch):
            out = inner(model, batch)
            calls[0] += 1
            return fault(out) if calls[0] in at_calls else out

        job.train_step = train_step
        return job

    monkeypatch.setattr(lm, "build", build)


# --------------------------------------------------------------------------- the seal


def test_a_checkpoint_is_sealed_with_its_sha256_and_still_a_plain_torch_file(tmp_path):
    import zipfile

    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": torch.arange(5)}, path)
    assert checkpoint.seal_status(path) == "ok"
    assert zipfile.ZipFile(path).comment.startswith(b"dlcli-sha256:")  # the seal is the zip's comment
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(5))  # readable without dlcli
    assert torch.equal(checkpoint.load_file(path)["x"], torch.arange(5))


def test_version_1_checkpoints_still_load_but_an_unsealed_version_2_is_refused(tmp_path):
    old = tmp_path / "v1.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "x": torch.ones(2)}, old)  # as dl wrote before the seal
    assert checkpoint.load_file(old)["version"] == 1 and checkpoint.is_intact(old)
    stripped = tmp_path / "v2.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 2, "x": torch.ones(2)}, stripped)
    with pytest.raises(DlError, match="lost its sha256 seal"):
        checkpoint.load(stripped)


def test_the_record_round_trips_reads_older_files_with_defaults_and_refuses_other_dl_files(tmp_path):
    record = checkpoint.Record(
        task="lm", config={"task": "lm"}, model={"w": torch.ones(2)}, position=checkpoint.Position(1, 0, 7)
    )
    checkpoint.save(record, tmp_path / "new.pt")
    back = checkpoint.load(tmp_path / "new.pt")
    assert back.step == 7 and back.task == "lm" and torch.equal(back.model["w"], torch.ones(2))
    assert checkpoint.peek(tmp_path / "new.pt").position == record.position
    # A version 1 file, from before skipped_steps, metrics_bytes and the seal: their defaults fill in.
    old = {k: v for k, v in record.to_file().items() if k not in ("skipped_steps", "metrics_bytes")}
    torch.save({**old, "version": 1}, tmp_path / "v1.pt")
    assert checkpoint.load(tmp_path / "v1.pt").skipped_steps == 0
    # A sealed dl file that is not a training run's (translation's epoch weights are bare state_dicts).
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": 1}, tmp_path / "x.pt")
    with pytest.raises(DlError, match="not a training checkpoint"):
        checkpoint.load(tmp_path / "x.pt")
    assert checkpoint.peek(tmp_path / "x.pt") is None


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_a_damaged_last_pt_is_exit_2_offering_last_prev_pt_which_resumes_exactly(tmp_path, damage):
    run, straight = tmp_path / "run", tmp_path / "straight"
    assert dl("--out", straight, "--set", "train.max_steps=10").exit_code == 0
    assert dl("--out", run, "--set", "train.max_steps=6").exit_code == 0
    last, prev = ckpt_dir(run) / "last.pt", ckpt_dir(run) / "last.prev.pt"
    assert (step_of(last), step_of(prev)) == (6, 4)  # checkpoint_every=2: the one before is kept
    data = bytearray(last.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10  # one bit, in the middle of the weights
    last.write_bytes(bytes(data))

    refused = dl("--out", run, "--resume", "--set", "train.max_steps=10")
    assert refused.exit_code == 2, refused.output
    message = refused.stderr  # the console does not wrap: paths stay whole
    assert str(last) in message and f"--resume-from {prev}" in message
    assert ("sha256" in message) if damage == "bitflip" else ("truncated" in message)
    assert "Traceback" not in refused.output
    assert last.read_bytes() == bytes(data)  # nothing was touched by the refused resume

    # Continue from last.prev.pt. Its first save must not rotate the damaged last.pt into last.prev.pt.
    assert dl("--out", run, "--resume-from", prev, "--set", "train.max_steps=6").exit_code == 0
    assert (step_of(last), step_of(prev)) == (6, 4)
    assert dl("--out", run, "--resume", "--set", "train.max_steps=10").exit_code == 0
    assert_same_training_state(checkpoint.load(ckpt_dir(straight) / "last.pt"), checkpoint.load(last))


def test_last_pt_saved_at_best_pt_s_step_is_that_file_and_the_next_save_leaves_best_pt_alone(tmp_path):
    run = tmp_path / "run"
    assert dl("--out", run, "--set", "train.epochs=1").exit_code == 0  # validated once, at the end: best is last
    folder = ckpt_dir(run)
    last, best, prev = folder / "last.pt", folder / "best.pt", folder / "last.prev.pt"
    assert os.path.samefile(last, best)  # linked, not serialised twice
    assert step_of(prev) < step_of(last) and not os.path.samefile(prev, last)
    best_bytes = best.read_bytes()
    # The next save of last.pt (as a resumed run makes it) renames a new file over the name; the file
    # best.pt shares is kept as last.prev.pt and is never written in place.
    moved_on = checkpoint.load(last)
    moved_on.position.step = 99
    checkpoint.save(moved_on, last, previous=prev)
    assert best.read_bytes() == best_bytes and checkpoint.is_intact(best)
    assert os.path.samefile(prev, best) and step_of(last) == 99


def test_link_atomic_gives_a_second_name_keeping_what_it_replaces(tmp_path):
    source, target, previous = tmp_path / "best.pt", tmp_path / "last.pt", tmp_path / "last.prev.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": 1}, source)
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": 2}, target)
    checkpoint.link_atomic(source, target, previous=previous)
    assert checkpoint.load_file(target)["x"] == 1 and checkpoint.load_file(previous)["x"] == 2
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------- SIGKILL at random moments
#
# Two ways to start `dl train`, each a process of its own that SIGKILL ends at once:
#   _Fresh:  `python -m dlcli train ...`, as a user runs it; ~2-3 s of imports before each run.
#   _Forked: forked from a helper process that has imported dlcli (and torch) once, then runs the
#            same `dl train` command line in the child; no threads exist at the fork, so it is
#            safe, and a run starts in ~0.1 s. This is what lets 50 kills fit in the default suite.


def _child_env() -> dict[str, str]:
    # One torch thread: the test machines' cores are shared, and a tiny model is faster so.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


class _Fresh:
    """Each run a new interpreter."""

    def __init__(self, cwd: Path):
        self.cwd = cwd

    def start(self, argv: list[str], log: Path) -> "_Fresh":
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dlcli", *argv],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_child_env(),
                cwd=self.cwd,
            )
        self.pid = self.proc.pid
        return self

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        pass


# The helper: reads [argv, log] lines; per line forks a child that runs `dl` with argv (stderr to
# log) and answers "PID" at once, then the child's exit code (-9: SIGKILL) when it has ended.
_FORK_SERVER = r"""
import json, os, sys
import torch
import torch._dynamo  # what torch.optim imports at its first use: ~1 s that each child would pay
torch.set_num_threads(1)
import dlcli.api
from dlcli.cli import app
while line := sys.stdin.readline():
    argv, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            app(argv, prog_name="dl")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            code = 70
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class _Forked:
    """Each run a child forked from one helper process that imported dlcli once."""

    def __init__(self, cwd: Path):
        self.server = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=_child_env(),
            cwd=cwd,
        )
        self.pending = b""  # what the helper said past the last whole line

    def start(self, argv: list[str], log: Path) -> "_Forked":
        self.server.stdin.write((json.dumps([argv, str(log)]) + "\n").encode())
        line = self._line(timeout=600)  # the first waits for the helper's imports
        assert line is not None, "the fork helper did not start a run within 600 s"
        self.pid, self.code = int(line), None
        return self

    def _line(self, timeout: float) -> str | None:
        """The helper's next line, or None after `timeout` s. Read with os.read, not a buffered
        readline: a buffer could swallow the exit line behind the PID, where select cannot see it."""
        end = time.monotonic() + timeout
        fd = self.server.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                return None
            chunk = os.read(fd, 4096)
            assert chunk, "the fork helper died"
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def poll(self) -> int | None:
        if self.code is None:
            line = self._line(timeout=0)
            self.code = None if line is None else int(line)
        return self.code

    def kill(self) -> None:
        # The helper may have reaped the child a moment ago (it finished): the kill then finds no
        # process. Linux hands out PIDs in turn, so none is reused within that moment.
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        if self.code is None:
            line = self._line(timeout)
            assert line is not None, f"dl train (pid {self.pid}) still running after {timeout:.0f} s"
            self.code = int(line)
        return self.code

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)


def _wait_for_training(proc, run: Path, launched_ns: int, deadline: float) -> None:
    """Until the run (re)writes config.yaml, just before its loop starts, or the process exits."""
    config = run / "config.yaml"
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if config.stat().st_mtime_ns >= launched_ns:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)


def _wait_for_saves(proc, last: Path, saves: int, deadline: float) -> None:
    """Until `last` has been replaced `saves` times (a new file each time: os.replace), or the
    process exits. Waiting on the run's own progress, not on a clock, keeps the kills spread over
    the run however busy the machine is."""

    def identity():
        try:
            st = last.stat()
            return st.st_ino, st.st_mtime_ns
        except FileNotFoundError:
            return None

    seen = identity()
    while saves > 0 and proc.poll() is None and time.monotonic() < deadline:
        now = identity()
        if now != seen:
            seen, saves = now, saves - 1
        time.sleep(0.002)


def _evaluating(run: Path, eval_steps: set[int]) -> bool:
    """Whether metrics.jsonl's last whole record is the train record of a step that validation
    follows: the run is evaluating (or was, when it was killed)."""
    try:
        lines = (run / "metrics.jsonl").read_bytes().split(b"\n")[:-1]  # the part after the last newline is torn
    except FileNotFoundError:
        return False
    if not lines:
        return False
    last = json.loads(lines[-1])
    return last["split"] == "train" and last["step"] in eval_steps


def _wait_for_evaluation(proc, run: Path, eval_steps: set[int], deadline: float) -> None:
    """Until the run is evaluating, or the process exits (no evaluation was left to do)."""
    while proc.poll() is None and time.monotonic() < deadline and not _evaluating(run, eval_steps):
        time.sleep(0.001)


def _check_after_kill(run: Path, last_step: int) -> int:
    """Every checkpoint left is complete and sealed; last.pt never goes back. Returns its step."""
    folder = ckpt_dir(run)
    last = folder / "last.pt"
    if not last.exists():
        return last_step  # killed before the first checkpoint
    step = step_of(last)  # checkpoint.load checks the sha256: raises if torn
    assert step >= last_step, f"last.pt went back from step {last_step} to {step}"
    for name in ("last.prev.pt", "best.pt"):
        if (folder / name).exists():
            checkpoint.load(folder / name)
    if (folder / "last.prev.pt").exists():
        assert step_of(folder / "last.prev.pt") <= step
    return step


def _kill_loop(tmp_path: Path, launcher, kills_wanted: int, budget_s: float) -> dict:
    """Train rounds of the same tiny run to 60 steps, SIGKILLing each process at a random moment
    after its loop starts and resuming, until `kills_wanted` kills; each round must end with the
    uninterrupted run's weights."""
    # 60 steps, 4 evaluations, 30 saves of last.pt (and best.pt when val improves): a save costs
    # more than a step here (fsyncs), so most kills land in one, the others in steps and evaluations.
    args = [a for a in TINY_LM if a != "--json"] + ["--set", "train.epochs=4", "--set", "train.checkpoint_every=2"]
    deadline = time.monotonic() + budget_s
    reference = tmp_path / "reference"
    ref = launcher.start(["train", RECIPE, "--out", str(reference), *args], tmp_path / "reference.log")
    assert ref.wait(timeout=budget_s) == 0, (tmp_path / "reference.log").read_text()
    expected = checkpoint.load(ckpt_dir(reference) / "last.pt")
    expected_best = checkpoint.load(ckpt_dir(reference) / "best.pt").model
    summary = json.loads((reference / "summary.json").read_text())
    records = read_metrics(reference)
    eval_steps = {a["step"] for a, b in zip(records, records[1:]) if a["split"] == "train" and b["split"] == "val"}
    # After 0-2 saves of last.pt, kill within about two steps' time: in the next step, evaluation or save.
    max_delay = 2 * summary["wall_s"] / summary["steps"]
    rng = random.Random(0)
    counts = {
        "kills": 0,
        "resumes": 0,
        "rounds": 0,
        "identical": 0,
        "killed_in_a_write": 0,
        "killed_in_evaluation": 0,
        "killed_before_first_checkpoint": 0,
    }
    while counts["kills"] < kills_wanted:
        run = tmp_path / f"round{counts['rounds']}"
        last_step = 0
        while True:  # one round: launch, maybe kill, until the run finishes
            if (ckpt_dir(run) / "last.pt").exists():
                flag, counts["resumes"] = ["--resume"], counts["resumes"] + 1
            else:  # a kill before the first checkpoint leaves a folder to start again in
                flag = ["--overwrite"] if run.exists() else []
            log = tmp_path / "child.log"
            launched_ns = time.time_ns()
            proc = launcher.start(["train", RECIPE, "--out", str(run), *args, *flag], log)
            _wait_for_training(proc, run, launched_ns, deadline)
            if counts["kills"] < kills_wanted and counts["kills"] % 5 == 4:
                # One kill in five aimed at an evaluation, which random moments rarely hit (4 per round).
                _wait_for_evaluation(proc, run, eval_steps, deadline)
            elif counts["kills"] < kills_wanted:
                _wait_for_saves(proc, ckpt_dir(run) / "last.pt", rng.randint(0, 2), deadline)
                time.sleep(rng.uniform(0, max_delay))
            if proc.poll() is None and counts["kills"] < kills_wanted:
                proc.kill()
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            if code == -signal.SIGKILL:
                counts["kills"] += 1
                # Its own temp file left behind: the kill came while it wrote a checkpoint.
                counts["killed_in_a_write"] += any(t.endswith(f".tmp-{proc.pid}") for t in temp_files(ckpt_dir(run)))
                counts["killed_before_first_checkpoint"] += not (ckpt_dir(run) / "last.pt").exists()
                counts["killed_in_evaluation"] += _evaluating(run, eval_steps)
                last_step = _check_after_kill(run, last_step)
                assert time.monotonic() < deadline, f"kill loop over its {budget_s} s budget: {counts}"
                continue
            assert code == 0, log.read_text()  # finished (also when it ended just before the kill)
            break
        assert_same_training_state(expected, checkpoint.load(ckpt_dir(run) / "last.pt"))
        best = checkpoint.load(ckpt_dir(run) / "best.pt").model
        assert all(torch.equal(expected_best[k], best[k]) for k in expected_best)
        assert temp_files(ckpt_dir(run)) == [] and temp_files(run) == []  # killed writers' temp files removed
        # metrics.jsonl reads after torn appends, and holds each step once, as the uninterrupted run's:
        # a resume cuts it back to where its checkpoint was written.
        assert _records(run) == _records(reference)
        counts["rounds"] += 1
        counts["identical"] += 1
    return counts


def _report(how: str, counts: dict, started: float, cpu_before: os.times_result) -> None:
    """The counts, the wall time and the CPU time of this test and its processes: on a machine
    shared with other work the wall time says little, the CPU time is about what an idle one takes."""
    cpu = [a - b for a, b in zip(os.times(), cpu_before)]
    print(
        f"\nkill loop ({how}): {counts['kills']} SIGKILLs ({counts['killed_in_a_write']} left a half-written "
        f"temp checkpoint, {counts['killed_in_evaluation']} came in an evaluation, "
        f"{counts['killed_before_first_checkpoint']} came before the first checkpoint), "
        f"{counts['resumes']} resumes, {counts['identical']}/{counts['rounds']} rounds ended with weights "
        f"identical to the uninterrupted run; {time.monotonic() - started:.0f} s wall, {sum(cpu[:4]):.0f} s CPU"
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_fifty_sigkills_at_random_moments_then_resume_ends_bit_identical(tmp_path):
    started, cpu_before, launcher = time.monotonic(), os.times(), _Forked(tmp_path)
    try:
        counts = _kill_loop(
            tmp_path, launcher, kills_wanted=50, budget_s=1800
        )  # a hang guard: ~1 min on an idle machine
    finally:
        launcher.close()  # reaps the helper: its children's CPU time counts from here
    _report("forked dl train processes", counts, started, cpu_before)
    assert counts["kills"] == 50 and counts["identical"] == counts["rounds"] >= 1
    assert counts["killed_in_a_write"] >= 1 and counts["killed_in_evaluation"] >= 1  # kills landed in both


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sixty_sigkills_of_fresh_dl_processes_then_resume_ends_bit_identical(tmp_path):
    started, cpu_before = time.monotonic(), os.times()
    counts = _kill_loop(tmp_path, _Fresh(tmp_path), kills_wanted=60, budget_s=2400)
    _report("fresh python -m dlcli processes", counts, started, cpu_before)
    assert counts["kills"] == 60 and counts["identical"] == counts["rounds"] >= 1
    assert counts["killed_in_a_write"] >= 1 and counts["killed_in_evaluation"] >= 1


# --------------------------------------------------------------------------- disk full, read-only


def _limit_file_size(limit: int):
    def apply() -> None:  # runs in the child before exec
        # Ignored, a write past the limit fails with EFBIG instead of killing the process (as on a
        # full disk, ENOSPC). Python ignores SIGXFSZ too; said here so the test does not depend on it.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_a_checkpoint_write_past_the_file_size_limit_exits_1_keeping_the_last_good_one(tmp_path):
    run = tmp_path / "run"
    assert dl("--out", run, "--set", "train.max_steps=4").exit_code == 0
    last, prev = ckpt_dir(run) / "last.pt", ckpt_dir(run) / "last.prev.pt"
    before = last.read_bytes(), prev.read_bytes()
    limit = len(before[0]) // 3  # the 58 KB checkpoint cannot be written; metrics.jsonl's lines can
    args = [a for a in TINY_LM if a != "--json"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            RECIPE,
            "--out",
            str(run),
            "--resume",
            *args,
            "--set",
            "train.max_steps=8",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        preexec_fn=_limit_file_size(limit),
    )
    message = proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert f"Could not write the checkpoint {last} at step 6" in message
    assert "File too large (EFBIG)" in message and f"{last} (step 4), is kept" in message
    assert "Traceback" not in proc.stderr
    assert (last.read_bytes(), prev.read_bytes()) == before
    assert temp_files(ckpt_dir(run)) == []


def test_a_read_only_checkpoint_folder_exits_1_keeping_the_last_good_one(tmp_path, monkeypatch):
    # Root ignores file permissions, so the refusal is simulated where the rename happens.
    run = tmp_path / "run"
    assert dl("--out", run, "--set", "train.max_steps=4").exit_code == 0
    last = ckpt_dir(run) / "last.pt"
    before = last.read_bytes()
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if "checkpoints" in str(dst):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    result = dl("--out", run, "--resume", "--set", "train.max_steps=8")
    message = result.stderr
    assert result.exit_code == 1, result.output
    assert "Permission denied (EACCES)" in message and f"Make {ckpt_dir(run)} writable" in message
    assert f"{last} (step 4), is kept" in message and "Traceback" not in result.output
    assert last.read_bytes() == before and temp_files(ckpt_dir(run)) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_chmod_read_only_checkpoint_folder_exits_1(tmp_path):
    run = tmp_path / "run"
    assert dl("--out", run, "--set", "train.max_steps=4").exit_code == 0
    before = (ckpt_dir(run) / "last.pt").read_bytes()
    ckpt_dir(run).chmod(0o555)
    try:
        result = dl("--out", run, "--resume", "--set", "train.max_steps=8")
    finally:
        ckpt_dir(run).chmod(0o755)
    assert result.exit_code == 1 and "writable" in result.stderr and "Traceback" not in result.output
    assert (ckpt_dir(run) / "last.pt").read_bytes() == before


# --------------------------------------------------------------------------- numerics


def _nan(out: dict) -> dict:
    return {**out, "loss": out["loss"] * float("nan")}


def test_a_nan_loss_stops_naming_the_step_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    inject(monkeypatch, {5}, _nan)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=10")
    message = result.stderr
    assert result.exit_code == 1, result.output
    assert "at optimizer step 5" in message and f"{ckpt_dir(run) / 'last.pt'} (step 4), is kept" in message
    assert "train.on_nonfinite=skip" in message and "Traceback" not in result.output
    saved = checkpoint.load(ckpt_dir(run) / "last.pt")
    assert saved.step == 4
    assert all(torch.isfinite(t.float()).all() for t in saved.model.values())


def test_a_nan_loss_between_log_steps_stops_at_the_next_check_naming_its_step(tmp_path, monkeypatch):
    # Step 3's loss alone is NaN, steps 4-6 are finite; the run logs every 6 steps and saves every 2:
    # the flag kept on the device since step 3 stops the run at step 4's checkpoint, before it is written.
    inject(monkeypatch, {3}, _nan)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=6", "--set", "train.log_every=6")
    assert result.exit_code == 1, result.output
    assert "The training loss became NaN/Inf at optimizer step 3 (epoch 1)" in result.stderr
    assert f"{ckpt_dir(run) / 'last.pt'} (step 2), is kept" in result.stderr and "Traceback" not in result.output
    assert step_of(ckpt_dir(run) / "last.pt") == 2


def _nan_in_evaluation(monkeypatch, split: str) -> None:
    """loop.evaluate, with the loss of `split`'s evaluations made NaN (the weights stay finite)."""
    original = loop.evaluate

    def evaluate(model, loader, job, runtime):
        metrics = original(model, loader, job, runtime)
        return {**metrics, "loss": float("nan")} if loader is job.eval_data[split] else metrics

    monkeypatch.setattr(loop, "evaluate", evaluate)


def test_a_nan_validation_loss_is_exit_1_and_chooses_no_best_checkpoint(tmp_path, monkeypatch):
    _nan_in_evaluation(monkeypatch, "val")
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=4")
    assert result.exit_code == 1, result.output
    assert "The validation loss nan after optimizer step 4" in result.stderr
    assert "no checkpoint is chosen by it" in result.stderr and "Traceback" not in result.output
    assert not (ckpt_dir(run) / "best.pt").exists() and not (run / "summary.json").exists()


def test_a_nan_test_loss_is_exit_1(tmp_path, monkeypatch):
    _nan_in_evaluation(monkeypatch, "test")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "resnet", "--out", str(run), *TINY_CLASSIFY])
    assert result.exit_code == 1, result.output
    assert "The test loss nan after optimizer step 2" in result.stderr and "Traceback" not in result.output
    assert not (run / "summary.json").exists()


def test_densenet_on_2_values_per_batchnorm_channel_is_refused_saying_why(tmp_path):
    # The case: DenseNet-161 at 32 px reaches 1x1 maps in its last dense block, so at batch 2
    # each of that block's 48 BatchNorms normalizes 2 values per channel. Their output is then +-1
    # whatever the input, and the gradient through them grows as 1/sqrt(eps): the first step's
    # gradient norm is ~1e11 and the weights go NaN by step 2 (on some CPUs only after a NaN
    # validation). Refused before training, with the batch or image size that works.
    result = CliRunner().invoke(
        app,
        [
            "train",
            "densenet",
            "--out",
            str(tmp_path / "run"),
            "--set",
            "train.max_steps=2",
            "--set",
            "data.image_size=32",
            "--set",
            "data.batch_size=2",
            "--set",
            "data.train_size=20",
            "--set",
            "data.val_size=10",
            "--set",
            "data.test_size=10",
            "-q",
        ],
    )
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert "on only 2 value(s) per channel" in message and "features.denseblock4" in message and "1x1" in message
    assert "data.batch_size" in message and "data.image_size" in message and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_on_nonfinite_skip_drops_those_updates_counts_them_and_finishes(tmp_path, monkeypatch):
    inject(monkeypatch, {5, 9}, _nan)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=12", "--set", "train.on_nonfinite=skip")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_steps"] == 2
    assert "step 5 (epoch 1): the loss is NaN/Inf; its update is skipped (1 skipped so far)" in result.stderr
    saved = checkpoint.load(ckpt_dir(run) / "last.pt")
    assert saved.step == 12 and saved.skipped_steps == 2
    assert all(torch.isfinite(t.float()).all() for t in saved.model.values())
    # AdamW counts the updates it made: the two skipped steps made none.
    assert {int(s["step"]) for s in saved.optimizer["state"].values()} == {10}
    assert all(r["loss"] == r["loss"] for r in read_metrics(run) if r["split"] == "train")  # no NaN logged


class _InfGradient(torch.autograd.Function):
    """The loss as it is going forward; NaN/Inf gradients going back (an overflow in backward)."""

    @staticmethod
    def forward(ctx, loss):
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _inf_gradient(out: dict) -> dict:
    return {**out, "loss": _InfGradient.apply(out["loss"])}


def test_nan_weights_behind_a_finite_loss_are_never_written_over_the_last_good_checkpoint(tmp_path, monkeypatch):
    # Step 4's loss is finite, its update makes every weight NaN, and step 4 is a checkpoint step:
    # the loss check alone would have sealed NaN weights into last.pt.
    inject(monkeypatch, {4}, _inf_gradient)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=10")
    assert result.exit_code == 1, result.output
    assert (
        "The weights became NaN/Inf by optimizer step 4" in result.stderr and "last.pt is not written" in result.stderr
    )
    assert f"{ckpt_dir(run) / 'last.pt'} (step 2), is kept" in result.stderr and "Traceback" not in result.output
    saved = checkpoint.load(ckpt_dir(run) / "last.pt")
    assert saved.step == 2
    assert all(torch.isfinite(t.float()).all() for t in saved.model.values())


def test_on_nonfinite_skip_also_drops_an_update_whose_gradient_overflowed(tmp_path, monkeypatch):
    inject(monkeypatch, {5}, _inf_gradient)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=12", "--set", "train.on_nonfinite=skip")
    assert result.exit_code == 0, result.output
    assert "step 5 (epoch 1): a gradient is NaN/Inf (the loss was finite); its update is skipped" in result.stderr
    saved = checkpoint.load(ckpt_dir(run) / "last.pt")
    assert saved.skipped_steps == 1 and saved.skips_in_a_row == 0
    assert all(torch.isfinite(t.float()).all() for t in saved.model.values())
    assert {int(s["step"]) for s in saved.optimizer["state"].values()} == {11}


def test_on_nonfinite_skip_stops_after_max_skips_in_a_row(tmp_path, monkeypatch):
    inject(monkeypatch, set(range(5, 20)), _nan)  # from step 5 on, every loss is NaN
    run = tmp_path / "run"
    result = dl(
        "--out",
        run,
        "--set",
        "train.max_steps=30",
        "--set",
        "train.on_nonfinite=skip",
        "--set",
        "train.max_skips_in_a_row=3",
    )
    assert result.exit_code == 1, result.output
    assert "The last 3 optimizer steps (steps 5 to 7, epoch 1) were all skipped: the loss is NaN/Inf" in result.stderr
    assert f"{ckpt_dir(run) / 'last.pt'} (step 6), is kept" in result.stderr and "Traceback" not in result.output


def _records(run: Path) -> list[tuple]:
    """metrics.jsonl without the wall-clock fields."""
    return [tuple((k, v) for k, v in r.items() if k not in ("elapsed_s", "items_per_s")) for r in read_metrics(run)]


def test_a_resumed_run_logs_each_step_once_as_the_uninterrupted_run_does(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert dl("--out", whole, "--set", "train.max_steps=9").exit_code == 0
    # A run that got to step 7 (last.pt) and resumes from step 6 (last.prev.pt), as after a
    # damaged last.pt: steps 7 and its records are done again, and logged once.
    assert dl("--out", cut, "--set", "train.max_steps=7").exit_code == 0
    assert [r["step"] for r in read_metrics(cut) if r["split"] == "train"][-1] == 7
    result = dl("--out", cut, "--set", "train.max_steps=9", "--resume-from", ckpt_dir(cut) / "last.prev.pt")
    assert result.exit_code == 0, result.output
    train_steps = [r["step"] for r in read_metrics(cut) if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) == list(range(1, 10))
    assert _records(cut) == _records(whole)


def test_a_model_too_big_for_memory_is_exit_1_before_training_not_a_traceback(tmp_path):
    limit = 3 << 30  # address space: the allocation of a 57.6 GB LSTM fails at once
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            "char_lstm",
            "--set",
            "model.hidden_size=60000",
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit + _address_space(), resource.RLIM_INFINITY)),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Out of memory on cpu while building the lm model and its data, before training" in proc.stderr
    assert "use a smaller model (the model.* sizes)" in proc.stderr and "Traceback" not in proc.stderr


def _address_space() -> int:
    """This interpreter's virtual size: a child starts from about as much (torch's libraries)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


# --------------------------------------------------------------------------- memory


def _cpu_oom(out: dict) -> dict:
    raise RuntimeError(
        "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
    )


def _bad_alloc(out: dict) -> dict:
    raise RuntimeError("std::bad_alloc")  # C++'s allocation failure inside a torch op


def _cuda_oom(out: dict) -> dict:
    raise torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB"
    )


@pytest.mark.parametrize("fault", [_cpu_oom, _bad_alloc, _cuda_oom], ids=["cpu-allocator", "std-bad-alloc", "cuda"])
def test_out_of_memory_exits_1_naming_the_batch_size_to_try(tmp_path, monkeypatch, fault):
    inject(monkeypatch, {3}, fault)
    run = tmp_path / "run"
    result = dl("--out", run, "--set", "train.max_steps=10")
    message = result.stderr
    assert result.exit_code == 1, result.output
    assert "Out of memory on cpu after optimizer step 2" in message
    assert "--set data.batch_size=2 (half of 4), with --set train.grad_accum=2 to keep the global batch" in message
    assert f"{ckpt_dir(run) / 'last.pt'} (step 2), is kept" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize("recipe, key", [("translation", "max_tokens"), ("word2vec", "batch_words")])
def test_the_out_of_memory_hint_halves_token_and_word_batches(recipe, key):
    _, cfg = load_config(recipe)
    value = getattr(cfg.data, key)
    assert f"--set data.{key}={value // 2} (half of {value})" in failures.smaller_batch_hint(cfg)


# --------------------------------------------------------------------------- leftovers of a killed writer


def test_stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.pt.tmp-{int(dead.stdout)}"
    live = tmp_path / f".last.pt.tmp-{os.getpid()}"
    stale.write_bytes(b"half")
    live.write_bytes(b"writing")
    # a writer of several files (an archive unpacked, an export) leaves a temp folder
    stale_tree = tmp_path / f".cifar-10.tmp-{int(dead.stdout)}"
    (stale_tree / "tree" / "data").mkdir(parents=True)
    (stale_tree / "tree" / "data" / "batch_1").write_bytes(b"half")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale, stale_tree])
    assert live.exists() and not stale.exists() and not stale_tree.exists()


def test_a_torn_metrics_line_costs_only_itself(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train", "loss": 1.0}\n{"step": 2, "spl')  # killed mid-append
    metrics = MetricsFile(path)
    metrics.write({"step": 2, "split": "train", "loss": 0.5})
    metrics.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_translations_epoch_weights_are_averaged_only_when_their_seal_checks(tmp_path):
    from dlcli.tasks.translate import write_averaged_checkpoint

    for epoch in (1, 2):
        checkpoint.save_atomic({"w": torch.full((64,), float(epoch))}, tmp_path / f"epoch-{epoch:03d}.weights.pt")
    assert torch.equal(checkpoint.load_weights(tmp_path / "epoch-002.weights.pt")["w"], torch.full((64,), 2.0))
    damaged = tmp_path / "epoch-002.weights.pt"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    with pytest.raises(DlError, match=r"epoch-002.weights.pt is corrupt: its contents do not match the sha256"):
        write_averaged_checkpoint(tmp_path)
    torch.save({"w": torch.zeros(64)}, damaged)  # written by something else: no seal
    with pytest.raises(DlError, match="it has no sha256 seal"):
        checkpoint.load_weights(damaged)
