"""The contract between a task module and the code that uses it (the runner, the CLI, the Python API,
dlcli.loading).

A task is a module that defines every member of `Task` at module level (PEP 544: a module can
satisfy a Protocol). A task with nothing to add for an optional hook still defines it, trivially
(`def eval_notes(cfg): return {}`), so callers never ask `hasattr`. tests/test_task_contract.py
checks every module in dlcli.tasks.TASKS against this class.

Torch-free at import, as dlcli.tasks is: the types it names are for annotations only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import nn

    from dlcli.config import RunConfig
    from dlcli.runner import Job
    from dlcli.runtime import Runtime


class Task(Protocol):
    """What a task module provides."""

    NAME: str  # the recipe's `task:`, the key of dlcli.tasks.TASKS
    Config: type[RunConfig]  # the recipe schema; defined in the torch-free <module>_config.py beside it
    RUN_KIND: str  # what a run of this task is, as error messages name it: "a language model"

    def build(self, cfg: Any, runtime: Runtime, load_weights: bool = True) -> Job:
        """The model, its data and its steps for the runner. load_weights=False: no pretrained
        files are read (the weights come from a checkpoint: resume, dl eval)."""
        ...

    def shape_signature(self, config: dict[str, Any]) -> dict[str, Any]:
        """Recipe values ("model.hidden_size": 256, ...) that a resumed run must keep: they shape the weights."""
        ...

    def restore_model(self, cfg: Any, extra: dict[str, Any]) -> tuple[nn.Module | None, dict[str, Any]]:
        """The model shaped as a checkpoint's weights (not loaded: dlcli.loading does that) from its config
        and `extra`, and what inference needs besides ({"vocab": ...}, {"classes": [...]}); no data is read.
        (None, {}) where a run has no model to use (style: its outputs are images)."""
        ...

    def eval_notes(self, cfg: Any) -> dict[str, str]:
        """What `dl eval` prints beside the metrics (translate: sacreBLEU's signatures); {} for most tasks."""
        ...
