"""Bad input files and untrusted files: every case ends in exit 0 or exit 2 with a clear message.

Image folders with files that are not images, truncated or decompression bombs; text corpora with
bytes that are not UTF-8, empty or whitespace-only; broken CoNLL-U; pickles that would run code
in place of checkpoints and weights; YAML tags that would construct objects. TRUST.md lists them.
And a command that answers with a run, given no --run and finding no finished run under runs/.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import Result

from dlcli.data.download import hub_weights_path, torchvision_weights

from conftest import assert_exit_2, sets, train_image_folder


def assert_ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stderr


# --------------------------------------------------------------------------- bad image files


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path: Path, side: int = 50_000) -> Path:
    """A 100-byte PNG that declares side x side pixels (2.5 gigapixels): a decompression bomb."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )
    return path


def truncated_jpeg() -> bytes:
    """A JPEG whose header is whole but whose pixel data stops at two thirds: only decoding finds it."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    return data[: len(data) * 2 // 3]


def image_folder(root: Path, bad: bool = True) -> Path:
    """root/{train,test}/{blue,red}/ with 4 good 16x16 PNGs each; train/red/ also gets 4 bad files:
    bomb.png (declared 50000 x 50000), cut.png (a PNG cut in half), notes.jpg (text), trunc.jpg."""
    for split in ("train", "test"):
        for name, rgb in (("blue", (30, 30, 220)), ("red", (220, 30, 30))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (16, 16), rgb).save(folder / f"{i}.png")
    if bad:
        red = root / "train" / "red"
        write_bomb(red / "bomb.png")
        whole = (red / "0.png").read_bytes()
        (red / "cut.png").write_bytes(whole[: len(whole) // 2])
        (red / "notes.jpg").write_text("not an image, despite its name\n")
        (red / "trunc.jpg").write_bytes(truncated_jpeg())
    return root


STREAMED = ("data.in_memory=false", "data.num_workers=0")


def test_image_folder_skips_bad_files_in_memory_with_a_count(cli, tmp_path):
    err = assert_ok(train_image_folder(cli, image_folder(tmp_path / "images")))
    # decoding finds all four, the truncated JPEG too
    assert "skipped 4 of 12 files" in err and "data.on_bad_file=skip" in err, err
    for name in ("bomb.png", "cut.png", "notes.jpg", "trunc.jpg"):
        assert name in err, err
    assert "decompression bomb" in err


def test_image_folder_skips_bad_files_when_streaming(cli, tmp_path):
    err = assert_ok(train_image_folder(cli, image_folder(tmp_path / "images"), *STREAMED, "data.batch_size=16"))
    # the header scan finds three; the truncated JPEG fails when a batch decodes it, and another image stands in
    assert "skipped 3 of 12 files" in err, err
    assert "trunc.jpg" in err and "stands in" in err, err


@pytest.mark.parametrize("loading", [(), STREAMED], ids=["in_memory", "streamed"])
def test_image_folder_stop_names_the_first_bad_file(cli, tmp_path, loading):
    result = train_image_folder(cli, image_folder(tmp_path / "images"), "data.on_bad_file=stop", *loading)
    assert_exit_2(result, "bomb.png", "decompression bomb", "data.on_bad_file=skip")


def test_truncated_jpeg_in_a_worker_stops_cleanly(cli, tmp_path):
    """A file that passes the header scan and fails in a DataLoader worker: exit 2 naming it,
    not the worker's traceback."""
    root = image_folder(tmp_path / "images", bad=False)
    (root / "train" / "red" / "trunc.jpg").write_bytes(truncated_jpeg())
    result = train_image_folder(
        cli, root, "data.on_bad_file=stop", "data.in_memory=false", "data.num_workers=1", "data.batch_size=16"
    )
    err = assert_exit_2(result, "trunc.jpg", "truncated", "data.on_bad_file=skip")
    assert "worker" not in err and "Original" not in err, err


def test_a_folder_of_only_bad_files_is_exit_2(cli, tmp_path):
    root = image_folder(tmp_path / "images", bad=False)
    for path in (root / "test").rglob("*.png"):
        path.write_text("text")
    assert_exit_2(train_image_folder(cli, root, *STREAMED), "None of the 8 files", "test")


@pytest.fixture
def squeezenet_weights(tmp_path: Path) -> Path:
    """A random squeezenet1_1 state_dict with ImageNet's 1000 classes (5 MB): `dl predict --arch` runs on it."""
    path = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
    return path


def test_predict_refuses_a_decompression_bomb(cli, tmp_path, squeezenet_weights):
    bomb = write_bomb(tmp_path / "bomb.png")
    result = cli("predict", bomb, "--arch", "squeezenet1_1", "--weights", squeezenet_weights)
    assert_exit_2(result, "bomb.png", "decompression bomb")


def test_predict_refuses_an_image_over_the_pixel_limit(cli, tmp_path, squeezenet_weights, monkeypatch):
    """Between 1x and 2x Pillow's limit Pillow only warns; dl refuses it (limit lowered to 200 px
    here, so a 16x16 image, 256 px, stands for a 100-megapixel one)."""
    image = tmp_path / "big.png"
    Image.new("RGB", (16, 16)).save(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    result = cli("predict", image, "--arch", "squeezenet1_1", "--weights", squeezenet_weights)
    assert_exit_2(result, "big.png", "16 x 16 pixels", "MAX_IMAGE_PIXELS")


# --------------------------------------------------------------------------- bad text corpora

NOT_UTF8 = b"caf\xe9 au lait is what the king and the queen drink\n\xff\xfe the man and the woman walk\n" * 10

W2V = ("data.dataset=text", "data.min_count=1", "model.vector_size=8", "train.workers=1", "train.max_steps=1")
LM = (
    "data.dataset=text",
    "data.batch_size=2",
    "data.bptt=4",
    "data.eval_batch_size=1",
    "model.hidden_size=8",
    "model.embedding_dim=8",
    "model.num_layers=1",
    "train.max_steps=1",
)
TAG = (
    "data.dataset=conllu",
    "data.val_fraction=0.3",
    "model.hidden_size=8",
    "model.embedding_dim=8",
    "model.char_hidden=8",
    "model.num_layers=1",
    "train.max_steps=1",
)
TRANSLATE = (
    "model.dim=8",
    "model.heads=1",
    "model.ff_dim=8",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "data.vocab_size=40",
    "decode.beam=1",
    "train.max_steps=1",
)


def conllu(words: list[bytes]) -> bytes:
    """One sentence a word, each word a NOUN (CoNLL-U's ten tab-separated fields)."""
    return b"".join(b"1\t" + w + b"\t_\tNOUN\tNN\t_\t0\troot\t_\t_\n\n" for w in words)


def train_text(cli: Callable[..., Result], task: str, tmp_path: Path, data: bytes) -> Result:
    """Train one step of `task` on a corpus file holding `data` (translate: the source side)."""
    out = ["--out", tmp_path / f"run-{task}", "-q"]
    if task == "word2vec":
        (tmp_path / "corpus.txt").write_bytes(data)
        return cli(
            "train",
            "word2vec",
            *out,
            *sets(*W2V, f"data.path={tmp_path / 'corpus.txt'}", f"data.root={tmp_path / 'd'}"),
        )
    if task == "lm":
        (tmp_path / "corpus.txt").write_bytes(data)
        return cli("train", "char_lstm", *out, *sets(*LM, f"data.path={tmp_path / 'corpus.txt'}"))
    if task == "tag":
        (tmp_path / "train.conllu").write_bytes(data)
        return cli("train", "pos_lstm", *out, *sets(*TAG, f"data.train={tmp_path / 'train.conllu'}"))
    if task == "translate":  # a folder of train/val .de/.en files; the German side holds `data`
        folder = tmp_path / "pairs"
        folder.mkdir()
        lines = data.count(b"\n")
        for split in ("train", "val"):
            (folder / f"{split}.de").write_bytes(data)
            (folder / f"{split}.en").write_bytes(b"one two three\n" * lines)
        return cli("train", "translation", *out, *sets(*TRANSLATE, "data.dataset=folder", f"data.root={folder}"))
    assert task == "translate-tsv"
    (tmp_path / "pairs.tsv").write_bytes(b"".join(line + b"\tone two\n" for line in data.splitlines()))
    return cli(
        "train", "translation", *out, *sets(*TRANSLATE, "data.dataset=tsv", f"data.path={tmp_path / 'pairs.tsv'}")
    )


TEXT_TASKS = ["word2vec", "lm", "tag", "translate", "translate-tsv"]


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_bytes_that_are_not_utf8_are_replaced_with_a_warning(cli, tmp_path, task):
    """Every corpus reader: U+FFFD in place of each bad sequence, one warning with the count and the fix."""
    data = conllu([b"caf\xe9", b"the", b"\xff\xfedog", b"king"] * 3) if task == "tag" else NOT_UTF8
    err = assert_ok(train_text(cli, task, tmp_path, data))
    assert "not UTF-8, read as U+FFFD" in err and "Re-encode" in err, err
    count = 9 if task == "tag" else 30  # \xe9 is one bad sequence, \xff\xfe two (neither byte starts a character)
    assert f": {count} byte sequences not UTF-8" in err, err


@pytest.mark.parametrize("content", [b"", b"  \n\n\t \n"], ids=["empty", "whitespace"])
@pytest.mark.parametrize("task", TEXT_TASKS)
def test_an_empty_corpus_is_exit_2(cli, tmp_path, task, content):
    err = assert_exit_2(train_text(cli, task, tmp_path, content))
    assert str(tmp_path) in err, err  # the message names the file
    assert any(words in err for words in ("holds no", "no words", "no sentence")), err


def test_a_broken_conllu_line_is_exit_2_with_its_line_number(cli, tmp_path):
    data = conllu([b"the", b"dog"]) + b"1\tcat\tNOUN\n"  # line 5: three fields
    assert_exit_2(train_text(cli, "tag", tmp_path, data), "train.conllu:5", "10 tab-separated fields")


def test_a_conllu_line_with_a_bad_id_is_exit_2_with_its_line_number(cli, tmp_path):
    data = conllu([b"the", b"dog"]) + b"one\tcat\t_\tNOUN\tNN\t_\t0\troot\t_\t_\n"
    assert_exit_2(train_text(cli, "tag", tmp_path, data), "train.conllu:5")


# --------------------------------------------------------------------------- untrusted files


class RunsCode:
    """Unpickling this calls open(marker, "w"): a file appears if the pickle's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_file(path: Path, marker: Path, as_checkpoint: bool = True) -> Path:
    """A pickle that runs code when loaded without weights_only, dressed as a dl checkpoint or a state_dict."""
    payload = (
        {"format": "dlcli-checkpoint", "version": 1, "task": "classify", "model": RunsCode(marker)}
        if as_checkpoint
        else {"conv1.weight": RunsCode(marker)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_the_evil_pickle_really_runs_code_without_weights_only(tmp_path):
    """The control: the files the tests below feed dl do run code under a plain torch.load."""
    marker = tmp_path / "ran"
    torch.load(evil_file(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", ["eval", "predict", "resume-from", "model.weights", "hub cache", "style features"])
def test_a_pickle_that_runs_code_is_refused(cli, tmp_path, command):
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    if command == "eval":
        evil_file(run / "checkpoints" / "best.pt", marker)
        result = cli("eval", run)
    elif command == "predict":
        evil_file(run / "checkpoints" / "best.pt", marker)
        result = cli("predict", image, "--run", run)
    elif command == "resume-from":
        result = cli("train", "resnet", "--out", run, "--resume-from", evil_file(tmp_path / "last.pt", marker))
    elif command == "model.weights":
        weights = evil_file(tmp_path / "weights.pth", marker, as_checkpoint=False)
        result = cli(
            "train",
            "resnet",
            "--out",
            run,
            *sets(f"model.weights={weights}", "data.train_size=10", "data.val_size=10", "data.test_size=10"),
        )
    elif command == "hub cache":  # torchvision's ImageNet weights where torch hub keeps them
        evil_file(hub_weights_path(torchvision_weights("squeezenet1_1")), marker, as_checkpoint=False)
        result = cli("predict", image, "--arch", "squeezenet1_1", "--weights", "imagenet")
    else:
        features = evil_file(tmp_path / "vgg.pth", marker, as_checkpoint=False)
        result = cli(
            "stylize", image, image, "-o", tmp_path / "out.png", "--features", features, "--steps", "1", "--size", "16"
        )
    assert_exit_2(result)
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:builtins.open ['{marker}', 'w']",
        "!!python/object/new:builtins.open ['{marker}', 'w']",
        "!!python/name:os.system",
    ],
)
def test_yaml_tags_that_construct_objects_are_refused(cli, tmp_path, tag):
    marker = tmp_path / "code-ran"
    value = tag.format(marker=marker)
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"task: classify\nname: {value}\n")
    assert_exit_2(cli("config", "show", recipe), "evil.yaml", "refused", "line 2")
    assert_exit_2(cli("train", recipe, "--out", tmp_path / "run"), "refused")
    assert_exit_2(cli("config", "show", "resnet", "--set", f"name={value}"), "--set name", "refused")
    assert_exit_2(
        cli("train", "resnet", "--out", tmp_path / "run", "--set", f"data.root={value}"), "--set data.root", "refused"
    )
    assert not marker.exists()


# --------------------------------------------------------------------------- no --run and no run to fall back on


@pytest.mark.parametrize(
    ("command", "recipe"),
    [
        (["tag", "The dog barks ."], "configs/pos_lstm.yaml"),
        (["generate"], "configs/char_lstm.yaml"),
        (["translate", "three"], "configs/translation.yaml"),
        # these take --run or another source, and say so
        (["predict", "cat.png"], "configs/resnet.yaml"),
        (["analogy", "king", "man", "woman"], "configs/word2vec.yaml"),
        (["similar", "king"], "configs/word2vec.yaml"),
        (["similarity", "cat", "dog"], "configs/word2vec.yaml"),
    ],
)
def test_a_missing_run_is_one_error_line(cli, command, recipe):
    """Without --run a command takes the newest finished run of its task under runs/; with none there it
    says which recipe trains one, and how long that takes (tests/test_newest_run.py)."""
    result = cli(*command)
    err = assert_exit_2(result, "--run", "No finished", "under runs/", f'"dl train {recipe}"', "of training")
    assert err.startswith("error:") and err.count("\n") == 1, err  # one line: no usage box
    assert "Usage:" not in result.output and result.stdout == ""
