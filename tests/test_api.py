"""The Python API (dlcli.api): `train` and `load_run` take the code paths of `dl train` and of the
inference commands, so each must give what its command gives. Tiny runs: 2-3 steps on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner, Result

import dlcli
from dlcli.api import load_config
from dlcli.data.synthetic import make_shapes
from dlcli.errors import DlError

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

# A ResNet-18 on 16 px shapes: 3 batches of 4 per epoch, stopped after 2 optimizer steps.
TINY_CLASSIFY = {
    "data.image_size": 16,
    "data.batch_size": 4,
    "data.train_size": 12,
    "data.val_size": 10,
    "data.test_size": 10,
    "train.max_steps": 2,
    "train.log_every": 1,
}


def _sets(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


def _json(result: Result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _write_png(path: Path, size: int, index: int) -> Path:
    images, _ = make_shapes(index + 1, size, seed=3, split="test")
    Image.fromarray(images[index].permute(1, 2, 0).numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny classify run trained by dlcli.train (overrides as a dict): (its folder, the summary it returned)."""
    run = tmp_path_factory.mktemp("api") / "classify"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DL_OFFLINE", "1")
        summary = dlcli.train("resnet", TINY_CLASSIFY, out=run)
    return run, summary


# --------------------------------------------------------------------------- the package


def test_import_dlcli_is_cheap_and_the_api_names_load_on_use() -> None:
    code = (
        "import sys, dlcli; heavy = [m for m in ('torch', 'typer', 'dlcli.api') if m in sys.modules]; "
        "from dlcli import load_run, train, Run; print(heavy, load_run.__module__, train.__module__, Run.__module__)"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert answer == ["[]", "dlcli.api", "dlcli.api", "dlcli.api"]
    with pytest.raises(AttributeError, match="no_such_name"):
        dlcli.no_such_name  # noqa: B018


# --------------------------------------------------------------------------- train


def test_overrides_as_a_dict_or_as_set_strings_give_the_same_config() -> None:
    _, from_dict = load_config("resnet", {"optim.lr": 0.05, "data.image_size": 16, "train.max_steps": 2})
    _, from_list = load_config("resnet", ["optim.lr=0.05", "data.image_size=16", "train.max_steps=2"])
    assert from_dict == from_list
    assert (from_dict.optim.lr, from_dict.data.image_size, from_dict.train.max_steps) == (0.05, 16, 2)


def test_train_writes_the_run_folder_dl_train_writes(cli: Callable[..., Result], tmp_path: Path, api_run) -> None:
    """Same seed, same recipe: the same files, config.yaml, weights, losses and metrics."""
    run, summary = api_run
    by_cli = tmp_path / "cli"
    cli_summary = _json(cli("train", "resnet", "--out", by_cli, "--json", "-q", *_sets(TINY_CLASSIFY)))

    assert _files(run) == _files(by_cli)
    assert "checkpoints/last.pt" in _files(run) and "summary.json" in _files(run)
    assert (run / "config.yaml").read_text() == (by_cli / "config.yaml").read_text()
    for name in ("last.pt", "best.pt"):
        ours = torch.load(run / "checkpoints" / name, weights_only=True)
        theirs = torch.load(by_cli / "checkpoints" / name, weights_only=True)
        assert ours["position"] == theirs["position"]
        assert ours["model"].keys() == theirs["model"].keys()
        for key, tensor in theirs["model"].items():
            assert torch.equal(ours["model"][key], tensor), key

    def train_losses(folder: Path) -> list[float]:
        records = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
        return [r["loss"] for r in records if r["split"] == "train"]

    assert train_losses(run) == train_losses(by_cli) and len(train_losses(run)) == 2
    assert summary == json.loads((run / "summary.json").read_text())  # the returned summary is summary.json
    assert summary["steps"] == cli_summary["steps"] == 2
    assert summary["metrics"] == cli_summary["metrics"]


def test_train_never_overwrites_a_run_silently(api_run) -> None:
    run, _ = api_run
    before = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    with pytest.raises(DlError, match="already holds a run"):
        dlcli.train("resnet", TINY_CLASSIFY, out=run)
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == before


# --------------------------------------------------------------------------- load_run


def test_load_run_predict_equals_dl_predict_json(cli: Callable[..., Result], tmp_path: Path, api_run) -> None:
    run, summary = api_run
    images = [_write_png(tmp_path / f"shape{i}.png", 24, i) for i in range(2)]  # not 16 px: the resize matters
    answer = _json(cli("predict", *images, "--run", run, "--top", 3, "--json"))

    loaded = dlcli.load_run(run)
    assert loaded.predict(images, top=3) == answer  # the same batch through the same kernels: equal
    # One image is a batch of 1: on some CPUs (AVX2 without AVX-512) oneDNN picks other convolution
    # kernels for it, which round differently (0.10390087962 vs 0.10390087217): equal to float32's precision.
    _assert_same_predictions(loaded.predict(str(images[1]), top=3), answer[1:])  # one path, as a string

    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert (loaded.path, loaded.task, loaded.config.model.arch) == (run, "classify", "resnet18")
    assert loaded.class_names == ckpt["extra"]["classes"]
    assert not loaded.model.training
    assert next(loaded.model.parameters()).device == loaded.device
    assert loaded.summary == summary and loaded.metrics == summary["metrics"]


def _assert_same_predictions(got: list[dict], expected: list[dict]) -> None:
    """Same images and labels in the same order, probabilities equal to float32's precision."""
    assert [(r["image"], [t["label"] for t in r["top"]]) for r in got] == [
        (r["image"], [t["label"] for t in r["top"]]) for r in expected
    ]
    for row, expected_row in zip(got, expected, strict=True):
        assert [t["prob"] for t in row["top"]] == pytest.approx(
            [t["prob"] for t in expected_row["top"]], rel=1e-5, abs=1e-7
        )


def test_a_method_of_another_task_is_a_dl_error(api_run) -> None:
    loaded = dlcli.load_run(api_run[0])
    with pytest.raises(DlError, match="task 'lm'.*task 'classify'"):
        loaded.generate("the")


def test_load_run_of_a_folder_without_checkpoints_is_a_dl_error(tmp_path: Path) -> None:
    with pytest.raises(DlError, match="holds no checkpoint"):
        dlcli.load_run(tmp_path)


def test_load_run_generate_equals_dl_generate(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "lm"
    summary = dlcli.train(
        "char_lstm", ["train.max_steps=2", "data.builtin_sentences=400", "schedule.warmup_steps=1"], out=run
    )
    assert summary["steps"] == 2
    answer = _json(cli("generate", "--run", run, "--prompt", "the ", "--length", 40, "--seed", 3, "--json"))
    loaded = dlcli.load_run(run)
    assert loaded.generate("the ", length=40, seed=3) == answer["text"]
    assert loaded.class_names is None and not loaded.model.training


def test_load_run_tag_equals_dl_tag(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "pos"
    dlcli.train(
        "pos_lstm",
        {
            "data.train_sentences": 100,
            "data.val_sentences": 20,
            "data.test_sentences": 20,
            "train.max_steps": 3,
            "model.embedding_dim": 16,
            "model.char_hidden": 16,
            "model.hidden_size": 24,
        },
        out=run,
    )
    sentence = "The old man can watch the boats ."
    answer = _json(cli("tag", sentence, "--run", run, "--json"))
    assert dlcli.load_run(run).tag(sentence) == answer


def test_load_run_translate_equals_dl_translate(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "numbers"
    dlcli.train(
        "translation",
        {
            "data.dataset": "numbers",
            "data.numbers_train": 200,
            "data.numbers_val": 10,
            "data.numbers_test": 10,
            "data.vocab_size": 100,
            "model.dim": 32,
            "model.heads": 2,
            "model.encoder_layers": 1,
            "model.decoder_layers": 1,
            "model.ff_dim": 64,
            "train.max_steps": 3,
        },
        out=run,
    )
    answer = _json(cli("translate", "seven", "--run", run, "--beam", 2, "--json"))
    loaded = dlcli.load_run(run)
    assert loaded.translate("seven", beam=2) == answer
    # A list is translated in batches, as `dl translate -` translates stdin's lines.
    from dlcli.cli import app

    lines = _json(
        CliRunner().invoke(app, ["translate", "-", "--run", str(run), "--beam", "2", "--json"], input="seven\neight\n")
    )
    assert loaded.translate(["seven", "eight"], beam=2) == lines


def test_load_run_similar_analogy_and_similarity_equal_the_commands(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "vectors"
    dlcli.train(
        "word2vec",
        {"data.planted_sentences": 3000, "model.vector_size": 20, "model.impl": "batched", "train.epochs": 1},
        out=run,
    )
    loaded = dlcli.load_run(run)
    similar = _json(cli("similar", "king", "--run", run, "--top", 3, "--json"))
    assert [{"word": w, "score": s} for w, s in loaded.similar("king", top=3)] == similar
    analogy = _json(cli("analogy", "king", "man", "woman", "--run", run, "--top", 3, "--json"))
    assert [{"word": w, "score": s} for w, s in loaded.analogy("king", "man", "woman", top=3)] == analogy
    cosine = _json(cli("similarity", "king", "queen", "--run", run, "--json"))["cosine"]
    assert loaded.similarity("king", "queen") == cosine
    (tmp_path / "pairs.txt").write_text("king\tqueen\t9\nking\tman\t5\nman\twoman\t7\nking\tzebra\t1\n")
    scored = _json(cli("similarity", "--eval", tmp_path / "pairs.txt", "--run", run, "--json"))
    assert loaded.evaluate_word_pairs(tmp_path / "pairs.txt") == scored and scored["skipped"] == 1
    assert type(loaded.model).__name__ == "SkipGram"
