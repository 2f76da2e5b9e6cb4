"""Continued training: a finished word2vec run's vectors start a new run on a new corpus, its vocabulary
grown as gensim's build_vocab(update=True) grows it (data.update_vocab).

    dl train word2vec --resume-from runs/X/checkpoints/last.pt --set data.path=new/ --set data.update_vocab=true --out runs/Y
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcli import checkpoint
from dlcli.api import load_config
from dlcli.data.planted import planted_sentences
from dlcli.runtime import create_runtime
from dlcli.tasks import word2vec

from conftest import assert_exit_2, sets

NEW_WORDS = ["zebra", "giraffe", "okapi"]  # 6 times each in the new corpus; "quokka" twice (under min_count 5)


@pytest.fixture
def corpora(tmp_path: Path) -> tuple[Path, Path]:
    old = tmp_path / "old.txt"
    old.write_text("\n".join(planted_sentences(0, 1500)) + "\n", encoding="utf-8")
    new = tmp_path / "new.txt"
    extra = [f"the {word} ate the king" for word in NEW_WORDS for _ in range(6)] + ["a quokka", "a quokka"]
    new.write_text("\n".join(planted_sentences(1, 1000) + extra) + "\n", encoding="utf-8")
    return old, new


def _settings(path: Path, tmp_path: Path, *more: str) -> list[str]:
    base = ("data.dataset=text", f"data.path={path}", f"data.root={tmp_path / 'data'}", "model.vector_size=16")
    return [*base, "train.epochs=1", "train.workers=1", "model.impl=batched", *more]


def _train(cli, tmp_path: Path, out: Path, path: Path, *args: str, more=()):
    return cli("train", "word2vec", "--out", out, "--quiet", *args, *sets(*_settings(path, tmp_path, *more)))


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_the_old_words_start_from_the_old_vectors_and_new_words_are_added(cli, tmp_path, corpora):
    old, new = corpora
    assert _train(cli, tmp_path, tmp_path / "X", old).exit_code == 0
    start = checkpoint.load(tmp_path / "X" / "checkpoints" / "last.pt")
    old_words, old_counts = start.extra["vocab_words"], start.extra["vocab_counts"]
    _, cfg = load_config("word2vec", _settings(new, tmp_path, "data.update_vocab=true"))
    job = word2vec.build(cfg, create_runtime(cfg.train, "cpu"), start=start)

    n = len(old_words)
    assert torch.equal(job.model.in_vectors.data[:n], start.model["in_vectors"])
    assert torch.equal(job.model.out_vectors.data[:n], start.model["out_vectors"])
    words = job.extra["vocab_words"]
    assert words[:n] == old_words and set(NEW_WORDS) <= set(words[n:]) and "quokka" not in words
    fresh = job.model.in_vectors.data[n:]
    assert fresh.abs().max() <= 1 / 16 and fresh.abs().sum() > 0  # input_rows' init, not zeros
    assert torch.count_nonzero(job.model.out_vectors.data[n:]) == 0
    # counts: old + new occurrences (the noise distribution and the Huffman tree read them)
    new_counts = dict(zip(*np.unique(new.read_text().split(), return_counts=True), strict=True))
    counts = dict(zip(words, job.extra["vocab_counts"], strict=True))
    assert counts["zebra"] == 6 and counts["king"] == old_counts[old_words.index("king")] + new_counts["king"]


def test_continued_run_trains_into_a_new_folder_and_leaves_the_old_one_alone(cli, tmp_path, corpora):
    old, new = corpora
    assert _train(cli, tmp_path, tmp_path / "X", old).exit_code == 0
    before = _fingerprint(tmp_path / "X")
    resume_from = ("--resume-from", tmp_path / "X" / "checkpoints" / "last.pt")
    result = _train(cli, tmp_path, tmp_path / "Y", new, *resume_from, more=["data.update_vocab=true"])
    assert result.exit_code == 0, result.output
    assert _fingerprint(tmp_path / "X") == before
    old_vocab = json.loads((tmp_path / "X" / "vocab.json").read_text())
    vocab = json.loads((tmp_path / "Y" / "vocab.json").read_text())
    assert vocab["words"][: len(old_vocab["words"])] == old_vocab["words"] and "okapi" in vocab["words"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "Y" / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] >= 1 and json.loads((tmp_path / "Y" / "summary.json").read_text())["steps"] >= 1
    # into the old folder: refused, and nothing there changes
    again = _train(cli, tmp_path, tmp_path / "X", new, *resume_from, more=["data.update_vocab=true"])
    assert_exit_2(again, "already holds a run", "--out DIR")
    assert _fingerprint(tmp_path / "X") == before


def test_a_resumed_continued_run_equals_the_uninterrupted_one(cli, tmp_path, corpora):
    old, new = corpora
    assert _train(cli, tmp_path, tmp_path / "X", old).exit_code == 0
    start = ("--resume-from", tmp_path / "X" / "checkpoints" / "last.pt")
    continued = ["data.update_vocab=true"]
    assert _train(cli, tmp_path, tmp_path / "full", new, *start, more=continued).exit_code == 0
    assert _train(cli, tmp_path, tmp_path / "part", new, *start, more=[*continued, "train.max_steps=1"]).exit_code == 0
    result = _train(cli, tmp_path, tmp_path / "part", new, "--resume", more=continued)
    assert result.exit_code == 0, result.output
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in full:
        assert torch.equal(full[name], resumed[name]), name


def test_update_vocab_needs_a_run_and_its_vector_size(cli, tmp_path, corpora):
    old, new = corpora
    assert_exit_2(_train(cli, tmp_path, tmp_path / "Y", new, more=["data.update_vocab=true"]), "--resume-from")
    assert _train(cli, tmp_path, tmp_path / "X", old).exit_code == 0
    resume_from = ("--resume-from", tmp_path / "X" / "checkpoints" / "last.pt")
    result = _train(
        cli, tmp_path, tmp_path / "Y", new, *resume_from, more=["data.update_vocab=true", "model.vector_size=8"]
    )
    assert_exit_2(result, "model.vector_size=16 as model.vector_size=8")
    assert not (tmp_path / "Y" / "checkpoints").exists()
