"""slurm/cluster.sh's own decisions, without starting any daemon (issue 16, Slurm item 9): free ports
are checked and picked, waits are bounded by time, MariaDB is judged ready by a query, and 'up'
refuses a folder it did not make."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

CLUSTER_SH = REPO / "slurm" / "cluster.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="slurm/cluster.sh is a bash script")


def _sh(script: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``script`` in bash with cluster.sh's functions sourced."""
    return subprocess.run(["bash", "-c", f"source {CLUSTER_SH}\n{script}"], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listen(port: int | None = None) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port or 0))
    s.listen()
    return s


def test_ports_skip_a_taken_default_block():
    held = _listen(6817) if _bindable(6817) else None  # 6817 taken: by us, or already by another cluster
    try:
        proc = subprocess.run([str(CLUSTER_SH), "ports"], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "ALBENCH_SLURM_PORT"})
        assert proc.returncode == 0, proc.stderr
        ports = [int(p) for p in proc.stdout.split()]
        assert len(ports) == 4 and ports == list(range(ports[0], ports[0] + 4))
        assert 6817 not in ports and all(_bindable(p) for p in ports)
    finally:
        if held:
            held.close()


def test_a_taken_explicit_port_is_refused_naming_it():
    held = _listen()
    port = held.getsockname()[1]
    try:
        proc = subprocess.run([str(CLUSTER_SH), "ports"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "ALBENCH_SLURM_PORT": str(port)})
    finally:
        held.close()
    assert proc.returncode == 1 and f"port {port} (ALBENCH_SLURM_PORT={port} + 0) is taken" in proc.stderr


def test_waits_are_bounded_by_time_not_by_probe_count(tmp_path):
    """A probe that takes 1 s: a 3 s wait tries it about 3 times (a count-based loop of 0.5 s steps
    would try it 6 times, for 9 s)."""
    calls = tmp_path / "calls"
    proc = _sh(f"wait_for 3 'a slow probe' bash -c 'echo x >> {calls}; sleep 1; false' || echo rc=$?")
    assert "rc=1" in proc.stdout and "gave up waiting for a slow probe after 3 s" in proc.stderr
    assert 1 <= len(calls.read_text().split()) <= 4


def test_mariadb_is_ready_when_it_answers_a_query_not_when_its_socket_exists(tmp_path):
    sock_path = tmp_path / "mysqld.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))  # the socket file exists, the server does not answer yet
    fake = tmp_path / "bin"
    fake.mkdir()
    client = fake / "mariadb"
    try:
        client.write_text("#!/bin/sh\necho 'ERROR 2002 (HY000): cannot connect' >&2\nexit 1\n")
        client.chmod(0o755)
        env = {"PATH": f"{fake}:{os.environ['PATH']}"}
        assert _sh(f"mariadb_ready {sock_path} && echo ready || echo not", env).stdout.strip() == "not"
        client.write_text("#!/bin/sh\necho 1\n")  # the server answers SELECT 1
        assert _sh(f"mariadb_ready {sock_path} && echo ready || echo not", env).stdout.strip() == "ready"
    finally:
        server.close()


def test_up_refuses_a_folder_it_did_not_make_and_touches_nothing(tmp_path):
    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = _sh(f"prepare_dir {mine}; echo went-on")
    assert proc.returncode == 1 and "went-on" not in proc.stdout
    assert "is not empty and holds no cluster of this script" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # an empty folder, or none, is taken as it is
    (tmp_path / "empty").mkdir()
    assert "went-on" in _sh(f"prepare_dir {tmp_path / 'empty'}; prepare_dir {tmp_path / 'new'}; echo went-on").stdout


def test_up_starts_afresh_on_a_stopped_cluster_folder(tmp_path):
    old = tmp_path / "cluster"
    for sub in ("etc", "state/ctld", "run", "log", "munge", "mysql"):
        (old / sub).mkdir(parents=True)
    (old / "etc" / "slurm.conf").write_text("ClusterName=albench\n")
    (old / "state" / "ctld" / "job_state").write_text("old jobs")
    (old / "run" / "slurmctld.pid").write_text("999999999\n")  # stale: no such process
    proc = _sh(f"prepare_dir {old}; echo went-on")
    assert "went-on" in proc.stdout, proc.stderr
    assert list(old.iterdir()) == []  # the old state and database are gone: job ids restart at 1


def test_up_refuses_a_folder_whose_daemons_run(tmp_path):
    live = tmp_path / "cluster"
    (live / "etc").mkdir(parents=True)
    (live / "run").mkdir()
    (live / "etc" / "slurm.conf").write_text("ClusterName=albench\n")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (live / "run" / "munged.pid").write_text(f"{sleeper.pid}\n")
        # a live process named as the pid file says: pretend 'sleep' is munged for this check
        proc = _sh(f"DAEMONS=(sleep); mv {live}/run/munged.pid {live}/run/sleep.pid; prepare_dir {live}; echo went-on")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1 and "holds a running cluster" in proc.stderr
    assert (live / "etc" / "slurm.conf").exists()
