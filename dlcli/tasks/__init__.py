"""Tasks by the name a recipe gives in `task:`. One explicit table, no registration magic.

Each task is a module with the same small surface, declared in dlcli/tasks/contract.py (Task):
    NAME, Config, RUN_KIND        its name here, the recipe schema (a config.RunConfig subclass), "a tagger"
    build(cfg, runtime, load_weights=True) -> runner.Job
    shape_signature(config_dict)  recipe values a resumed run must keep
    restore_model(cfg, extra)     the model a checkpoint's weights fit, and what inference needs (dlcli.loading)
    eval_notes(cfg)               what `dl eval` prints beside the metrics ({} for most)

A task module imports torch, which takes a second or more; its Config is defined in a torch-free
`<module>_config.py` beside it. TASKS names both as strings, imported on first use, so that
`dl --help`, `dl configs` and `dl config show` start without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

from dlcli.errors import DlError

if TYPE_CHECKING:
    from dlcli.config import RunConfig
    from dlcli.tasks.contract import Task


class Entry(NamedTuple):
    module: str  # the module with the surface above (dlcli.tasks.contract.Task); importing it imports torch
    config: str  # "module:Class": the same class as the module's Config, from a module that does not import torch


# The one table of tasks: a recipe's `task:` -> where its code and its schema live.
TASKS: dict[str, Entry] = {
    "classify": Entry("dlcli.tasks.classify", "dlcli.tasks.classify_config:Config"),
    "word2vec": Entry("dlcli.tasks.word2vec", "dlcli.tasks.word2vec_config:Config"),
    "tag": Entry("dlcli.tasks.tag", "dlcli.tasks.sequence_config:TagConfig"),
    "seqclass": Entry("dlcli.tasks.seqclass", "dlcli.tasks.sequence_config:SeqConfig"),
    "lm": Entry("dlcli.tasks.lm", "dlcli.tasks.lm_config:Config"),
    "translate": Entry("dlcli.tasks.translate", "dlcli.tasks.translate_config:Config"),
    "style": Entry("dlcli.tasks.style", "dlcli.tasks.style_config:Config"),
}


def get_task(name: object) -> Task:
    """The task a recipe's `task:` names (imports torch)."""
    return _load(TASKS[_known(name)].module)


def get_config(name: object) -> type[RunConfig]:
    """The recipe schema of the task a recipe's `task:` names (torch-free)."""
    return _load(TASKS[_known(name)].config)


def _known(name: object) -> str:
    if not isinstance(name, str) or name not in TASKS:  # a recipe may say task: [] or task: 3
        raise DlError(f"Unknown task '{name}'. A recipe's `task:` is one of: {', '.join(TASKS)}.")
    return name


def _load(target: str) -> Any:
    """ "module" or "module:attribute" -> that module or attribute, importing the module."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
