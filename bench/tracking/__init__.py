"""Optional experiment trackers (TensorBoard, MLflow) fed by the cycle loop.

The engine calls one :class:`Tracker` at fixed points of a run: when it starts or resumes
(:meth:`Tracker.open`), after every training epoch (:meth:`Tracker.epoch`), after every recorded
cycle (:meth:`Tracker.cycle`) and when the run completes or fails. Trackers only mirror what the
records hold; the records stay the truth.

Steps. Cycle scalars (the task metric, ``n_labeled``, the test loss and each phase's seconds) are
logged at step = the cycle index (0 = the initial labeled set); the train loss at step = the global
epoch: the epochs trained in earlier cycles + the 0-based epoch (``cycle * train.epochs + epoch``
unless ``train.min_steps`` lengthened a cycle). Each (tag, step) is logged at most once: on a
resume a tracker reads back the steps it already holds, logs the finished cycles it is missing (a
crash between the checkpoint and the tracker) and skips the epochs a mid-cycle resume trains again.

Backends register in :data:`TRACKERS` (a name in ``tracking:`` -> its class); each is imported only
when asked for, so neither library is needed unless a config turns it on.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Backend:
    """A tracker backend: where its class lives and the package (and extra) it needs."""

    module: str  # albench.tracking.<module>, imported only when the backend is used
    cls: str
    package: str  # the importable package it needs
    extra: str  # the albench extra that installs it


TRACKERS: dict[str, Backend] = {
    "tensorboard": Backend("tensorboard_tracker", "TensorBoardTracker", "tensorboard", "tensorboard"),
    "mlflow": Backend("mlflow_tracker", "MLflowTracker", "mlflow", "mlflow"),
}


def missing_package(name: str) -> str | None:
    """The pip command that installs backend ``name``'s package, or None when it is importable."""
    b = TRACKERS[name]
    if importlib.util.find_spec(b.package) is not None:
        return None
    return f"pip install 'albench[{b.extra}]'"


# ---------------------------------------------------------------------------------------------
# MLflow tracking URIs, checked when the config is loaded

# URI schemes MLflow's tracking client takes (a database URI may name its driver: postgresql+psycopg2)
MLFLOW_SCHEMES = ("file", "http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql")
# Each MLflow request gets MLFLOW_TRIES tries of at most MLFLOW_TIMEOUT_S seconds, with a backoff of
# MLFLOW_BACKOFF_S x 2**k between them, unless the MLFLOW_HTTP_REQUEST_* environment variables say
# otherwise: an unreachable server fails the run within about MLFLOW_MAX_WAIT_S seconds (MLflow's
# own defaults retry for over four minutes). The server is also tried once at load time.
MLFLOW_TRIES = 3
MLFLOW_TIMEOUT_S = 10
MLFLOW_BACKOFF_S = 1
MLFLOW_MAX_WAIT_S = MLFLOW_TRIES * MLFLOW_TIMEOUT_S + sum(MLFLOW_BACKOFF_S * 2 ** k for k in range(MLFLOW_TRIES - 1))
REACH_TIMEOUT_S = 5  # the load-time connection test


def check_mlflow_uri(uri: str, field: str) -> None:
    """ConfigError naming ``field`` unless ``uri`` is a tracking URI MLflow can use: a local folder
    (a path or ``file:`` URI) that can be created (not under a file, not in /proc, /sys or /dev), an
    ``http(s)://host`` server, ``databricks``, or a database URI (sqlite, postgresql, mysql, mssql)
    whose local file, if any, can be created."""
    from urllib.parse import urlparse

    from albench.errors import ConfigError
    from albench.paths import check_path_text

    fix = (f"set {field} to a local folder such as 'mlruns', a server such as 'http://host:5000', or a "
           "database URI such as 'sqlite:///mlflow.db'")
    if any(ord(c) < 32 for c in uri):
        raise ConfigError(field, "holds a control character (a NUL byte, a newline)", fix, uri)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower().split("+", 1)[0]
    if scheme == "" or (scheme == "file"):
        folder = parsed.path if scheme == "file" else uri
        check_path_text(folder, field, fix)
        _check_creatable(Path(folder).expanduser(), field, fix, uri, folder=True)
        return
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError(field, f"uses the scheme '{parsed.scheme}:', which MLflow cannot track to", fix, uri)
    if scheme in ("http", "https"):
        try:
            port = parsed.port
        except ValueError:
            raise ConfigError(field, "has a port that is not a number in 0..65535", fix, uri) from None
        if not parsed.hostname:
            raise ConfigError(field, "names no host", fix, uri)
        del port
    if scheme == "sqlite":
        db = parsed.path[1:] if parsed.path.startswith("//") else parsed.path  # sqlite:////abs or sqlite:///rel
        if db and db != ":memory:":
            check_path_text(db, field, fix)
            _check_creatable(Path(db).expanduser(), field, fix, uri, folder=False)


def _check_creatable(p: Path, field: str, fix: str, uri: str, *, folder: bool) -> None:
    from albench.paths import check_creatable

    check_creatable(p, field, fix, uri, folder=folder)


def check_mlflow_reachable(uri: str, field: str) -> None:
    """ConfigError naming ``field`` when ``uri`` names an http(s) server that does not accept a
    connection within :data:`REACH_TIMEOUT_S` seconds (other URIs pass)."""
    import socket
    from urllib.parse import urlparse

    from albench.errors import ConfigError

    parsed = urlparse(uri)
    if parsed.scheme.lower() not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, UnicodeError) as exc:
        raise ConfigError(field, f"names a server that cannot be reached: {parsed.hostname}:{port} "
                          f"({getattr(exc, 'strerror', None) or exc or 'timed out'}; tried for up to "
                          f"{REACH_TIMEOUT_S} s)", f"start the MLflow server, fix {field}, or remove it", uri) from None


def cycle_scalars(row: dict) -> dict[str, float]:
    """The scalars of one cycles.csv row, by tag: ``cycle/<metric>``, ``cycle/n_labeled``,
    ``cycle/test_loss`` (nats) and ``seconds/<phase>`` (wall seconds, ``seconds/total`` included)."""
    out = {f"cycle/{row['metric']}": float(row["value"]), "cycle/n_labeled": float(row["n_labeled"])}
    if row.get("test_loss") is not None:
        out["cycle/test_loss"] = float(row["test_loss"])
    for key, value in row.items():
        if key.startswith("seconds_"):
            out[f"seconds/{key[len('seconds_'):]}"] = float(value)
    return out


class Tracker:
    """One run's tracker. The base class tracks nothing (tracking off)."""

    def open(self, *, config: dict, identity: dict, rows: list[dict], resumed: bool) -> dict:
        """Start (``resumed`` False) or take up the run; log every finished cycle of ``rows`` not yet
        logged. Returns plain data to record in run.json under ``tracking`` (may be empty)."""
        return {}

    def epoch(self, *, cycle: int, epoch: int, step: int, loss: float) -> None:
        """The mean train loss (nats) of 0-based ``epoch`` of ``cycle``; ``step`` is its global epoch."""

    def cycle(self, row: dict) -> None:
        """A finished cycle's cycles.csv row."""

    def finish(self, run_dir: Path) -> None:
        """The run completed: attach its records and close."""

    def fail(self, error: str) -> None:
        """The run failed (it may be resumed later): close, keeping what was logged."""


class MultiTracker(Tracker):
    """Several trackers as one, called in order."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def open(self, **kw: Any) -> dict:
        out: dict = {}
        for t in self.trackers:
            out.update(t.open(**kw))
        return out

    def epoch(self, **kw: Any) -> None:
        for t in self.trackers:
            t.epoch(**kw)

    def cycle(self, row: dict) -> None:
        for t in self.trackers:
            t.cycle(row)

    def finish(self, run_dir: Path) -> None:
        for t in self.trackers:
            t.finish(run_dir)

    def fail(self, error: str) -> None:
        for t in self.trackers:
            t.fail(error)


def make_tracker(tracking, *, run_dir: Path, sweep: str, run_id: str) -> Tracker:
    """The tracker the ``tracking`` config (a TrackingConfig) asks for; a do-nothing Tracker when off."""
    chosen = []
    for name, backend in TRACKERS.items():
        setting = getattr(tracking, name)
        if setting in (None, False):
            continue
        cls = getattr(importlib.import_module(f"albench.tracking.{backend.module}"), backend.cls)
        chosen.append(cls(setting, run_dir=Path(run_dir), sweep=sweep, run_id=run_id))
    if not chosen:
        return Tracker()
    return chosen[0] if len(chosen) == 1 else MultiTracker(chosen)
