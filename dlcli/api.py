"""The Python API: train a recipe and use a run, through the code paths of `dl train` and the inference commands.

    from dlcli import load_run, train

    summary = train("resnet", {"train.epochs": 1}, out="runs/quick")    # = dl train resnet --set ... --out
    run = load_run("runs/quick")
    run.predict(["cat.png"], top=3)                                     # = dl predict cat.png --run runs/quick

The CLI calls these functions, never the other way round. Errors a user can fix raise
dlcli.errors.DlError (the CLI's exit code 2).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli import expect, loading, runlock, runner, vectors
from dlcli import similarity as wordsim  # not `similarity`: Run.similarity is a method
from dlcli.config import Overrides, RunConfig, render_yaml, resolve_recipe
from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.runtime import Runtime, create_runtime
from dlcli.tasks import classify, get_task, lm, translate
from dlcli.tasks import tag as tagging  # not `tag`: Run.tag is a method

# --------------------------------------------------------------------------- training


def load_config(config: str | Path, overrides: Overrides = None) -> tuple[Any, RunConfig]:
    """A recipe resolved as `dl train` resolves it: (its task, its validated config).

    Args:
        config: a recipe file, or a bundled recipe's name ("resnet").
        overrides: recipe keys to change: {"optim.lr": 0.05} or ["optim.lr=0.05"] (as --set).
    """
    cfg = resolve_recipe(config, overrides)
    return get_task(cfg.task), cfg


def train(
    config: str | Path,
    overrides: Overrides = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    resume_from: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    quiet: bool = True,
    strict_expect: bool = False,
) -> dict[str, Any]:
    """Train what a recipe says, as `dl train` does; returns the summary (what summary.json holds).

    Args:
        config: a recipe file, or a bundled recipe's name ("resnet").
        overrides: recipe keys to change: {"train.epochs": 1} or ["train.epochs=1"] (as --set).
        out: the run folder (default runs/<name>).
        resume: continue the run folder's checkpoints/last.pt (--resume).
        resume_from: continue from this checkpoint file (--resume-from).
        overwrite: replace a run already in the folder (--overwrite).
        device: auto, cpu, cuda, cuda:N or mps (default: the recipe's train.device).
        quiet: no progress bars or logs.
        strict_expect: as `dl check`: a recipe's expect: that this run cannot report (a metric the task
            never reports, a split its data lacks) is a DlError before training. Otherwise the run trains
            and its summary says the metric was not reported (data overrides may drop it: a word2vec
            corpus without analogy questions, an image folder without test/).

    Raises:
        DlError: a bad recipe or override, a folder that holds a run and neither resume nor overwrite, or a
            folder another process is writing (its RUN/.lock is held: dlcli.runlock).
        dlcli.errors.Interrupted: Ctrl-C; the checkpoint is saved (continue with resume=True).
        dlcli.errors.RunFailed: training stopped on a failure (failures.NonFiniteLoss: the loss became
            NaN/Inf; a checkpoint that could not be written; out of memory); the message names the last
            good checkpoint, which is kept.
    """
    task, cfg = load_config(config, overrides)
    if strict_expect:
        expect.check_known(cfg)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    runtime = create_runtime(cfg.train, device)
    try:
        with contextlib.ExitStack() as lock:
            _hold_run_dir(run_dir, runtime, lock)  # before anything in the folder is deleted or written
            resume_path = _prepare_run_dir(
                run_dir, resume, Path(resume_from) if resume_from else None, overwrite, runtime.is_main
            )
            logger = Logger(quiet=quiet, enabled=runtime.is_main)
            logger.info(render_yaml(cfg, comments=False).rstrip(), markup=False)
            return runner.train(task, cfg, run_dir, runtime, logger, resume_path, strict_expect=strict_expect)
    finally:
        runtime.close()


def _hold_run_dir(run_dir: Path, runtime: Runtime, lock: contextlib.ExitStack) -> None:
    """One writer per run folder: rank 0 takes RUN/.lock (runlock) for every rank, which all stop when it cannot."""
    refused = None
    if runtime.is_main:
        try:
            lock.enter_context(runlock.holding(run_dir, "or train into another folder with --out DIR"))
        except DlError as e:
            refused = e
    if runtime.any_across_ranks(refused is not None):
        raise refused or DlError(f"{run_dir} is being written by another process (rank 0's message names it).")


def _prepare_run_dir(
    run_dir: Path, resume: bool, resume_from: Path | None, overwrite: bool, is_main: bool
) -> Path | None:
    """Never overwrite a run silently: resume, resume_from or overwrite must say what to do."""
    if sum([resume, resume_from is not None, overwrite]) > 1:
        raise DlError("Give only one of --resume, --resume-from and --overwrite.")
    if resume:
        last = run_dir / "checkpoints" / "last.pt"
        if not last.is_file():
            if run_dir.is_dir() and runlock.entries(run_dir):
                raise DlError(
                    f"Nothing to resume: {last} does not exist (the run stopped before its first checkpoint). "
                    "Start it again with --overwrite instead of --resume."
                )
            raise DlError(f"Nothing to resume: {last} does not exist. Train without --resume to start the run.")
        return last
    if resume_from is not None:
        if not resume_from.is_file():
            raise DlError(f"--resume-from {resume_from}: no such checkpoint file.")
        return resume_from
    marks = [run_dir / name for name in ("config.yaml", "checkpoints", "metrics.jsonl", "summary.json")]
    if any(m.exists() for m in marks):
        if not overwrite:
            raise DlError(
                f"{run_dir} already holds a run. Add --resume to continue it, --overwrite to replace it, "
                "or --out DIR to train into another folder."
            )
        if is_main:
            # Everything but the lock this process holds: with it gone, another writer could lock a new one.
            for entry in runlock.entries(run_dir):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    elif run_dir.exists() and runlock.entries(run_dir) and overwrite:
        raise DlError(f"{run_dir} is not a dl run folder but is not empty; not deleting it. Choose another --out.")
    return None


# --------------------------------------------------------------------------- a trained run


@dataclass
class Run:
    """A run folder loaded for use: its config, its summary and its best checkpoint's model.

    Made by load_run(). The inference methods are those of the run's task and give what the
    matching command prints with --json: predict (classify), generate (lm), translate
    (translate), tag (tag), analogy, similar, similarity and evaluate_word_pairs (word2vec).
    """

    path: Path
    task: str
    config: RunConfig = field(repr=False)
    model: nn.Module | None = field(repr=False)  # eval mode, on `device`; None for style runs (their output is images/)
    device: torch.device
    summary: dict[str, Any] | None = field(repr=False)  # summary.json; None while the run is unfinished
    metrics: dict[str, dict[str, float]] | None  # summary["metrics"]: {"val": {...}, "test": {...}}
    class_names: list[str] | None = None  # classify (and seqclass) runs: the output classes in order
    # What inference needs besides the model: the vocabulary (lm, tag), tokenizer (translate), vectors (word2vec).
    assets: dict[str, Any] = field(default_factory=dict, repr=False)
    weights: str = "raw"  # the weights loaded: "raw", or "ema" (train.ema's average)

    def predict(self, images: str | Path | Sequence[str | Path], top: int = 5) -> list[dict[str, Any]]:
        """Top classes of each image, as `dl predict IMAGE... --run RUN --json`:
        [{"image": PATH, "top": [{"label": L, "prob": P}, ...]}, ...]."""
        self._expect("classify", "predict")
        paths = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
        return classify.predict_as_evaluated(self.model, self.class_names, self.config.data, paths, top)

    def generate(
        self, prompt: str = "", length: int = 200, temperature: float = 1.0, top_k: int = 0, seed: int = 0
    ) -> str:
        """Sampled text that starts with `prompt`, as `dl generate --run RUN` (lm runs)."""
        self._expect("lm", "generate")
        return lm.sample(self.model, self.assets["vocab"], prompt, length, temperature, top_k, seed)

    def translate(
        self, sentences: str | Sequence[str], beam: int | None = None
    ) -> dict[str, str] | list[dict[str, str]]:
        """{"source": S, "translation": T} for a sentence, a list of those for a list, as `dl translate`
        (beam: the beam width, default the recipe's decode.beam)."""
        self._expect("translate", "translate")
        one = isinstance(sentences, str)
        results = translate.translate_sentences(
            self.model, self.assets["tokenizer"], self.config.decode, [sentences] if one else list(sentences), beam
        )
        return results[0] if one else results

    def tag(self, sentence: str) -> list[dict[str, str]]:
        """[{"token": T, "tag": G}, ...] for a sentence, as `dl tag SENTENCE --run RUN`."""
        self._expect("tag", "tag")
        return tagging.tag_sentence(self.model, self.assets["vocab"], self.config, sentence)

    def analogy(self, a: str, b: str, c: str, top: int = 5, method: str = "add") -> list[tuple[str, float]]:
        """(word, score) nearest to a - b + c, best first, as `dl analogy A B C --run RUN` (word2vec runs)."""
        self._expect("word2vec", "analogy")
        return vectors.analogy(self._word_vectors(), a, b, c, top, method)

    def similar(self, word: str, top: int = 10) -> list[tuple[str, float]]:
        """(word, cosine) nearest to `word`, best first, as `dl similar WORD --run RUN` (word2vec runs)."""
        self._expect("word2vec", "similar")
        return vectors.similar(self._word_vectors(), word, top)

    def similarity(self, a: str, b: str) -> float:
        """The cosine of two words' vectors, as `dl similarity A B --run RUN` (word2vec runs)."""
        self._expect("word2vec", "similarity")
        return wordsim.cosine(self._word_vectors(), a, b)

    def evaluate_word_pairs(
        self, pairs: str | Path, restrict: int = wordsim.RESTRICT, compose_unknown: bool = False
    ) -> dict[str, Any]:
        """Spearman's rho of the cosines against a pairs file's human scores, as
        `dl similarity --eval PAIRS --run RUN [--compose-unknown] --json`:
        {"spearman", "pearson", "pairs", "skipped", "oov_ratio"}."""
        self._expect("word2vec", "evaluate_word_pairs")
        return wordsim.evaluate_word_pairs(self._word_vectors(), Path(pairs), restrict, compose_unknown)

    def _word_vectors(self) -> vectors.WordVectors:
        # Read on first use, as the commands read them: the exported vectors.bin (written when
        # training ends) is what they query, and it can be large. A subword run's (model.subwords)
        # are SubwordVectors: words outside the vocabulary get a vector from their n-grams.
        if "vectors" not in self.assets:
            self.assets["vectors"] = vectors.vectors_for_run(self.path)
        return self.assets["vectors"]

    def _expect(self, task: str, method: str) -> None:
        if self.task != task:
            raise DlError(f"Run.{method}() is for runs of task '{task}'; {self.path} is a run of task '{self.task}'.")


def load_run(path: str | Path, device: str | torch.device | None = None, weights: str | None = None) -> Run:
    """Load a run folder: its config, summary and best checkpoint's model (eval mode, on `device`).

    Args:
        path: a run folder that `dl train` wrote.
        device: auto (default), cpu, cuda, cuda:N or mps.
        weights: "raw" or "ema" (train.ema's average); default: the one the best validation chose.

    Raises:
        DlError: the folder holds no checkpoint, or an unreadable one; weights it does not hold.
    """
    path = Path(path)
    loaded = loading.load_run(path, device, weights=weights)
    assets = dict(loaded.assets)
    class_names = assets.pop("classes", None)  # a field of its own on Run
    summary = _read_summary(path)
    metrics = summary.get("metrics") if summary else None
    return Run(
        path,
        loaded.task.NAME,
        loaded.config,
        loaded.model,
        loaded.device,
        summary,
        metrics,
        class_names,
        assets,
        loaded.weights,
    )


def _read_summary(path: Path) -> dict[str, Any] | None:
    file = path / "summary.json"
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
