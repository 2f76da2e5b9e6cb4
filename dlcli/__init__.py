"""dlcli: the landmark models of deep learning, trained and run from YAML recipes (`dl`).

from dlcli import load_run, train      # the Python API: dlcli/api.py
"""

from dlcli import threads

__version__ = "0.1.0"

# Before torch is loaded (libgomp reads its settings then): see dlcli/threads.py.
threads.configure()

__all__ = ["Run", "__version__", "load_run", "train"]

# The API imports torch and every task; `import dlcli` stays cheap by
# importing it only when one of these names is first used.
_API_NAMES = ("Run", "load_run", "train")


def __getattr__(name: str):
    if name in _API_NAMES:
        from dlcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlcli' has no attribute {name!r}")
