"""What a sweep varies: `--param KEY=SPEC`, `--grid KEY=V1,V2` and `--seeds N`, parsed and checked
against the recipe before anything runs. Torch-free and Optuna-free (sweep.py hands these to Optuna).

    --param optim.lr=loguniform:1e-4:1e-1      a float, sampled on a log scale
    --param optim.lr=uniform:0.01:0.1          a float
    --param data.batch_size=int:16:128         a whole number (logint:16:128 on a log scale)
    --param data.batch_size=choice:64,128      one of the listed values
    --grid optim.lr=1e-3,3e-3                  every value, crossed with the other --grid keys and the seeds
    --seeds 3                                  each grid cell with seeds seed, seed+1, seed+2 (the recipe's seed)

Values are read as `--set` reads them (YAML: `64` an int, `1e-3` a float, `adamw` a string).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

import yaml

from dlcli.config import set_key, validate
from dlcli.errors import DlError

KINDS = ("uniform", "loguniform", "int", "logint", "choice")


@dataclass(frozen=True)
class Param:
    """One sampled key: a range (`low`..`high`, on a log scale when `log`) or a list of `choices`."""

    key: str
    kind: str  # one of KINDS
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "logint")

    def extremes(self) -> list[Any]:
        """The values that bound what this parameter can take: each checked against the recipe's schema."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "logint"):
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class Space:
    """Everything a sweep varies. `grid` holds the crossed values, seeds included as the key `seed`."""

    params: tuple[Param, ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def cells(self) -> list[dict[str, Any]]:
        """The grid's cells, each a {key: value} (one empty cell when there is no grid)."""
        keys = [key for key, _ in self.grid]
        return [dict(zip(keys, values)) for values in itertools.product(*(values for _, values in self.grid))]


def parse(params: list[str], grid: list[str], seeds: int | None, base_seed: int) -> Space:
    """The space the flags describe; DlError (exit 2) naming the flag for anything malformed."""
    parsed = tuple(_param(item) for item in params)
    cells = [_grid(item) for item in grid]
    if seeds is not None:
        if seeds < 1:
            raise DlError(f"--seeds {seeds}: give how many seeds to run each grid cell with, 1 or more.")
        cells.append(("seed", tuple(range(base_seed, base_seed + seeds))))
    keys = [p.key for p in parsed] + [key for key, _ in cells]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise DlError(f"{', '.join(repeated)}: given more than once in --param/--grid/--seeds; give each key once.")
    return Space(params=parsed, grid=tuple(cells))


def check_against(raw: dict[str, Any], schema: type, space: Space) -> None:
    """Validate the recipe (`raw`: read, --set applied) with each value the sweep can set (a range's ends,
    every choice and grid value) so that an unknown key or a value the schema refuses is exit 2 now, not
    a failed trial later."""
    probes = [(p.key, value) for p in space.params for value in p.extremes()]
    probes += [(key, value) for key, values in space.grid for value in values]
    for key, value in probes:
        probe = copy.deepcopy(raw)
        set_key(probe, key, value)
        try:
            validate(probe, schema)
        except DlError as e:
            raise DlError(f"The sweep sets {key}={value!r}, which the recipe refuses: {e}") from None


def _param(item: str) -> Param:
    key, spec = _split(item, "--param", "optim.lr=loguniform:1e-4:1e-1")
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise DlError(
            f"--param {item}: '{kind}' is not a kind of range; use one of {', '.join(KINDS)} "
            "(for example optim.lr=loguniform:1e-4:1e-1 or data.batch_size=choice:64,128)."
        )
    if kind == "choice":
        choices = tuple(_values(rest, f"--param {item}"))
        return Param(key, kind, choices=choices)
    ends = rest.split(":")
    numbers = [_number(text, item) for text in ends] if len(ends) == 2 else []
    if len(numbers) != 2:
        raise DlError(f"--param {item}: a {kind} range is {kind}:LOW:HIGH (for example {kind}:1:10).")
    low, high = numbers
    if kind in ("int", "logint") and not all(float(n).is_integer() for n in numbers):
        raise DlError(f"--param {item}: an {kind} range takes whole numbers, not {low} and {high}.")
    if not low < high:
        raise DlError(f"--param {item}: LOW must be below HIGH (got {low} and {high}).")
    if kind in ("loguniform", "logint") and low <= 0:
        raise DlError(f"--param {item}: a log-scale range needs LOW > 0 (got {low}).")
    return Param(key, kind, low=low, high=high)


def _grid(item: str) -> tuple[str, tuple[Any, ...]]:
    key, spec = _split(item, "--grid", "optim.lr=1e-3,3e-3")
    return key, tuple(_values(spec, f"--grid {item}"))


def _split(item: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, spec = item.partition("=")
    key = key.strip()
    if not sep or not key or not spec.strip() or any(not part for part in key.split(".")):
        raise DlError(f"{flag} '{item}' is not of the form KEY=SPEC (for example {flag} {example}).")
    return key, spec.strip()


def _values(text: str, flag: str) -> list[Any]:
    values = [_yaml_value(part.strip(), flag) for part in text.split(",")]
    if not values or any(v is None for v in values):
        raise DlError(f"{flag}: list the values separated by commas, none empty (for example 64,128).")
    if len({repr(v) for v in values}) != len(values):
        raise DlError(f"{flag}: a value is listed twice.")
    return values


def _yaml_value(text: str, flag: str) -> Any:
    """A value as --set reads it, except that 1e-3 (a string to YAML 1.1) is the number it looks like."""
    if not text:
        return None
    try:
        return float(text) if _looks_like_exponent(text) else yaml.safe_load(text)
    except yaml.constructor.ConstructorError:
        raise DlError(f"{flag}: '{text}' is a YAML tag; give plain values.") from None
    except yaml.YAMLError:
        return text


def _looks_like_exponent(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower() and "." not in text and not text.lower().startswith(("inf", "nan"))


def _number(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DlError(f"--param {item}: '{text}' is not a number.") from None
    if not math.isfinite(value):
        raise DlError(f"--param {item}: '{text}' is not a finite number.")
    return value
