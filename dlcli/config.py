"""Recipes: YAML -> a validated, typed config.

The typed config is the schema. Every key has a default and a one-line description
(`Field(description=...)`, shown by `dl config show`). The order of precedence is:
defaults, then the recipe file, then each `--set a.b=value` in the order given.

This module knows the sections every task shares (`train`, `optim`, `schedule`) and the
top-level keys (`task`, `name`, `seed`). Each task subclasses `RunConfig` to give its own
`model` and `data` sections, in a torch-free dlcli/tasks/<module>_config.py; `resolve_recipe`
picks the class from the recipe's `task:`. A `data` section is a DataSection: its BATCH says which
key sets the batch and what it counts, for the runner's global batch and out-of-memory hint.
"""

from __future__ import annotations

import difflib
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dlcli.errors import DlError

# Bounds every key shares. A number torch and numpy hold in int64 must fit it: past 2^63 they
# overflow (torch.manual_seed, tensor sizes, numpy seeds) with an exception, not a message.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The most items (images, sentences, pairs) a built-in generator makes for one split: they are
# drawn one by one in Python (shapes: ~1,300 images/s at 32 px), so 10^7 would run for hours.
MAX_GENERATED = 1_000_000
# The deepest stack a recipe may ask for (ResNet-1001 is about the deepest network published):
# building 10^9 layers runs for hours before memory runs out.
MAX_LAYERS = 1000
# The smallest side the shapes generator (dlcli/data/synthetic.py) draws at: the margin (radius up to
# 0.45 x side, plus half a pixel at 4x supersampling) must leave room for its centre, 0.9 x 4s + 4 <= 4s,
# so s >= 10. Here, so that a recipe is checked against it without importing the generator (torch).
SHAPES_MIN_SIZE = 10


class Section(BaseModel):
    """A block of a recipe: unknown keys are errors, values are checked on assignment.

    Every float key refuses NaN and +-inf (allow_inf_nan=False: a NaN lr or weight decay would
    only show up as a NaN loss steps later), and every integer, also inside lists, must fit int64.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _ints_fit_int64(cls, value: Any) -> Any:
        for number in _ints_in(value):
            if not INT64_MIN <= number <= INT64_MAX:
                raise ValueError("integers must fit 64 bits: -2^63 to 2^63 - 1")
        return value


@dataclass(frozen=True)
class BatchSize:
    """What one optimizer step of one process consumes, as a task's data section declares it (its
    BATCH): the runner prints the global batch and suggests a smaller one from it, knowing no task.

    key          the data key that sets it; None when it is fixed at one (style: one content x style pair)
    unit         what it counts: images, sentences, streams, pairs, tokens or words
    budget       a budget of tokens or words, not a count of examples: the global batch names its unit
                 ("8192 tokens"), where a count of examples is a bare number
    accumulates  whether train.grad_accum multiplies it (word2vec updates the vectors itself: it refuses grad_accum)
    """

    key: str | None
    unit: str
    budget: bool = False
    accumulates: bool = True


class DataSection(Section):
    """A task's `data:` section. Each declares its BATCH, so that no code guesses the batch key by name."""

    BATCH: ClassVar[BatchSize]


def _ints_in(value: Any) -> list[int]:
    """The integers in a value and in the lists, tuples and mappings it holds (not bools)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _ints_in(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _ints_in(item)]
    return []


# train.loggers' names: metrics.jsonl itself, then dlcli.trackers.TRACKERS (tests/test_trackers.py checks they agree).
LoggerName = Literal["jsonl", "tensorboard", "csv", "mlflow", "wandb"]


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="passes over the training data; sets the LR schedule's length")
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads for torch's ops (default: DL_THREADS, else the cores this process may run on)",
    )
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (the schedule keeps its length)"
    )
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="stop once this many minutes of the run (evaluations included) have passed; the schedule keeps its "
        "length unless train.fit_to_minutes",
    )
    fit_to_minutes: bool = Field(
        False,
        description="with max_minutes: after the first epoch, its validation included, train.epochs and the schedule's "
        "length become the whole epochs that fit max_minutes at that epoch's pace (the first epoch keeps the "
        "recipe's schedule; a resumed run keeps the fitted length)",
    )
    device: str = Field(
        "auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps; --device overrides"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that has it, else fp16 with a GradScaler; fp32 on CPU"
    )
    channels_last: Literal["auto", True, False] = Field(
        "auto", description="NHWC memory layout for conv nets (auto: on CUDA only)"
    )
    compile: bool = Field(False, description="torch.compile the model (first steps are slow while it compiles)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile mode; reduce-overhead uses CUDA graphs (cuts launch overhead on a GPU)"
    )
    sync_batchnorm: bool = Field(False, description="under DDP, BatchNorm statistics over all processes' batches")
    grad_accum: int = Field(1, ge=1, description="micro-batches summed into one optimizer step")
    clip_grad_norm: float | None = Field(None, gt=0, description="clip the global gradient norm to this value")
    eval_every: int = Field(1, ge=1, description="evaluate on the validation split every N epochs (and after the last)")
    log_every: int = Field(50, ge=1, description="optimizer steps between progress/metrics.jsonl log lines")
    checkpoint_every: int | None = Field(
        None, ge=1, description="also write last.pt every N optimizer steps (it is always written at epoch ends)"
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="a NaN/Inf training loss: stop (exit 1, naming the step; checked at log steps) or skip "
        "(drop that optimizer step's update, count and log it; checks the loss of every micro-batch and the "
        "gradients of every step: host syncs)",
    )
    max_skips_in_a_row: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="on_nonfinite=skip: stop (exit 1) after this many skipped steps in a row, "
        "since the weights or the data are then broken, not one batch",
    )
    loggers: list[LoggerName] = Field(
        default_factory=lambda: ["jsonl"],
        description="where the metrics go: jsonl (RUN/metrics.jsonl, the source of truth: always written, even when "
        "left out), tensorboard (RUN/tensorboard/), csv (RUN/metrics.csv), mlflow (train.mlflow_uri), wandb (offline "
        "under RUN/wandb/ unless WANDB_API_KEY is set); one that cannot start is a warning unless train.loggers_required "
        "(pip install 'dlcli[mlflow]', 'dlcli[wandb]', 'dlcli[tensorboard]')",
    )
    loggers_required: bool = Field(
        False,
        description="a logger of train.loggers that cannot start (package missing, server unreachable) stops the run "
        "before training (exit 2) instead of a warning",
    )
    mlflow_uri: str | None = Field(
        None,
        description="train.loggers mlflow: the tracking URI (http://host:5000, sqlite:///file.db; default "
        "MLFLOW_TRACKING_URI, else sqlite:///RUN/mlflow.db)",
    )
    tensorboard: bool = Field(
        False,
        description="the older switch for tensorboard in train.loggers (a missing package then stops the run, exit 2): "
        "metrics.jsonl's scalars in RUN/tensorboard/ (pip install 'dlcli[tensorboard]')",
    )
    ema: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="keep an exponential moving average of the weights and BatchNorm buffers with this decay per "
        "optimizer step (e.g. 0.999; null: off); each validation scores it beside the weights, and best.pt "
        "takes whichever scores better",
    )
    ema_warmup: int = Field(
        0,
        ge=0,
        description="train.ema: for this many optimizer steps the average copies the weights instead of averaging "
        "them, as torchvision's reference restarts its EMA through the LR warmup; averaging starts at the next step",
    )
    patience: int | None = Field(
        None,
        ge=1,
        description="stop early after this many evaluations in a row (every eval_every epochs) in which the task's "
        "best metric did not improve by more than min_delta (with ema: the better of the weights and the average); "
        "then last.pt, the test of best.pt and the summary as usual (null: off)",
    )
    min_delta: float = Field(
        0.0,
        ge=0,
        description="patience: how much (absolute, in the best metric's units) an evaluation must beat the best "
        "so far by to count as an improvement",
    )

    @field_validator("loggers", mode="before")
    @classmethod
    def _one_logger_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # --set train.loggers=mlflow


# torch.optim.Adam/AdamW raise ValueError outside [0, 1): a decay rate of 1 never forgets.
Beta = Annotated[float, Field(ge=0, lt=1)]


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("sgd", description="optimizer (torch.optim)")
    lr: float = Field(0.1, gt=0, description="peak learning rate (after warmup)")
    momentum: float = Field(0.9, ge=0, description="momentum (sgd, rmsprop)")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd)")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled for adamw)")
    norm_weight_decay: float | None = Field(
        None,
        ge=0,
        description="weight decay of normalization layers and biases (torchvision's --norm-weight-decay; "
        "default: weight_decay)",
    )
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam/AdamW moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="Adam/AdamW/RMSprop denominator epsilon")


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "linear", "inverse_sqrt", "plateau"] = Field(
        "cosine",
        description="learning-rate shape after warmup, stepped once per optimizer step "
        "(inverse_sqrt: lr x sqrt(warmup / step), the Transformer paper's decay; plateau: the peak lr, multiplied "
        "by factor whenever the validation's best metric has not improved for patience evaluations in a row)",
    )
    # Epoch counts become step counts (x steps per epoch): past 10^6 epochs that product can overflow a float.
    warmup_epochs: float = Field(0.0, ge=0, le=1e6, description="linear warmup from 0 over this many epochs")
    warmup_steps: int | None = Field(
        None, ge=0, description="linear warmup over this many steps (overrides warmup_epochs)"
    )
    step_epochs: float = Field(30.0, gt=0, le=1e6, description="step: multiply the lr by gamma every this many epochs")
    # gamma > 1 grows the lr geometrically until gamma ** k overflows a float (OverflowError).
    gamma: float = Field(0.1, gt=0, le=1, description="step: the factor (at most 1) applied at each step")
    min_lr: float = Field(
        0.0, ge=0, description="cosine/linear: the lr at the end of the schedule; plateau: the lowest its cuts go"
    )
    factor: float = Field(
        0.1, gt=0, lt=1, description="plateau: the lr is multiplied by this (0 < factor < 1) at each cut"
    )
    patience: int = Field(
        10,
        ge=1,
        description="plateau: cut the lr at the Nth evaluation in a row without an improvement of the best metric "
        "(torch's ReduceLROnPlateau patience N - 1); the count restarts after a cut",
    )
    min_delta: float = Field(
        0.0, ge=0, description="plateau: how much (absolute) an evaluation must beat the best so far by to improve"
    )
    total_steps: int | None = Field(
        None, ge=1, description="schedule length in steps (default: epochs x steps per epoch)"
    )


# Splits whose final metrics summary.json records ("val": the best checkpoint's validation; "test": its test).
EXPECT_SPLITS = ("val", "test")


class Expect(Section):
    """A recipe's stated result: what `dl train` reports it met or not, and `dl check` enforces (dlcli/expect.py)."""

    metric: str = Field(
        description="split.name of a final metric in summary.json (the best checkpoint's): test.top1, val.loss, "
        "test.bleu, val.analogy_accuracy"
    )
    value: float = Field(description="the result measured where `measured` says")
    tolerance: float = Field(
        0.0, ge=0, description="how far short of value still counts as met (seed, thread and machine spread)"
    )
    direction: Literal["auto", "higher", "lower"] = Field(
        "auto",
        description="which way is better: auto is lower for losses (loss, ppl, bpc; style's total, content, style, "
        "tv) and higher for the rest (accuracies, top1, bleu, chrf, exact)",
    )
    measured: str | None = Field(
        None, description="where the value was measured: machine and its yardstick, source (BENCHMARKS.md section)"
    )
    minutes: float | None = Field(None, gt=0, description="training minutes on that machine")

    @field_validator("metric")
    @classmethod
    def _split_and_name(cls, metric: str) -> str:
        split, _, name = metric.partition(".")
        if split not in EXPECT_SPLITS or not name:
            raise ValueError(
                f"a metric is split.name with split one of {', '.join(EXPECT_SPLITS)} (test.top1, val.loss)"
            )
        return metric


class RunConfig(Section):
    """The keys every recipe has. Tasks subclass it to type `model` and `data`."""

    task: str = Field(description="which task trains: classify")
    name: str = Field("run", description="run name; the run folder is runs/<name> unless --out")
    # numpy's seed sequences refuse negative seeds and torch.manual_seed overflows past 64 bits
    seed: int = Field(
        0, ge=0, lt=2**32, description="seeds the data, the model init and the data order (0 to 2^32 - 1)"
    )
    model: Section
    data: DataSection
    optim: OptimConfig = Field(default_factory=OptimConfig, description="the optimizer")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="the learning-rate schedule")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the training loop")
    expect: Expect | None = Field(
        None,
        description="the result this recipe should reach (metric, value, tolerance, measured): `dl train` says "
        "whether it was met, `dl check` exits 1 when not",
    )

    @model_validator(mode="after")
    def _fit_needs_a_budget(self) -> RunConfig:
        if self.train.fit_to_minutes and self.train.max_minutes is None:
            raise ValueError("train.fit_to_minutes fits the schedule to train.max_minutes; set train.max_minutes too")
        if self.train.fit_to_minutes and self.schedule.total_steps is not None:
            raise ValueError(
                "train.fit_to_minutes sets the schedule's length; remove schedule.total_steps or train.fit_to_minutes"
            )
        return self

    def metric_names(self) -> tuple[str, ...] | None:
        """The names (fnmatch patterns: precision.*) of the metrics this run's evaluations report (train.ema's
        ema_ copies aside); expect.metric is checked against them before training. None: not declared, so
        expect.metric is checked when the run ends. Each task's config overrides it."""
        return None

    def continues_training(self) -> bool:
        """True where --resume-from a checkpoint of other data starts a new run from its weights, the
        task's build taking the checkpoint as `start` (word2vec's data.update_vocab); False: it resumes."""
        return False


# --------------------------------------------------------------------------- loading


def recipes_dir() -> Path:
    """The recipes shipped with the package (`configs/` in the repository)."""
    return Path(str(importlib.resources.files("dlcli") / "configs"))


def list_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    """A recipe path, or the name of a bundled recipe (`resnet` or `resnet.yaml`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = recipes_dir() / (path.name if path.suffix else f"{path.name}.yaml")
    if bundled.is_file() and len(path.parts) <= 2:
        return bundled
    names = [p.stem for p in list_recipes()]
    close = difflib.get_close_matches(path.stem, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DlError(
        f"No recipe file '{name_or_path}'.{hint} Give a path to a YAML recipe or one of the bundled "
        f"recipes: {', '.join(names)} (`dl configs` lists them)."
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """safe_load a recipe; a syntax error names the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DlError(f"Cannot read recipe {path}: {e}") from e
    try:
        raw = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:  # a tag such as !!python/object/apply: never built
        raise DlError(f"Recipe {path}: {_refused_tag(e)}") from None
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DlError(f"Recipe {path} is not valid YAML{where}: {problem}. Fix the YAML syntax there.") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DlError(
            f"Recipe {path} must be a YAML mapping of keys (task:, model:, data:, ...), not {type(raw).__name__}."
        )
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings; each value is parsed as YAML (`3` is an int, `[1, 2]` a list)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise DlError(f"--set '{item}' is not of the form key.path=value (for example --set optim.lr=0.05).")
        try:
            value = yaml.safe_load(text)
        except yaml.constructor.ConstructorError as e:
            # A tag that builds an object: refused, not taken as the string it spells.
            raise DlError(f"--set {key}: {_refused_tag(e)}") from None
        except yaml.YAMLError:
            value = text  # not YAML: take it as a plain string
        set_key(raw, key, value)
    return raw


def _refused_tag(error: yaml.constructor.ConstructorError) -> str:
    """The message for a YAML tag safe_load will not construct (!!python/object/apply:os.system ...)."""
    mark = error.problem_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return (
        f"{error.problem}{where}. Recipes and --set values are plain YAML data (numbers, strings, lists, "
        "mappings), read with yaml.safe_load: tags that construct Python objects are refused and nothing is run. "
        "Remove the tag."
    )


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """raw["a"]["b"] = value for the key path "a.b", making the sections that are missing."""
    parts = key.split(".")
    if not all(parts):
        raise DlError(f"'{key}' is not a key path such as optim.lr.")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parts[: i + 1])
            raise DlError(f"--set {key}: '{section}' is a value, not a section.")
        node = child
    node[parts[-1]] = value


# {"train.epochs": 1} (values as they are) or ["train.epochs=1"] (values parsed as YAML, as --set)
Overrides = dict[str, Any] | Sequence[str] | None


def resolve_recipe(config: str | Path, overrides: Overrides = None) -> RunConfig:
    """A recipe resolved as `dl train` resolves it, validated against its task's schema. Torch-free
    (`dl config show`); api.load_config gives the task with it.

    Args:
        config: a recipe file, or a bundled recipe's name ("resnet").
        overrides: recipe keys to change: {"optim.lr": 0.05} or ["optim.lr=0.05"] (as --set).
    """
    from dlcli.tasks import get_config

    raw = read_yaml(find_recipe(str(config)))
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            set_key(raw, key, value)
    else:
        raw = apply_overrides(raw, [overrides] if isinstance(overrides, str) else list(overrides or []))
    return validate(raw, get_config(raw.get("task")))


def validate(raw: dict[str, Any], schema: type[RunConfig]) -> RunConfig:
    """Check raw recipe data against a task's schema; errors name the key path and a fix."""
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        raise DlError(_explain(e, schema)) from None


def _explain(error: ValidationError, schema: type[BaseModel]) -> str:
    lines = []
    for item in error.errors()[:5]:
        loc = [str(p) for p in item["loc"]]
        path = ".".join(loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            valid = _fields_at(schema, loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            suggestion = ".".join(loc[:-1] + close[:1])
            hint = f" Did you mean '{suggestion}'?" if close else ""
            lines.append(f"unknown key '{path}'.{hint} Valid keys here: {', '.join(valid)}.")
        elif item["type"] == "missing":
            lines.append(f"'{path}' is required: {_description(schema, loc)}.")
        else:
            got = item.get("input")
            lines.append(f"'{path}': {item['msg']} (got {got!r}). Expected: {_description(schema, loc)}.")
    more = f" (and {len(error.errors()) - 5} more)" if len(error.errors()) > 5 else ""
    return "Bad config" + more + ": " + " ".join(lines) + " `dl config show RECIPE` prints every key with its meaning."


def _fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    """The valid key names of the section at `loc` (empty when loc is not a section)."""
    model: Any = schema
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _description(schema: type[BaseModel], loc: list[str]) -> str:
    model: Any = schema
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None and field is not None:
            break  # an item of a list or tuple key (optim.betas.0): describe the key
        field = (fields or {}).get(part)
        if field is None:
            return "see `dl config show`"
        model = field.annotation
    if field is None:
        return "see `dl config show`"
    return (
        f"{_type_name(field.annotation)} — {field.description}" if field.description else _type_name(field.annotation)
    )


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "null")


# --------------------------------------------------------------------------- showing


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain data (YAML/JSON-safe) for the run folder and the checkpoint."""
    return cfg.model_dump(mode="json")


def render_yaml(cfg: BaseModel, comments: bool = True) -> str:
    """The resolved config as YAML, each key followed by its description as a comment."""
    lines: list[str] = []
    _render(cfg, 0, lines, comments)
    return "\n".join(lines) + "\n"


def _render(node: BaseModel, indent: int, lines: list[str], comments: bool) -> None:
    pad = "  " * indent
    for name, field in type(node).model_fields.items():
        value = getattr(node, name)
        note = f"  # {field.description}" if comments and field.description else ""
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{note}")
            _render(value, indent + 1, lines, comments)
        else:
            dumped = yaml.safe_dump(_plain(value), default_flow_style=True, width=10_000).strip()
            if dumped.endswith("\n..."):
                dumped = dumped[: -len("\n...")]
            dumped = dumped.removesuffix("...").strip()
            lines.append(f"{pad}{name}: {dumped}{note}")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value
