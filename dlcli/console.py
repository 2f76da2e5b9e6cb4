"""Human-facing output: rich consoles, tqdm bars, and the metrics.jsonl writer (its mirrors: dlcli/trackers.py).

Answers (tables, JSON) go to stdout; logs and progress bars go to stderr, so that
`dl ... --json | jq` sees one JSON document and nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from tqdm import tqdm

out = Console(highlight=False, soft_wrap=True)
log = Console(stderr=True, highlight=False, soft_wrap=True)


class Logger:
    """Logs and progress bars of one process; silent when `quiet` or not the main rank."""

    def __init__(self, quiet: bool = False, enabled: bool = True):
        self.quiet = quiet
        self.enabled = enabled

    def info(self, message: str, markup: bool = True) -> None:
        if self.enabled and not self.quiet:
            log.print(message, markup=markup)

    def warn(self, message: str) -> None:
        if self.enabled:
            log.print(f"[yellow]warning:[/] {message}")

    def bar(self, total: int, desc: str, initial: int = 0, unit: str = "step") -> tqdm:
        """A tqdm bar with rate and ETA; disabled when quiet or stderr is not a terminal."""
        disable = self.quiet or not self.enabled or not sys.stderr.isatty()
        return tqdm(
            total=total, initial=initial, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True
        )


class MetricsFile:
    """metrics.jsonl: one JSON object per log event, appended and flushed line by line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: TextIO | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            torn = _ends_mid_line(self.path)  # a process killed mid-write left half a line
            self._file = open(self.path, "a", encoding="utf-8")
            if torn:  # end it, so that the half line is the only record lost, not this one too
                self._file.write("\n")
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()

    def size(self) -> int:
        """Bytes written so far (every record is flushed): where a checkpoint taken now has logged to."""
        if self._file is not None:
            return self._file.tell()
        return self.path.stat().st_size if self.path.is_file() else 0

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes (a resumed run logs the steps after its checkpoint
        again, so their first records go). A shorter file is left as it is."""
        if self.path.is_file() and self.path.stat().st_size > size:
            os.truncate(self.path, size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def warn(message: str) -> None:
    """A warning from code that has no Logger (the data readers), on the main process only.

    The message is the user's text (file names with brackets), so it is shown as is, not as markup.
    """
    if int(os.environ.get("RANK", "0")) == 0:
        log.print(f"[yellow]warning:[/] {escape(message)}")


def print_json(data: Any) -> None:
    """The one JSON document a --json command prints on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout. At a terminal it fits the screen; piped or redirected, it is printed at its
    full width instead, so that no cell is cut or wrapped to fit a screen it is not shown on
    (`dl runs | grep`, `dl configs > recipes.txt`)."""
    if out.is_terminal:
        out.print(table)
        return
    Console(file=out.file, width=full_width(table), highlight=False, soft_wrap=True).print(table)


def full_width(table: Table) -> int:
    """The width a table takes when no column has to wrap."""
    return Measurement.get(out, out.options.update_width(100_000), table).maximum


def fmt_metrics(metrics: dict[str, float]) -> str:
    """The headline metrics on one line; per-class ones ("precision.NOUN") stay in metrics.jsonl and `dl eval`."""
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if "." not in k)


def per_class_table(metrics: dict[str, float]) -> Table | None:
    """Metrics named "<measure>.<class>" as a table: a row per class, a column per measure."""
    classes: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        measure, dot, name = key.partition(".")
        if dot:
            classes.setdefault(name, {})[measure] = value
    if not classes:
        return None
    measures = sorted({m for row in classes.values() for m in row})
    table = Table("class", *measures)
    for name in sorted(classes):
        table.add_row(name, *(f"{classes[name][m]:.4f}" if m in classes[name] else "-" for m in measures))
    return table
