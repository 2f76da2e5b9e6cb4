"""Bad configs, generated: every recipe and --set value ends in exit 0 or exit 2 with a message.

Never a traceback (exit 1 from an unexpected exception counts as a crash), never a hang.
Hypothesis draws key paths from each task's schema (plus unknown keys) and values of the
wrong type, out of range, NaN/inf, absurd sizes, empty strings and nested junk.

    pytest tests/test_fuzz_config.py                  # the default suite: well under a minute
    pytest tests/test_fuzz_config.py -m slow          # the soak: many more examples

Most cases stop right after validation (`dl config show` resolves a recipe exactly as `dl train`
does). A smaller set trains one step on tiny built-in data, with the values that change memory
or time bounded so a case cannot take the machine's memory (and the address space is capped
while they run, so a missed bound fails with an error instead of the OOM killer).
"""

from __future__ import annotations

import math
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from dlcli.cli import app
from dlcli.tasks import get_task

TASKS = ("classify", "lm", "word2vec", "translate")
RECIPES = {"classify": "resnet", "lm": "char_lstm", "word2vec": "word2vec", "translate": "translation"}
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SOAK = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of a schema, sections included ("data", "data.batch_size", ...)."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            paths += key_paths(field.annotation, path + ".")
    return paths


# --------------------------------------------------------------------------- values

# Scalars a recipe might hold by mistake, the boundary cases of every bound first.
numbers = st.one_of(
    st.sampled_from([0, -1, 1, 2, 10**12, -(10**12), 2**63, 10**100, 0.5, -0.5, 1e-300, 1e300]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
words = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "auto",
            "none",
            "null",
            "~",
            "true",
            "yes",
            "[]",
            "{}",
            "nan",
            ".inf",
            "-1",
            "1e999",
            "resnet18",
            "cpu",
            "cuda:99",
            "fp8",
            "../../etc/passwd",
            "[/red]",
            "%s%n",
            "\x00",
            "é\u202e",
        ]
    ),
    st.text(max_size=12),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, words)
junk = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3), max_leaves=6
)


def as_set_value(value: Any) -> str:
    """What a user types after key=: YAML for structured values, raw text for strings."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def overrides(task: str) -> st.SearchStrategy[list[str]]:
    paths = key_paths(get_task(task).Config)
    keys = st.one_of(
        st.sampled_from(paths),
        st.sampled_from(paths).map(lambda p: p + ".extra"),  # a key under a value
        st.sampled_from(["nope", "model.nope", "data.batch_size.x", "optim..lr", ".lr", "optim.", "train.epochs.0"]),
    )
    item = st.tuples(keys, junk).map(lambda kv: f"{kv[0]}={as_set_value(kv[1])}")
    raw = st.text(max_size=20)  # not even key=value
    return st.lists(st.one_of(item, item, item, raw), min_size=1, max_size=4)


# --------------------------------------------------------------------------- checking a result


def assert_clean(result: Result, training: bool = False) -> None:
    """Exit 0, or exit 2 with a one-paragraph message; never an unexpected exception.

    training: exit 1 is allowed too when it is a run that failed by design (RunFailed: the loss
    became NaN/inf, e.g. at lr=2 with a momentum of 2), not the CLI's catch-all for an
    unexpected exception, whose message says "run with --debug for the traceback".
    """
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not unexpected, f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    allowed = (0, 1, 2) if training else (0, 2)
    assert result.exit_code in allowed, result.output
    assert "Traceback" not in result.output and "--debug for the traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert result.stderr.strip(), "exit 2 without a message"
        assert "error" in result.stderr.lower(), result.stderr


class CaseTimeout(BaseException):
    """A case over its time bound: a hang. A BaseException, so that neither the CLI's error
    handling nor CliRunner turns it into an exit code; it fails the test with the case's args."""


CASE_SECONDS = 120  # one case: validation takes milliseconds, a fuzzed training step seconds


@contextmanager
def time_bound(seconds: int, args: list[str]) -> Iterator[None]:
    def expire(signum, frame):
        raise CaseTimeout(f"still running after {seconds} s (a hang): dl {' '.join(args)}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_case_over_its_time_bound_fails_as_a_hang() -> None:
    with pytest.raises(CaseTimeout, match="still running after 1 s"):
        with time_bound(1, ["train", "resnet"]):
            while True:
                pass


def invoke(*args: object) -> Result:
    argv = [str(a) for a in args]
    with time_bound(CASE_SECONDS, argv):
        return CliRunner().invoke(app, argv)


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


# --------------------------------------------------------------------------- validation only


def _config_show_cases(task: str, items: list[str]) -> None:
    assert_clean(invoke("config", "show", RECIPES[task], *sets(items)))


@pytest.mark.parametrize("task", TASKS)
def test_set_values_validate_or_exit_2(task: str) -> None:
    given(overrides(task))(FAST(lambda items: _config_show_cases(task, items)))()


def recipes(task: str) -> st.SearchStrategy[Any]:
    """A whole recipe: the task's real sections with junk mixed in, or junk at the top."""
    paths = [p for p in key_paths(get_task(task).Config) if "." in p]
    section = st.dictionaries(st.sampled_from(paths).map(lambda p: p.split(".", 1)[1].split(".")[0]), junk, max_size=4)
    mapping = st.fixed_dictionaries(
        {"task": st.sampled_from([task, task, "", "nope", None, 3])},
        optional={
            name: st.one_of(section, junk) for name in ("model", "data", "optim", "schedule", "train", "name", "seed")
        },
    )
    return st.one_of(mapping, mapping, junk)


def _recipe_case(task: str, tmp: Path, recipe: Any) -> None:
    path = tmp / "fuzz.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    assert_clean(invoke("config", "show", path))


@pytest.mark.parametrize("task", TASKS)
def test_generated_recipes_validate_or_exit_2(task: str, tmp_path: Path) -> None:
    given(recipes(task))(FAST(lambda recipe: _recipe_case(task, tmp_path, recipe)))()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_soak_set_values_and_recipes(task: str, tmp_path: Path) -> None:
    given(overrides(task))(SOAK(lambda items: _config_show_cases(task, items)))()
    given(recipes(task))(SOAK(lambda recipe: _recipe_case(task, tmp_path, recipe)))()


# --------------------------------------------------------------------------- one training step

# Tiny built-in data and models per task: a step takes well under a second.
TINY = {
    "classify": [
        "data.train_size=10",
        "data.val_size=10",
        "data.test_size=10",
        "data.image_size=32",
        "data.batch_size=5",
    ],
    "lm": [
        "data.builtin_sentences=20",
        "data.batch_size=2",
        "data.bptt=8",
        "data.eval_batch_size=2",
        "model.embedding_dim=8",
        "model.hidden_size=8",
        "model.num_layers=1",
    ],
    "word2vec": ["data.planted_sentences=100", "data.min_count=1", "model.vector_size=8", "train.workers=1"],
    "translate": [
        "data.numbers_train=20",
        "data.numbers_val=2",
        "data.numbers_test=2",
        "data.vocab_size=40",
        "model.dim=8",
        "model.heads=1",
        "model.ff_dim=8",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "decode.beam=1",
    ],
}
# Keys whose values are fuzzed in training runs, with values that cannot ask for much memory or time:
# wrong types, signs and NaN/inf are the point here; absurd sizes are the validation tests' job.
TRAIN_KEYS = {
    "classify": [
        "seed",
        "data.batch_size",
        "data.eval_batch_size",
        "data.image_size",
        "data.augment",
        "data.random_erase",
        "data.val_fraction",
        "optim.lr",
        "optim.name",
        "optim.momentum",
        "optim.betas",
        "schedule.name",
        "schedule.warmup_steps",
        "train.clip_grad_norm",
        "train.label_smoothing",
        "train.mixup",
        "train.cutmix",
        "train.grad_accum",
        "model.dropout",
    ],
    "lm": [
        "seed",
        "data.batch_size",
        "data.bptt",
        "data.level",
        "data.val_fraction",
        "optim.lr",
        "model.arch",
        "model.dropout",
        "model.tie_weights",
        "train.clip_grad_norm",
        "schedule.name",
    ],
    "word2vec": [
        "seed",
        "model.sg",
        "model.window",
        "model.negative",
        "model.ns_exponent",
        "data.sample",
        "data.batch_words",
        "data.min_count",
        "optim.lr",
        "schedule.min_lr",
        "data.token_pattern",
    ],
    "translate": [
        "seed",
        "data.max_tokens",
        "data.max_len",
        "decode.max_len_a",
        "decode.max_len_b",
        "decode.length_penalty",
        "train.label_smoothing",
        "optim.lr",
        "schedule.name",
        "schedule.warmup_steps",
    ],
}
small = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            3,
            10**12,
            2**64,
            0.5,
            -0.5,
            1e-12,
            math.nan,
            math.inf,
            -math.inf,
            "",
            "x",
            None,
            True,
            [1, 2],
            {"a": 1},
        ]
    ),
    st.integers(-3, 64),
    st.floats(-2, 2, allow_nan=False),
)


@contextmanager
def address_space_cap(extra_bytes: int = 3 << 30) -> Iterator[None]:
    """Cap this process's address space at its current size plus `extra_bytes` while a case runs.

    A value that makes a run allocate gigabytes then fails at once (an error: exit 1, reported as
    a crash) instead of growing until the OOM killer takes this or another process.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * resource.getpagesize()
    cap = current + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, current + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _train_case(task: str, tmp: Path, items: list[str]) -> None:
    out = tmp / "run"
    root = (
        [] if task == "lm" else [f"data.root={tmp / 'data'}"]
    )  # lm has no data.root: it would end every case at exit 2
    args = [
        "train",
        RECIPES[task],
        "--out",
        out,
        "--overwrite",
        "-q",
        "--device",
        "cpu",
        *sets(TINY[task] + ["train.max_steps=1", "train.epochs=1", *root] + items),
    ]
    if task == "word2vec":
        args += sets(["data.dataset=planted"])
    with address_space_cap():
        assert_clean(invoke(*args), training=True)


def train_overrides(task: str) -> st.SearchStrategy[list[str]]:
    item = st.tuples(st.sampled_from(TRAIN_KEYS[task]), small).map(lambda kv: f"{kv[0]}={as_set_value(kv[1])}")
    return st.lists(item, min_size=1, max_size=2)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the address-space cap reads /proc")
@pytest.mark.parametrize("task", TASKS)
def test_one_training_step_with_fuzzed_values(task: str, tmp_path: Path) -> None:
    run = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    given(train_overrides(task))(run(lambda items: _train_case(task, tmp_path, items)))()


# --------------------------------------------------------------------------- crashes found, fixed

BIG = 2**64  # past int64: torch and numpy overflow
# Found by fuzzing: each was a traceback (exit 1), a hang, or a run that went on with a value that means
# nothing (an infinite eps, a batch of 2^64). Now exit 2 at validation, the message naming the key.
# (recipe, --set items, the key the message names)
REFUSED_AT_VALIDATION = [
    # NaN and +-inf, refused for every float key (Section's allow_inf_nan=False)
    ("resnet", ["optim.weight_decay=.inf"], "optim.weight_decay"),
    ("resnet", ["optim.momentum=.nan"], "optim.momentum"),
    ("resnet", ["optim.eps=.inf"], "optim.eps"),
    ("resnet", ["schedule.warmup_epochs=.inf"], "schedule.warmup_epochs"),
    ("resnet", ["schedule.min_lr=.inf"], "schedule.min_lr"),
    ("resnet", ["train.aux_weight=.nan"], "train.aux_weight"),
    ("word2vec", ["model.ns_exponent=.nan"], "model.ns_exponent"),
    ("word2vec", ["data.sample=.inf"], "data.sample"),
    ("translation", ["decode.length_penalty=-.inf"], "decode.length_penalty"),
    # Adam's betas: torch raises ValueError outside [0, 1)
    ("resnet", ["optim.betas=[1.5, 0.999]"], "optim.betas.0"),
    ("resnet", ["optim.betas=[0.9, 1.0]"], "optim.betas.1"),
    ("translation", ["optim.betas=[-0.1, 0.98]"], "optim.betas.0"),
    ("translation", ["optim.betas=[.nan, 0.98]"], "optim.betas.0"),
    # integers past 64 bits, for every int key
    ("resnet", [f"data.batch_size={BIG}"], "data.batch_size"),
    ("resnet", [f"train.log_every={10**100}"], "train.log_every"),
    ("char_lstm", [f"model.hidden_size={BIG}"], "model.hidden_size"),
    ("translation", [f"schedule.total_steps={BIG}"], "schedule.total_steps"),
    # image sizes: the shapes generator's minimum, and at most 1024
    ("resnet", ["data.image_size=8"], "data.image_size"),
    ("resnet", ["data.image_size=2048"], "data.image_size"),
    # built-in generated data: at most 10^6 items per split (10^7 ran for hours)
    ("resnet", ["data.train_size=10000000"], "data.train_size"),
    ("resnet", ["data.test_size=10000000"], "data.test_size"),
    ("char_lstm", ["data.builtin_sentences=10000000"], "data.builtin_sentences"),
    ("word2vec", ["data.planted_sentences=10000000"], "data.planted_sentences"),
    ("translation", ["data.numbers_train=10000000"], "data.numbers_train"),
    ("translation", ["data.numbers_val=10000000"], "data.numbers_val"),
    ("pos_lstm", ["data.train_sentences=10000000"], "data.train_sentences"),
    ("brackets_gru", ["data.val_size=10000000"], "data.val_size"),
    ("brackets_gru", ["data.max_len=1000000000"], "data.max_len"),
    # beam search lengths and length penalty (a hang, or length ** penalty overflowing)
    ("translation", ["decode.max_len_a=11"], "decode.max_len_a"),
    ("translation", ["decode.max_len_b=1025"], "decode.max_len_b"),
    ("translation", ["decode.length_penalty=1e300"], "decode.length_penalty"),
    # layer counts (10^9 layers took hours to build), the step schedule overflowing a float
    ("char_lstm", ["model.num_layers=1000000000"], "model.num_layers"),
    ("translation", ["model.decoder_layers=1001"], "model.decoder_layers"),
    ("resnet", ["schedule.gamma=10"], "schedule.gamma"),
    ("resnet", ["schedule.step_epochs=1e300"], "schedule.step_epochs"),
]


@pytest.mark.parametrize(
    ("recipe", "items", "key"), REFUSED_AT_VALIDATION, ids=lambda v: str(v) if isinstance(v, list) else None
)
def test_bad_values_found_by_fuzzing_are_refused_at_validation(recipe: str, items: list[str], key: str) -> None:
    result = invoke("config", "show", recipe, *sets(items))
    assert_clean(result)
    assert result.exit_code == 2 and f"'{key}'" in result.stderr, result.output


TINY_SHAPES = ["data.train_size=10", "data.val_size=10", "data.test_size=10", "train.max_steps=1", "train.epochs=1"]
# Refused when the run is built, before any step: (recipe, --set items, words the message holds)
REFUSED_AT_BUILD = [
    # BatchNorm in training: "Expected more than 1 value per channel when training"
    ("resnet", ["data.batch_size=1"], ["BatchNorm", "data.batch_size is 1"]),
    # ViT asserted "Wrong image height! Expected 224"; MaxViT's partitions failed to reshape
    ("resnet", ["model.arch=vit_b_16", "data.image_size=232"], ["vit_b_16", "multiple of 16", "232"]),
    ("resnet", ["model.arch=maxvit_t", "data.image_size=300"], ["maxvit_t", "multiple of 224", "300"]),
    ("resnet", ["model.arch=inception_v3", "data.image_size=32"], ["inception_v3", "at least 75 px"]),
    # 3 TB of shapes: numpy hands the memory out lazily, then the OOM killer takes the run
    ("resnet", ["data.train_size=1000000", "data.image_size=1024"], ["GiB", "data.train_size", "1024"]),
]


@pytest.mark.parametrize(
    ("recipe", "items", "words"),
    REFUSED_AT_BUILD,
    ids=lambda v: str(v) if isinstance(v, list) and "=" in v[0] else None,
)
def test_runs_that_crashed_are_refused_when_built(
    recipe: str, items: list[str], words: list[str], tmp_path: Path
) -> None:
    result = invoke("train", recipe, "--out", tmp_path / "run", "-q", "--device", "cpu", *sets(TINY_SHAPES + items))
    assert_clean(result)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_batch_of_one_trains_a_model_without_batchnorm(tmp_path: Path) -> None:
    """The BatchNorm check refuses only what fails: SqueezeNet has no BatchNorm, so batches of 1 train."""
    items = TINY_SHAPES + ["model.arch=squeezenet1_1", "data.image_size=32", "data.batch_size=1"]
    result = invoke("train", "resnet", "--out", tmp_path / "run", "-q", "--device", "cpu", *sets(items))
    assert result.exit_code == 0, result.output


def test_fewer_training_images_than_processes_is_refused_naming_the_split() -> None:
    """Under DDP each process trains on its share: 1 image for 2 processes leaves each BatchNorm 0 values."""
    import torch

    from dlcli.api import load_config
    from dlcli.errors import DlError
    from dlcli.runtime import Runtime
    from dlcli.tasks import classify

    _, cfg = load_config("resnet", ["data.batch_size=4"])
    model = classify.build_model(cfg.model, 10, cfg.data.image_size)
    runtime = Runtime(torch.device("cpu"), "fp32", channels_last=False, world_size=2)
    with pytest.raises(DlError, match=r"on only 0 value\(s\) per channel .* the training split has 1 image\(s\) for 2"):
        classify.check_batch_norm_batch(model, cfg, 1, runtime)


@pytest.mark.parametrize("arch", ["vit_b_32", "maxvit_t"])
def test_vit_and_maxvit_are_built_for_the_image_size(arch: str) -> None:
    """They were built for 224 px whatever data.image_size said, and failed at the first step."""
    import torch

    from dlcli.tasks import classify

    size = 256 if arch == "vit_b_32" else 448
    model = classify.build_model(classify.ClassifyModel(arch=arch), 3, size).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 3)
