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
    st.sampled_from(["", " ", "auto", "none", "null", "~", "true", "yes", "[]", "{}", "nan", ".inf", "-1", "1e999",
                     "resnet18", "cpu", "cuda:99", "fp8", "../../etc/passwd", "[/red]", "%s%n", "\x00", "é\u202e"]),
    st.text(max_size=12),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, words)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3), max_leaves=6)


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


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


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
        optional={name: st.one_of(section, junk) for name in ("model", "data", "optim", "schedule", "train", "name", "seed")},
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
    "classify": ["data.train_size=10", "data.val_size=10", "data.test_size=10", "data.image_size=32", "data.batch_size=5"],
    "lm": ["data.builtin_sentences=20", "data.batch_size=2", "data.bptt=8", "data.eval_batch_size=2",
           "model.embedding_dim=8", "model.hidden_size=8", "model.num_layers=1"],
    "word2vec": ["data.planted_sentences=100", "data.min_count=1", "model.vector_size=8", "train.workers=1"],
    "translate": ["data.numbers_train=20", "data.numbers_val=2", "data.numbers_test=2", "data.vocab_size=40",
                  "model.dim=8", "model.heads=1", "model.ff_dim=8", "model.encoder_layers=1", "model.decoder_layers=1",
                  "decode.beam=1"],
}
# Keys whose values are fuzzed in training runs, with values that cannot ask for much memory or time:
# wrong types, signs and NaN/inf are the point here; absurd sizes are the validation tests' job.
TRAIN_KEYS = {
    "classify": ["seed", "data.batch_size", "data.eval_batch_size", "data.augment", "data.val_fraction", "optim.lr", "optim.name",
                 "optim.momentum", "optim.betas", "schedule.name", "schedule.warmup_steps", "train.clip_grad_norm",
                 "train.label_smoothing", "train.grad_accum", "model.dropout"],
    "lm": ["seed", "data.batch_size", "data.bptt", "data.level", "data.val_fraction", "optim.lr", "model.arch", "model.dropout",
           "model.tie_weights", "train.clip_grad_norm", "schedule.name"],
    "word2vec": ["seed", "model.sg", "model.window", "model.negative", "model.ns_exponent", "data.sample", "data.batch_words",
                 "data.min_count", "optim.lr", "schedule.min_lr", "data.token_pattern"],
    "translate": ["seed", "data.max_tokens", "data.max_len", "decode.max_len_a", "decode.max_len_b", "decode.length_penalty",
                  "train.label_smoothing", "optim.lr", "schedule.name", "schedule.warmup_steps"],
}
small = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 10**12, 2**64, 0.5, -0.5, 1e-12, math.nan, math.inf, -math.inf, "", "x", None, True, [1, 2], {"a": 1}]),
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
    args = ["train", RECIPES[task], "--out", out, "--overwrite", "-q", "--device", "cpu",
            *sets(TINY[task] + ["train.max_steps=1", "train.epochs=1", f"data.root={tmp / 'data'}"] + items)]
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
