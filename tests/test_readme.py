"""The README's commands run as written: every `dl` line of a fenced block marked
`<!-- runnable ... -->` runs, in order, in a fresh folder, with tiny overrides that shrink the
built-in data and stop training after two steps. The pictures it shows exist, and so do the sample
images its commands name (examples/, drawn by scripts/make_examples.py)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Per recipe: what shrinks its built-in data, so two steps and the evaluations take seconds.
TINY = {
    "resnet": ["data.train_size=64", "data.val_size=16", "data.test_size=16", "data.batch_size=16"],
    "word2vec": [],
    "pos_lstm": ["data.train_sentences=200", "data.val_sentences=20", "data.test_sentences=20"],
    "brackets_gru": ["data.train_size=200", "data.val_size=20", "data.test_size=20"],
    "char_lstm": ["data.builtin_sentences=300"],
    "transformer_lm": ["data.builtin_sentences=300"],
    "translation": ["data.numbers_train=300", "data.numbers_val=10", "data.numbers_test=10", "data.vocab_size=100"],
}


def runnable_commands(text: str) -> list[str]:
    """The `dl ...` lines of the fenced blocks that follow a `<!-- runnable` comment."""
    commands = []
    for block in re.findall(r"<!-- runnable[^>]*-->\s*```[^\n]*\n(.*?)```", text, flags=re.S):
        commands += [line for line in block.splitlines() if line.startswith("dl ")]
    return commands


def with_tiny_overrides(args: list[str]) -> list[str]:
    if args[0] != "train":
        return args
    recipe = Path(args[1]).stem
    extra = [a for key in ["train.max_steps=2", *TINY[recipe]] for a in ("--set", key)]
    return [*args, *extra, "-q"]


def test_readme_commands_run_as_written(cli, tmp_path):
    commands = runnable_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 25, commands
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "examples").symlink_to(REPO / "examples")  # the pictures `dl predict` is shown with
    for line in commands:
        args = with_tiny_overrides(shlex.split(line, comments=True)[1:])
        result = cli(*args)
        assert result.exit_code == 0, f"{line}\n{result.output}"
    for picture in ("confusion.png", "royalty.png", "attention.png", "curves.png"):
        assert (tmp_path / picture).stat().st_size > 1000, picture


def test_readme_shows_its_pictures():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    assert len(pictures) >= 4
    for picture in pictures:
        assert (REPO / picture).is_file(), picture


def test_the_sample_images_the_readme_names_are_in_the_repository():
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"examples/[\w.-]+\.(?:png|jpg)", text))
    assert {"examples/circle.png", "examples/triangle.jpg", "examples/scene.jpg"} <= named
    for path in named:
        assert (REPO / path).is_file(), path


def test_make_examples_draws_the_committed_images(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", REPO / "scripts" / "make_examples.py")
    make_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_examples)
    written = make_examples.write_examples(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (REPO / "examples").iterdir())
    for path in written:
        ours = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        committed = np.asarray(Image.open(REPO / "examples" / path.name).convert("RGB"), dtype=np.int16)
        assert ours.shape == committed.shape, path
        if path.suffix == ".png":
            assert np.array_equal(ours, committed), path
        else:  # another libjpeg build may encode and decode a little differently
            assert np.abs(ours - committed).mean() < 1.0, path
        assert path.stat().st_size < 20_000, path  # a few KB each


@pytest.mark.parametrize("line", ["dl train configs/resnet.yaml  # note", 'dl tag "I watch ." --run r'])
def test_comments_are_not_arguments(line):
    args = shlex.split(line, comments=True)
    assert "#" not in " ".join(args) and args[0] == "dl"
