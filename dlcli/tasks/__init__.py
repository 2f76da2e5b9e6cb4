"""Tasks by the name a recipe gives in `task:`. One explicit table, no registration magic.

Each task is a module with the same small surface, declared in dlcli/tasks/contract.py (Task):
    NAME, Config, RUN_KIND        its name here, the recipe schema (a config.RunConfig subclass), "a tagger"
    build(cfg, runtime, load_weights=True) -> runner.Job
    shape_signature(config_dict)  recipe values a resumed run must keep
    restore_model(cfg, extra)     the model a checkpoint's weights fit, and what inference needs (dlcli.loading)
    eval_notes(cfg)               what `dl eval` prints beside the metrics ({} for most)

A task module imports torch, which takes a second or more; its Config is defined in a torch-free
`<module>_config.py` beside it. Both tables name modules as strings, imported on first use, so that
`dl --help`, `dl configs` and `dl config show` start without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dlcli.errors import DlError

if TYPE_CHECKING:
    from dlcli.config import RunConfig
    from dlcli.tasks.contract import Task

# task -> the module that has the surface above (dlcli.tasks.contract.Task)
TASKS: dict[str, str] = {
    "classify": "dlcli.tasks.classify",
    "word2vec": "dlcli.tasks.word2vec",
    "tag": "dlcli.tasks.tag",
    "seqclass": "dlcli.tasks.seqclass",
    "lm": "dlcli.tasks.lm",
    "translate": "dlcli.tasks.translate",
    "style": "dlcli.tasks.style",
}

# task -> its Config, the same class as get_task(task).Config, from a module that does not import torch
CONFIGS: dict[str, str] = {
    "classify": "dlcli.tasks.classify_config:Config",
    "word2vec": "dlcli.tasks.word2vec_config:Config",
    "tag": "dlcli.tasks.sequence_config:TagConfig",
    "seqclass": "dlcli.tasks.sequence_config:SeqConfig",
    "lm": "dlcli.tasks.lm_config:Config",
    "translate": "dlcli.tasks.translate_config:Config",
    "style": "dlcli.tasks.style_config:Config",
}


def get_task(name: object) -> Task:
    """The task a recipe's `task:` names (imports torch)."""
    return _load(TASKS[_known(name)])


def get_config(name: object) -> type[RunConfig]:
    """The recipe schema of the task a recipe's `task:` names (torch-free)."""
    return _load(CONFIGS[_known(name)])


def _known(name: object) -> str:
    if not isinstance(name, str) or name not in TASKS:  # a recipe may say task: [] or task: 3
        raise DlError(f"Unknown task '{name}'. A recipe's `task:` is one of: {', '.join(TASKS)}.")
    return name


def _load(target: str) -> Any:
    """ "module" or "module:attribute" -> that module or attribute, importing the module."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
