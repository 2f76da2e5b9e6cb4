"""Translation: data files, the joint vocabulary, batches, training, BLEU and chrF, `dl translate`, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from dlcli import checkpoint, loading, loop, runner
from dlcli.config import apply_overrides, validate
from dlcli.console import Logger
from dlcli.data import parallel
from dlcli.data.numbers import english, german
from dlcli.errors import DlError
from dlcli.runtime import Runtime
from dlcli.tasks import translate

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

CPU = Runtime(torch.device("cpu"), "fp32", False)

TINY = {
    "task": "translate",
    "name": "tiny-numbers",
    "seed": 0,
    "model": {
        "dim": 32,
        "heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ff_dim": 64,
        "dropout": 0.0,
        "norm_first": True,
    },
    "data": {
        "dataset": "numbers",
        "numbers_train": 400,
        "numbers_val": 20,
        "numbers_test": 20,
        "vocab_size": 120,
        "max_tokens": 512,
    },
    "decode": {"beam": 2},
    "optim": {"name": "adam", "lr": 3e-3, "betas": [0.9, 0.98], "eps": 1e-9},
    "schedule": {"name": "inverse_sqrt", "warmup_steps": 10},
    "train": {"epochs": 3, "log_every": 5},
}


def config(*sets: str, base: dict = TINY) -> translate.Config:
    return validate(apply_overrides(json.loads(json.dumps(base)), list(sets)), translate.Config)


@pytest.fixture(scope="module")
def numbers_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("translate") / "run"
    runner.train(translate, config(), run_dir, CPU, Logger(quiet=True))
    return run_dir


def write_pairs(folder: Path, split: str, sources: list[str], targets: list[str], gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, lines in (("de", sources), ("en", targets)):
        data = "".join(line + "\n" for line in lines).encode()
        if gz:
            (folder / f"{split}.{lang}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / f"{split}.{lang}").write_bytes(data)


def test_number_splits_hold_out_the_numbers_of_training():
    splits = parallel.number_splits(0, 500, 50, 60)
    train = set(splits["train"][0])
    assert len(splits["val"][0]) == 50 and len(splits["test"][0]) == 60
    assert not train & set(splits["val"][0]) and not train & set(splits["test"][0])
    assert not set(splits["val"][0]) & set(splits["test"][0])
    assert (english(321), german(321)) == ("three hundred twenty one", "dreihunderteinundzwanzig")


def test_folder_layout_reads_plain_and_gzip(tmp_path):
    write_pairs(tmp_path, "train", ["ein Hund", "eine Katze"], ["a dog", "a cat"], gz=True)
    write_pairs(tmp_path, "val", ["ein Hund"], ["a dog"])
    assert parallel.read_folder(tmp_path, "train", "de", "en") == (["ein Hund", "eine Katze"], ["a dog", "a cat"])
    assert parallel.read_folder(tmp_path, "val", "de", "en") == (["ein Hund"], ["a dog"])


def test_unequal_line_counts_are_refused(tmp_path):
    (tmp_path / "train.de").write_text("a\nb\nc\n")
    (tmp_path / "train.en").write_text("a\nb\n")
    with pytest.raises(DlError, match="3 lines but .* has 2"):
        parallel.read_folder(tmp_path, "train", "de", "en")


def test_tokenizer_is_deterministic_and_round_trips():
    texts = ["ein Mann fährt Fahrrad .", "a man rides a bike .", "zwei Hunde spielen"] * 20
    a, b = translate.train_tokenizer(texts, 60), translate.train_tokenizer(texts, 60)
    assert a.to_str() == b.to_str()
    ids = translate.encode(a, ["ein Mann fährt Fahrrad ."])[0]
    assert translate.decode_ids(a, ids) == "ein Mann fährt Fahrrad ."
    assert [a.id_to_token(i) for i in range(4)] == translate.SPECIALS


def test_token_batches_respect_the_budget_and_reshuffle_per_epoch():
    sources = [[5] * n for n in range(1, 41)]
    targets = [[6] * (n % 7 + 1) for n in range(1, 41)]
    data = translate.TokenBatches(sources, targets, 64, torch.device("cpu"), seed=0, split="train")
    seen = sorted(i for batch in data.batches(0) for i in batch.index)
    assert seen == list(range(40))
    for batch in data.batches(0):
        assert batch.src.numel() <= 64 or len(batch.index) == 1
        assert (batch.src[:, 0] == 5).all() and (batch.tgt[:, 0] == translate.BOS).all()
    first = [b.index for b in data.batches(0)]
    assert first != [b.index for b in data.batches(1)]
    assert [b.index for b in data.batches(0, start=2)] == first[2:]  # a resumed epoch
    ranks = [
        translate.TokenBatches(sources, targets, 64, torch.device("cpu"), seed=0, split="train", rank=r, world_size=2)
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])


def test_bleu_from_batch_totals_equals_corpus_bleu():
    import sacrebleu

    hyps = ["a man rides a bike", "two dogs play in the snow", "the cat sleeps", "a girl"]
    refs = ["a man is riding a bike", "two dogs are playing in the snow", "a cat sleeps", "a young girl"]
    scorer = translate.bleu_scorer()
    totals: dict[str, float] = {}
    for part in ((0, 2), (2, 4)):
        stats = scorer.corpus_score(hyps[part[0] : part[1]], [refs[part[0] : part[1]]])
        for n in range(4):
            totals[f"total.bleu_correct{n + 1}"] = totals.get(f"total.bleu_correct{n + 1}", 0) + stats.counts[n]
            totals[f"total.bleu_total{n + 1}"] = totals.get(f"total.bleu_total{n + 1}", 0) + stats.totals[n]
        totals["total.sys_len"] = totals.get("total.sys_len", 0) + stats.sys_len
        totals["total.ref_len"] = totals.get("total.ref_len", 0) + stats.ref_len
    expected = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score
    assert translate.bleu_from_totals(totals) == pytest.approx(expected)


def chrf_case(monkeypatch: pytest.MonkeyPatch, max_tokens: int):
    """A folder-dataset job whose val split holds PAIRS and whose "translations" are HYPS: its
    evaluation scores fixed sentences through eval_step, the runner's sums and finish_metrics."""
    sources = [f"sentence {word}" for word in ("one", "two", "three", "four")]
    refs = ["a man is riding a bike", "two dogs are playing in the snow", "a cat sleeps", "a young girl"]
    hyps = ["a man rides a bike", "two dogs play in the snow", "the cat sleeps", "a girl"]
    splits = {"train": (sources * 5, refs * 5), "val": (sources, refs)}
    monkeypatch.setattr(translate, "load_splits", lambda d, seed: splits)
    by_source = dict(zip(sources, hyps, strict=True))

    def fake_translate(model, tokenizer, src, decode, beam):
        return [by_source[translate.decode_ids(tokenizer, row.tolist())] for row in src]

    monkeypatch.setattr(translate, "translate_batch", fake_translate)
    job = translate.build(config("data.dataset=folder", "data.vocab_size=80", f"data.max_tokens={max_tokens}"), CPU)
    return job, hyps, refs


@pytest.mark.parametrize("max_tokens", [512, 20])  # the val split in one batch, and in two or more
def test_chrf_and_bleu_through_the_eval_path_equal_sacrebleus_corpus_scores(monkeypatch, max_tokens):
    import sacrebleu

    job, hyps, refs = chrf_case(monkeypatch, max_tokens)
    assert (len(job.eval_data["val"]) >= 2) == (max_tokens == 20)
    metrics = loop.evaluate(job.model, job.eval_data["val"], job, CPU)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score)
    assert metrics["exact"] == 0.0 and not any(k.startswith("total.") for k in metrics)


def test_chrf_from_batch_totals_equals_corpus_chrf():
    import sacrebleu

    hyps = ["Ein Mann fährt Rad.", "zwei Hunde", "eine Katze schläft auf dem Sofa", ""]
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen.", "eine Katze schläft", "ein Mädchen"]
    scorer = translate.chrf_scorer()
    totals: dict[str, float] = {}
    for part in (slice(0, 1), slice(1, 4)):
        for key, value in translate.chrf_totals(scorer, hyps[part], refs[part]).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    assert translate.chrf_from_totals(totals) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_the_number_recipe_chooses_best_by_exact_match_and_leaves_bleu_out(repo_configs):
    from dlcli import api

    task, cfg = api.load_config(
        repo_configs / "translation.yaml", ["data.numbers_train=100", "data.numbers_val=5", "data.numbers_test=5"]
    )
    job = task.build(cfg, CPU)
    assert job.best_metric == "exact" and job.best_mode == "max"  # one-word targets: BLEU is always 0
    assert "bleu_signature" not in translate.eval_notes(cfg) and "chrf_signature" in translate.eval_notes(cfg)
    multi30k = api.load_config(repo_configs / "multi30k.yaml")[1]
    assert "bleu_signature" in translate.eval_notes(multi30k)


def test_training_lowers_the_loss_and_reports_chrf_and_exact_match(numbers_run):
    records = [json.loads(line) for line in (numbers_run / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert train[-1] < train[0] - 1.0
    val = [r for r in records if r["split"] == "val"]
    assert val[-1]["loss"] < val[0]["loss"]
    test = next(r for r in records if r["split"] == "test")
    assert {"chrf", "exact", "loss", "ppl"} <= test.keys() and "bleu" not in test  # the number task: no BLEU
    assert 0.0 <= test["chrf"] <= 100.0
    assert (numbers_run / "tokenizer.json").is_file()


def test_dl_translate_one_sentence_and_stdin(numbers_run, cli):
    result = cli("translate", "three hundred twenty one", "--run", numbers_run, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["source"] == "three hundred twenty one" and isinstance(answer["translation"], str)
    from typer.testing import CliRunner

    from dlcli.cli import app

    piped = CliRunner().invoke(
        app, ["translate", "-", "--run", str(numbers_run), "--json", "--beam", "1"], input="one\ntwo hundred\n"
    )
    assert piped.exit_code == 0, piped.output
    assert [r["source"] for r in json.loads(piped.stdout)] == ["one", "two hundred"]


def test_unseen_characters_still_translate(numbers_run):
    results = translate.translate(numbers_run, ["Ωψ 漢字 ☃☃ ???", ""], beam=2)
    assert len(results) == 2 and all(isinstance(r["translation"], str) for r in results)


def test_attention_map_is_drawn(numbers_run, cli, tmp_path):
    out = tmp_path / "attn.png"
    result = cli("translate", "four thousand", "--run", numbers_run, "--attention", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000
    src, tgt, weights = translate.cross_attention(numbers_run, "four thousand", "viertausend")
    assert weights.shape == (len(tgt), len(src))
    assert torch.allclose(weights.sum(-1), torch.ones(len(tgt)), atol=1e-5)


def test_eval_prints_chrf_with_its_signature(numbers_run, cli):
    result = cli("eval", numbers_run, "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "chrf" in doc["metrics"] and "exact" in doc["metrics"]
    assert doc["chrf_signature"].startswith("nrefs:1|case:mixed|")


def test_folder_dataset_trains(tmp_path):
    sentences = [
        ("ein Hund läuft", "a dog runs"),
        ("eine Katze schläft", "a cat sleeps"),
        ("zwei Männer", "two men"),
    ] * 10
    write_pairs(tmp_path / "pairs", "train", [s for s, _ in sentences], [t for _, t in sentences])
    write_pairs(tmp_path / "pairs", "val", ["ein Hund"], ["a dog"])
    cfg = config("data.dataset=folder", f"data.root={tmp_path / 'pairs'}", "data.vocab_size=80", "train.epochs=1")
    summary = runner.train(translate, cfg, tmp_path / "run", CPU, Logger(quiet=True))
    assert {"bleu", "chrf"} <= summary["metrics"]["val"].keys() and "test" not in summary["metrics"]
    assert translate.eval_notes(cfg)["bleu_signature"].startswith("nrefs:1|case:lc|")


def test_empty_corpus_and_line_mismatch_exit_2(tmp_path, cli, repo_configs):
    empty = tmp_path / "empty"
    write_pairs(empty, "train", ["", ""], ["", ""])
    write_pairs(empty, "val", ["a"], ["b"])
    result = cli(
        "train", repo_configs / "translation.yaml", "--set", "data.dataset=folder", "--set", f"data.root={empty}"
    )
    assert result.exit_code == 2 and "holds no text" in result.output and "Traceback" not in result.output
    uneven = tmp_path / "uneven"
    write_pairs(uneven, "train", ["a", "b", "c"], ["x", "y", "z"])
    (uneven / "train.en").write_text("x\ny\n")
    write_pairs(uneven, "val", ["a"], ["b"])
    result = cli(
        "train", repo_configs / "translation.yaml", "--set", "data.dataset=folder", "--set", f"data.root={uneven}"
    )
    assert result.exit_code == 2 and "3 lines but" in result.output and "Traceback" not in result.output
    empty_tsv = tmp_path / "empty.tsv"
    empty_tsv.write_text("\n\n")
    result = cli(
        "train", repo_configs / "translation.yaml", "--set", "data.dataset=tsv", "--set", f"data.path={empty_tsv}"
    )
    assert result.exit_code == 2 and "no sentence pairs" in result.output


def test_multi30k_offline_names_the_file_and_folder(tmp_path, cli, repo_configs):
    result = cli("train", repo_configs / "multi30k.yaml", "--set", f"data.root={tmp_path / 'm30k'}")
    assert result.exit_code == 2, result.output
    assert "train.de.gz" in result.output and "m30k" in result.output


def test_heads_must_divide_the_width(cli, repo_configs):
    result = cli("train", repo_configs / "translation.yaml", "--set", "model.heads=3")
    assert result.exit_code == 2 and "divide" in result.output


def test_average_last_checkpoints(tmp_path):
    cfg = config("train.average_last=2", "train.epochs=3", "data.numbers_train=200")
    run_dir = tmp_path / "avg"
    runner.train(translate, cfg, run_dir, CPU, Logger(quiet=True))
    folder = run_dir / "checkpoints"
    kept = sorted(p.name for p in folder.glob("epoch-*.weights.pt"))
    assert kept == ["epoch-002.weights.pt", "epoch-003.weights.pt"]
    a, b = (torch.load(folder / name, weights_only=True) for name in kept)
    averaged = checkpoint.load(folder / "averaged.pt")
    for key in a:
        torch.testing.assert_close(averaged.model[key], (a[key] + b[key]) / 2)
    assert loading.best_checkpoint(run_dir) == folder / "averaged.pt"  # what translate and eval read
    assert translate.translate(run_dir, ["seven"], beam=1)[0]["source"] == "seven"
