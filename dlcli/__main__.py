"""`python -m dlcli ...` is `dl ...` (and what torchrun launches)."""

from dlcli.cli import app

app(prog_name="dl")
