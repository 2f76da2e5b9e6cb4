"""`dl --help`, `dl --version`, `dl configs` and `dl config show` start without torch; so does an inference
command's refusal when no run is named or found.

Importing torch (and numba, torchvision) takes a second or more; the commands that only print
help or read recipes import none of it. Each check runs in a fresh interpreter, since this one
has torch loaded already (conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlcli.config import list_recipes
from dlcli.tasks import TASKS, get_config, get_task

HEAVY = ("torch", "torchvision", "numba", "numpy")  # numpy: the task modules' data code


def loaded_in_fresh_python(code: str) -> dict:
    """Run `code` in a new interpreter; it prints one JSON document on its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_torch() -> None:
    code = f"import json, sys; import dlcli.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    assert loaded_in_fresh_python(code) == []


def test_python_m_dlcli_version_loads_no_torch() -> None:
    # the entry point itself (dlcli/__main__.py), as `dl --version` runs it; the check runs at exit
    code = (
        "import atexit, json, runpy, sys\n"
        f"atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules])))\n"
        "sys.argv = ['dl', '--version']\n"
        "runpy.run_module('dlcli', run_name='__main__')\n"
    )
    assert loaded_in_fresh_python(code) == []


def commands_that_start_without_torch() -> list[list[str]]:
    from typer.main import get_command

    from dlcli.cli import app

    group = get_command(app)
    helps = [["--help"], ["config", "--help"], ["config", "show", "--help"]]
    helps += [[name, "--help"] for name in group.commands if name != "config"]
    shows = [["config", "show", str(path)] for path in list_recipes()]
    return [["--version"], *helps, ["configs"], ["configs", "--json"], *shows]


def test_help_configs_and_config_show_load_no_torch() -> None:
    """Every command's --help, dl configs and dl config show of every bundled recipe, in one fresh
    interpreter (one start-up instead of forty): the first command that loads torch is named."""
    commands = commands_that_start_without_torch()
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli import app\n"
        "report = []\n"
        f"for args in {commands!r}:\n"
        "    result = CliRunner().invoke(app, args)\n"
        f"    report.append([args, result.exit_code, [m for m in {HEAVY!r} if m in sys.modules]])\n"
        "print(json.dumps(report))\n"
    )
    report = loaded_in_fresh_python(code)
    assert len(report) == len(commands) > 30
    for args, exit_code, heavy in report:
        assert exit_code == 0, args
        assert heavy == [], f"dl {' '.join(args)} imported {heavy}"


def test_no_run_is_said_before_torch_loads() -> None:
    """The commands that answer with a run, given no --run and finding none under runs/ (tests/test_newest_run.py),
    stop (exit 2) before they load torch or numpy: one fresh interpreter, run from a folder with no runs/."""
    commands = [
        ["tag", "I watch ."],
        ["generate"],
        ["translate", "three"],
        ["predict", "cat.png"],
        ["analogy", "king", "man", "woman"],
        ["similar", "king"],
        ["similarity", "cat", "dog"],
    ]
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli import app\n"
        "report = []\n"
        f"for args in {commands!r}:\n"
        "    result = CliRunner().invoke(app, args)\n"
        f"    report.append([args, result.exit_code, [m for m in {HEAVY!r} if m in sys.modules]])\n"
        "print(json.dumps(report))\n"
    )
    for args, exit_code, heavy in loaded_in_fresh_python(code):
        assert (exit_code, heavy) == (2, []), args


@pytest.mark.parametrize("task", list(TASKS))
def test_each_tasks_torch_free_schema_is_its_config(task: str) -> None:
    assert get_config(task) is get_task(task).Config
