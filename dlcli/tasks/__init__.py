"""Tasks by the name a recipe gives in `task:`. One explicit table, no registration magic.

Each task module has the same small surface:
    Config                        the recipe schema (a config.RunConfig subclass)
    build(cfg, runtime, load_weights=True) -> runner.Job
    shape_signature(config_dict)  recipe values a resumed run must keep
"""

from types import ModuleType

from dlcli.errors import DlError
from dlcli.tasks import classify, lm, sequence, style, translate, word2vec

TASKS: dict[str, ModuleType | type] = {
    "classify": classify,
    "word2vec": word2vec,
    "tag": sequence.Tagging,
    "seqclass": sequence.SequenceClassification,
    "lm": lm,
    "translate": translate,
    "style": style,
}


def get_task(name: object) -> ModuleType | type:
    if not isinstance(name, str) or name not in TASKS:  # a recipe may say task: [] or task: 3
        raise DlError(f"Unknown task '{name}'. A recipe's `task:` is one of: {', '.join(TASKS)}.")
    return TASKS[name]
