"""The `tag` (many-to-many) and `seqclass` (many-to-one) tasks end to end, on tiny data."""

import json

import pytest
import torch

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

TAG_TINY = [
    "data.train_sentences=300",
    "data.val_sentences=60",
    "data.test_sentences=60",
    "model.embedding_dim=16",
    "model.char_hidden=16",
    "model.hidden_size=24",
    "model.num_layers=1",
    "train.epochs=6",
    "train.log_every=5",
    "data.batch_size=16",
    "optim.lr=0.01",
]


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def test_tagger_learns_the_generated_corpus_and_dl_tag_eval_work(cli, tmp_path):
    run = tmp_path / "pos"
    assert cli("train", "pos_lstm", "--out", str(run), "--quiet", *_sets(TAG_TINY)).exit_code == 0
    summary = json.loads((run / "summary.json").read_text())
    # the most frequent tag (NOUN) is ~25% of tokens: the tagger must do far better
    assert summary["metrics"]["test"]["accuracy"] > 0.7
    result = cli("tag", "The old man can watch the boats .", "--run", str(run), "--json")
    assert result.exit_code == 0, result.output
    tagged = json.loads(result.stdout)
    assert [t["token"] for t in tagged] == ["The", "old", "man", "can", "watch", "the", "boats", "."]
    assert tagged[-1]["tag"] == "PUNCT"
    result = cli("eval", str(run), "--split", "test", "--json")
    metrics = json.loads(result.stdout)["metrics"]
    assert {"accuracy", "oov_accuracy", "precision.NOUN", "recall.VERB"} <= set(metrics)
    assert metrics["accuracy"] == pytest.approx(summary["metrics"]["test"]["accuracy"])


CONLLU = """# sent_id = 1
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\truns\trun\tVERB\tVBZ\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tA\ta\tDET\tDT\t_\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3-4\tdoesn't\t_\t_\t_\t_\t_\t_\t_\t_
3\tdoes\tdo\tAUX\tVBZ\t_\t5\taux\t_\t_
4\tn't\tnot\tPART\tRB\t_\t5\tadvmod\t_\t_
5\tsleep\tsleep\tVERB\tVB\t_\t0\troot\t_\t_

"""


def test_tagger_reads_conllu_with_pretrained_vectors(cli, tmp_path):
    (tmp_path / "train.conllu").write_text(CONLLU * 20)
    (tmp_path / "vectors.txt").write_text("3 4\ndog 1 2 3 4\ncat 4 3 2 1\nzebra 1 1 1 1\n")
    sets = [
        f"data.train={tmp_path / 'train.conllu'}",
        "data.dataset=conllu",
        f"model.pretrained_vectors={tmp_path / 'vectors.txt'}",
        "model.embedding_dim=4",
        "model.hidden_size=8",
        "model.char_hidden=8",
        "model.num_layers=1",
        "train.epochs=2",
        "model.char_encoder=lstm",
        "model.impl=scratch",
    ]
    run = tmp_path / "run"
    result = cli("train", "pos_lstm", "--out", str(run), "--quiet", *_sets(sets))
    assert result.exit_code == 0, result.output
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    words = ckpt["extra"]["words"]
    assert "zebra" in words  # pretrained words join the vocabulary: fewer unknown words at test time
    assert ckpt["extra"]["tags"] == ["AUX", "DET", "NOUN", "PART", "PUNCT", "VERB"]


def test_pretrained_vectors_initialise_the_embeddings(tmp_path):
    from dlcli.config import validate
    from dlcli.runtime import create_runtime
    from dlcli.tasks import tag

    (tmp_path / "vectors.txt").write_text("2 4\nthe 1 2 3 4\nbook 4 3 2 1\n")
    cfg = validate(
        {
            "task": "tag",
            "model": {"embedding_dim": 4, "pretrained_vectors": str(tmp_path / "vectors.txt")},
            "data": {"train_sentences": 50, "val_sentences": 10, "test_sentences": 10},
        },
        tag.Config,
    )
    job = tag.build(cfg, create_runtime(cfg.train, "cpu"))
    words = job.extra["words"]
    assert job.model.words.weight[words.index("book")].tolist() == [4, 3, 2, 1]


def test_tagger_errors_are_exit_2(cli, tmp_path):
    result = cli("train", "pos_lstm", "--out", str(tmp_path / "r"), "--set", "data.dataset=conllu")
    assert result.exit_code == 2 and "data.train" in result.output
    (tmp_path / "v.txt").write_text("1 3\nthe 1 2 3\n")
    result = cli(
        "train", "pos_lstm", "--out", str(tmp_path / "r"), "--set", f"model.pretrained_vectors={tmp_path / 'v.txt'}"
    )
    assert result.exit_code == 2 and "embedding_dim" in result.output


SEQ_TINY = [
    "data.train_size=600",
    "data.val_size=100",
    "data.test_size=100",
    "data.max_len=16",
    "train.epochs=3",
    "model.hidden_size=16",
    "train.log_every=5",
]


@pytest.mark.parametrize("arch", ["gru", "lstm", "rnn"])
def test_seqclass_loss_falls_on_brackets(cli, tmp_path, arch):
    run = tmp_path / arch
    result = cli("train", "brackets_gru", "--out", str(run), "--quiet", *_sets(SEQ_TINY + [f"model.arch={arch}"]))
    assert result.exit_code == 0, result.output
    losses = [
        r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"
    ]
    assert losses[-1] < losses[0]


def test_seqclass_learns_a_tsv_of_labels(cli, tmp_path):
    lines = [f"{'ab' * (i % 5 + 1)}\tpositive" if i % 2 else f"{'ba' * (i % 5 + 1)}x\tnegative" for i in range(200)]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    sets = [
        "data.dataset=tsv",
        f"data.train={tmp_path / 'train.tsv'}",
        "train.epochs=8",
        "model.bidirectional=true",
        "model.hidden_size=16",
    ]
    run = tmp_path / "tsv"
    assert cli("train", "brackets_gru", "--out", str(run), "--quiet", *_sets(sets)).exit_code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["val"]["accuracy"] == 1.0


def test_dl_tag_on_another_task_is_exit_2(cli, tmp_path):
    run = tmp_path / "br"
    assert (
        cli("train", "brackets_gru", "--out", str(run), "--quiet", *_sets(SEQ_TINY + ["train.epochs=1"])).exit_code == 0
    )
    result = cli("tag", "a b", "--run", str(run))
    assert result.exit_code == 2 and "tagger" in result.output


def test_seqclass_bad_data_is_exit_2(cli, tmp_path):
    result = cli(
        "train", "brackets_gru", "--out", str(tmp_path / "a"), "--set", "data.min_len=30", "--set", "data.max_len=10"
    )
    assert result.exit_code == 2 and "data.min_len" in result.output
    (tmp_path / "one.tsv").write_text("abc\tx\nabd\tx\n")
    result = cli(
        "train",
        "brackets_gru",
        "--out",
        str(tmp_path / "b"),
        "--set",
        "data.dataset=tsv",
        "--set",
        f"data.train={tmp_path / 'one.tsv'}",
    )
    assert result.exit_code == 2 and "at least 2" in result.output and "Traceback" not in result.output
