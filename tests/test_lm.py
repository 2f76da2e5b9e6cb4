"""Language models: the batchify layout, the carried state, training, metrics, generation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dlcli import checkpoint, runner
from dlcli.config import apply_overrides, validate
from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.runtime import Runtime
from dlcli.tasks import lm

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

CPU = Runtime(torch.device("cpu"), "fp32", False)

# About 13k characters of the built-in corpus: 8 streams x 32 tokens -> 45 batches per epoch.
TINY = {
    "task": "lm",
    "name": "tiny",
    "seed": 0,
    "model": {"arch": "lstm", "embedding_dim": 32, "hidden_size": 64, "num_layers": 1, "dropout": 0.0},
    "data": {"builtin_sentences": 300, "batch_size": 8, "bptt": 32, "eval_batch_size": 4},
    "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01},
    "schedule": {"name": "constant", "warmup_steps": 0},
    "train": {"epochs": 1, "log_every": 5},
}


def config(*sets: str) -> lm.Config:
    return validate(apply_overrides(json.loads(json.dumps(TINY)), list(sets)), lm.Config)


def train(cfg: lm.Config, run_dir: Path, resume_from: Path | None = None) -> dict:
    return runner.train(lm, cfg, run_dir, CPU, Logger(quiet=True), resume_from)


def train_losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.fixture(scope="module")
def char_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("lm") / "char"
    train(config("train.epochs=2", "model.dropout=0.1", "model.num_layers=2"), run_dir)
    return run_dir


# --------------------------------------------------------------------------- batches


def test_batchify_cuts_the_stream_into_rows_and_windows_shift_by_one():
    ids = torch.arange(26)
    assert lm.batchify(ids, 4).tolist() == [list(range(r * 6, r * 6 + 6)) for r in range(4)]  # 2 tokens dropped
    data = lm.StreamBatches(ids, streams=4, bptt=2, device=torch.device("cpu"))
    assert len(data) == 2  # (6 - 1) // 2 full windows per row
    chunks = list(data.batches(0))
    assert chunks[0].x.tolist() == [[0, 1], [6, 7], [12, 13], [18, 19]]
    assert chunks[1].x.tolist() == [[2, 3], [8, 9], [14, 15], [20, 21]]  # row b continues row b
    for chunk in chunks:
        assert torch.equal(chunk.y, chunk.x + 1) and chunk.x.is_contiguous()
    assert [c.reset for c in chunks] == [True, False]
    assert [c.reset for c in data.batches(0, start=1)] == [True]  # a mid-epoch resume starts from zeros


def test_evaluation_keeps_the_short_last_window_and_ranks_take_their_own_rows():
    ids = torch.arange(26)
    val = lm.StreamBatches(ids, streams=4, bptt=2, device=torch.device("cpu"), drop_last=False)
    chunks = list(val.batches(0))
    assert (
        len(val) == 3
        and chunks[-1].x.tolist() == [[4], [10], [16], [22]]
        and chunks[-1].y.tolist() == [[5], [11], [17], [23]]
    )
    # two processes with 2 streams each: the stream is cut into 4 rows, rank 1 reads rows 2 and 3
    rank1 = lm.StreamBatches(ids, streams=2, bptt=2, device=torch.device("cpu"), rank=1, world_size=2)
    assert next(rank1.batches(0)).x.tolist() == [[12, 13], [18, 19]]


def test_too_short_a_text_is_a_clear_error():
    with pytest.raises(DlError, match="too few"):
        lm.StreamBatches(torch.arange(20), streams=8, bptt=4, device=torch.device("cpu"))


def test_word_vocabulary_has_eol_and_unk():
    assert lm.split_words("a b\nc  d\n") == ["a", "b", lm.EOL, "c", "d", lm.EOL]
    vocab = lm.Vocab.build("word", "", ["the", "cat", lm.EOL, "the"])
    assert vocab.tokens == [lm.EOL, lm.UNK, "cat", "the"]
    assert vocab.encode(["the", "dog", lm.EOL]).tolist() == [3, 1, 0]
    assert vocab.detokenize([3, 2, 0, 3], after="Then") == " the cat\nthe"


# --------------------------------------------------------------------------- the carried state


def test_the_state_carries_across_batches_exactly_as_one_long_sequence():
    job = lm.build(config(), CPU)
    model = job.model.eval()
    first, second = list(job.train_data.batches(0))[:2]
    with torch.no_grad():
        carried = job.eval_step(model, first)["loss"] + job.eval_step(model, second._replace(reset=False))["loss"]
        logits, _ = model(torch.cat([first.x, second.x], 1))  # both windows in one pass
        target = torch.cat([first.y, second.y], 1)
        full = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum")
        reset_logits, _ = model(second.x)  # the second window from a zero state
    torch.testing.assert_close(carried, full, rtol=1e-5, atol=1e-3)
    second_half = logits[:, first.x.shape[1] :]
    assert (second_half - reset_logits).abs().max() > 1e-3  # a reset state forgets the first window


def test_the_training_state_is_detached_and_carried():
    job = lm.build(config(), CPU)
    first, second = list(job.train_data.batches(0))[:2]
    job.train_step(job.model, first)
    carried = job.train_step(job.model, second)["loss"]
    carried.backward()  # would fail ("backward through the graph a second time") without the detach
    fresh = job.train_step(job.model, second._replace(reset=True))["loss"]
    assert carried.item() != fresh.item()  # bitwise equal only if the carried state were ignored


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("arch, impl", [("lstm", "torch"), ("gru", "torch"), ("rnn", "torch"), ("gru", "scratch")])
def test_loss_falls_on_the_builtin_corpus(tmp_path, arch, impl):
    cfg = config(f"model.arch={arch}", f"model.impl={impl}", "train.max_steps=40", "data.bptt=16")
    summary = train(cfg, tmp_path / "run")
    losses = train_losses(tmp_path / "run")
    assert summary["steps"] == 40
    assert losses[-1] < losses[0] - 0.8, losses  # from ~ln(vocab) = 3.7 nats


def test_val_metrics_are_loss_perplexity_and_bits_per_character(char_run):
    summary = json.loads((char_run / "summary.json").read_text())
    val = summary["metrics"]["val"]
    assert set(val) == {"loss", "ppl", "bpc"}
    assert val["ppl"] == pytest.approx(math.exp(val["loss"]))
    assert val["bpc"] == pytest.approx(val["loss"] / math.log(2))
    assert val["loss"] < 2.5  # well under the uniform ln(vocab)


def test_the_run_folder_holds_the_vocabulary_and_a_sample(char_run):
    vocab = json.loads((char_run / "vocab.json").read_text())
    assert vocab["level"] == "char" and "\n" in vocab["tokens"] and vocab["tokens"] == sorted(vocab["tokens"])
    sample = (char_run / "samples.txt").read_text()
    assert len(sample) == lm.SAMPLE_LENGTH["char"] + 1 and set(sample) <= set(vocab["tokens"])
    ckpt = checkpoint.load(char_run / "checkpoints" / "best.pt")  # weights_only=True
    assert ckpt.extra["vocab"] == vocab


def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(tmp_path):
    cfg = config("train.epochs=2", "model.dropout=0.2", "model.num_layers=2", "data.builtin_sentences=120")
    steps = len(lm.build(cfg, CPU).train_data)
    train(cfg, tmp_path / "straight")
    train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": steps})}), tmp_path / "resumed")
    resumed_ckpt = tmp_path / "resumed" / "checkpoints" / "last.pt"
    assert checkpoint.load(resumed_ckpt).position == checkpoint.Position(epoch=1, batch=0, step=steps)
    train(cfg, tmp_path / "resumed", resume_from=resumed_ckpt)
    a = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a.position == b.position == checkpoint.Position(epoch=2, batch=0, step=2 * steps)
    for key, tensor in a.model.items():
        assert torch.equal(tensor, b.model[key]), key


def test_tied_weights_need_equal_sizes():
    with pytest.raises(DlError, match="embedding_dim"):
        lm.build(config("model.tie_weights=true"), CPU)
    model = lm.build(config("model.tie_weights=true", "model.embedding_dim=64"), CPU).model
    assert model.head.weight is model.embed.weight


# --------------------------------------------------------------------------- generation


def test_generate_continues_the_prompt_by_length_characters(char_run):
    text = lm.generate(char_run, prompt="The ", length=50, temperature=0.8, top_k=10, seed=1, device="cpu")
    assert text.startswith("The ") and len(text) == 4 + 50
    assert lm.generate(char_run, "The ", 50, 0.8, 10, seed=1, device="cpu") == text  # deterministic for a seed
    others = {lm.generate(char_run, "The ", 50, 1.0, 0, seed=s, device="cpu") for s in range(2, 5)}
    assert len(others) > 1  # and the seed matters
    assert len(lm.generate(char_run, "", 30, seed=0, device="cpu")) == 30  # an empty prompt starts a line


def test_top_k_1_is_greedy(char_run):
    a = lm.generate(char_run, "You ", 40, temperature=1.0, top_k=1, seed=0, device="cpu")
    b = lm.generate(char_run, "You ", 40, temperature=2.0, top_k=1, seed=123, device="cpu")
    assert a == b


def test_an_unknown_prompt_character_is_a_dl_error_naming_it(char_run):
    with pytest.raises(DlError, match="'§'"):
        lm.generate(char_run, "The §", 10, device="cpu")
    with pytest.raises(DlError, match="temperature"):
        lm.generate(char_run, "The", 10, temperature=0.0, device="cpu")


def test_word_level_trains_and_generates(tmp_path):
    run_dir = tmp_path / "words"
    summary = train(config("data.level=word", "data.bptt=8", "data.builtin_sentences=400", "train.epochs=2"), run_dir)
    val = summary["metrics"]["val"]
    assert set(val) == {"loss", "ppl"} and val["ppl"] == pytest.approx(math.exp(val["loss"]))
    vocab = json.loads((run_dir / "vocab.json").read_text())
    assert vocab["level"] == "word" and vocab["tokens"][:2] == [lm.EOL, lm.UNK]
    text = lm.generate(run_dir, "the zzyzzx", 12, top_k=5, seed=0, device="cpu")  # an unknown word reads as <unk>
    assert text.startswith("the zzyzzx") and len(text[len("the zzyzzx") :].split()) == 12 - text.count("\n")


# --------------------------------------------------------------------------- recipes through the CLI


def test_char_lstm_recipe_trains_a_few_steps(cli, repo_configs, tmp_path):
    result = cli(
        "train",
        repo_configs / "char_lstm.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        "--json",
        "--set",
        "train.max_steps=3",
        "--set",
        "data.builtin_sentences=400",
        "--set",
        "schedule.warmup_steps=1",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and set(summary["metrics"]["val"]) == {"loss", "ppl", "bpc"}


def test_shakespeare_recipe_names_the_missing_file(cli, repo_configs):
    result = cli("train", repo_configs / "char_lstm_shakespeare.yaml", "-q")
    assert result.exit_code == 2 and "input.txt" in result.output


# --------------------------------------------------------------------------- the transformer LM

TRANSFORMER = (
    "model.arch=transformer",
    "model.embedding_dim=32",
    "model.heads=4",
    "model.num_layers=2",
    "data.bptt=16",
)


def test_transformer_lm_loss_falls_and_generates(tmp_path):
    run_dir = tmp_path / "tlm"
    summary = train(config(*TRANSFORMER, "train.max_steps=60", "optim.lr=3e-3"), run_dir)
    losses = train_losses(run_dir)
    assert summary["steps"] == 60 and losses[-1] < losses[0] - 0.8, losses
    text = lm.generate(run_dir, prompt="The " * 10, length=30, temperature=0.8, top_k=10, seed=0, device="cpu")
    assert text.startswith("The The") and len(text) == 40 + 30  # a prompt longer than the context is cropped


def test_transformer_windows_move_every_epoch_and_resume_mid_epoch():
    job = lm.build(config(*TRANSFORMER), CPU)
    data = job.train_data
    first = [c.x for c in data.batches(0)]
    assert all(c.reset for c in data.batches(0))  # no state carries between windows
    assert not torch.equal(first[0], next(iter(data.batches(1))).x)
    tail = [c.x for c in data.batches(0, start=3)]
    assert all(torch.equal(a, b) for a, b in zip(first[3:], tail, strict=True))
    chunk = first[0]
    assert chunk.shape == (8, 16)
    x, y = next(iter(data.batches(0)))[:2]
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token


def test_transformer_eval_windows_are_independent():
    job = lm.build(config(*TRANSFORMER), CPU)
    assert all(c.reset for c in job.eval_data["val"].batches(0))


def test_transformer_resume_is_exact(tmp_path):
    cfg = config(*TRANSFORMER, "train.epochs=2", "model.dropout=0.1", "data.builtin_sentences=150")
    steps = len(lm.build(cfg, CPU).train_data)
    train(cfg, tmp_path / "straight")
    half = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": steps + 2})})
    train(half, tmp_path / "resumed")  # stops in the middle of epoch 2
    train(cfg, tmp_path / "resumed", resume_from=tmp_path / "resumed" / "checkpoints" / "last.pt")
    a = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt").model
    b = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_transformer_heads_must_divide_the_width():
    with pytest.raises(DlError, match="divide"):
        lm.build(config(*TRANSFORMER, "model.heads=5"), CPU)


def test_transformer_lm_recipe_trains_a_few_steps(cli, repo_configs, tmp_path):
    result = cli(
        "train",
        repo_configs / "transformer_lm.yaml",
        "--out",
        tmp_path / "run",
        "-q",
        "--json",
        "--set",
        "train.max_steps=3",
        "--set",
        "data.builtin_sentences=400",
        "--set",
        "schedule.warmup_steps=1",
    )
    assert result.exit_code == 0, result.output
    result = cli("generate", "--run", tmp_path / "run", "--prompt", "The ", "--length", "20", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["text"].startswith("The ")


def test_max_minutes_stops_the_run_and_keeps_a_checkpoint(tmp_path):
    summary = train(config("train.max_minutes=1e-6", "train.epochs=3"), tmp_path / "timed")
    assert summary["steps"] == 1  # the budget is checked after every step (no host sync needed)
    assert checkpoint.load(tmp_path / "timed" / "checkpoints" / "last.pt").step == 1
