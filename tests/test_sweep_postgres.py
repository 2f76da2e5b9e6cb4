"""dl sweep --storage postgresql://...: two processes, each with its own sweep folder as two machines would
have, share one study on a real PostgreSQL server that the test starts (skipped where the server's binaries,
the psycopg driver or, under root, the `postgres` user are missing)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sweep import METRIC, SMALL, _dl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary folder: its SQLAlchemy URL."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server here (initdb, pg_ctl)")
    pytest.importorskip("psycopg")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="dl-pg-"))  # under /tmp: the server's user must reach it
    home.chmod(0o755)
    data = home / "data"
    data.mkdir()
    if as_user:
        os.chown(data, owner.pw_uid, owner.pw_gid)
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "dl"], check=True, capture_output=True)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield f"postgresql://dl@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_machines_share_one_study_on_postgresql(cli, tmp_path, postgres):
    line = ["sweep", "pos_lstm", "--param", "optim.lr=loguniform:1e-3:3e-2", "--trials", "2", *METRIC, *SMALL]
    line += ["--storage", postgres]
    machines = [_dl(*line, "--out", str(tmp_path / f"machine{i}" / "sw"), env={"DL_THREADS": "1"}) for i in (1, 2)]
    errs = [proc.communicate(timeout=300)[1] for proc in machines]
    assert [proc.returncode for proc in machines] == [0, 0], errs
    ran = sorted(p.name for p in tmp_path.glob("machine*/sw/trial-*") if (p / "summary.json").is_file())
    assert ran == ["trial-0000", "trial-0001"]  # each trial on one machine only
    for machine in (1, 2):  # either machine's folder reads the whole study
        result = cli("sweep", "show", str(tmp_path / f"machine{machine}" / "sw"), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["counts"]["complete"] == 2
