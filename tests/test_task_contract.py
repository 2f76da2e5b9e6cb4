"""Every task in dlcli.tasks.TASKS is a module that provides the members of dlcli.tasks.contract.Task."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from dlcli.tasks import TASKS, get_config, get_task
from dlcli.tasks.contract import Task

ATTRIBUTES = sorted(Task.__annotations__)  # NAME, Config, RUN_KIND
METHODS = sorted(name for name, member in vars(Task).items() if inspect.isfunction(member) and not name.startswith("_"))


def test_the_contract_names_what_the_callers_use() -> None:
    assert ATTRIBUTES == ["Config", "NAME", "RUN_KIND"]
    assert {"build", "shape_signature", "restore_model", "eval_notes"} <= set(METHODS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_is_a_module_with_its_name_and_schema(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, ModuleType)
    assert task.NAME == name
    assert task.Config is get_config(name)
    assert isinstance(task.RUN_KIND, str) and task.RUN_KIND


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("method", METHODS)
def test_a_task_defines_each_hook_with_the_contracts_parameters(name: str, method: str) -> None:
    hook = getattr(get_task(name), method, None)
    assert callable(hook), f"task {name} has no {method}()"
    wanted = list(inspect.signature(getattr(Task, method)).parameters.values())[1:]  # without self
    given = list(inspect.signature(hook).parameters.values())
    assert [p.name for p in given[: len(wanted)]] == [p.name for p in wanted], (
        f"{name}.{method}{inspect.signature(hook)}"
    )
    assert [p.default for p in given[: len(wanted)]] == [p.default for p in wanted], f"{name}.{method}: defaults differ"
    extra = given[len(wanted) :]
    assert all(p.default is not inspect.Parameter.empty for p in extra), (
        f"{name}.{method}: extra parameters need defaults"
    )
