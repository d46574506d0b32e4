"""MLflow: one MLflow run per albench run, in the experiment named after the sweep, holding the
run's config as params, the train loss and cycle scalars as metrics and its records as artifacts
(under ``records/``). Needs ``pip install 'albench[mlflow]'`` (``mlflow-skinny`` is enough).

The tracking URI is the config's ``tracking.mlflow``: a server (``http://host:5000``), a database
URI, or a local folder (a path or ``file:`` URI, which works offline). MLflow 3 refuses its file
store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; albench sets it for local folders, since a file
store is what works without a server or a database driver.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from albench.errors import AlbenchError
from albench.tracking import MLFLOW_BACKOFF_S, MLFLOW_TIMEOUT_S, MLFLOW_TRIES, Tracker, cycle_scalars
from albench.tracking.tensorboard_tracker import FOLDER as TB_FOLDER
from albench.tracking.tensorboard_tracker import TRAIN_LOSS

PARAM_MAX = 6000  # MLflow's limit on a param value (characters)
# training state, other trackers' files, and status.json (still "running" here: the MLflow run's status says it)
NOT_RECORDS = {"checkpoint.pt", "status.json", TB_FOLDER}


class TrackingError(AlbenchError):
    """The tracking server or store failed; the run fails (resumable) with this one-line reason."""


RETRY_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": MLFLOW_TRIES - 1, "MLFLOW_HTTP_REQUEST_TIMEOUT": MLFLOW_TIMEOUT_S,
             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": MLFLOW_BACKOFF_S}


def bound_retries() -> None:
    """Bound MLflow's HTTP retries (see :data:`albench.tracking.MLFLOW_MAX_WAIT_S`) unless the user set
    the MLFLOW_HTTP_REQUEST_* environment variables."""
    for key, value in RETRY_ENV.items():
        os.environ.setdefault(key, str(value))


def retry_statement() -> str:
    """How long albench lets MLflow retry a request, as configured now."""
    tries = int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", MLFLOW_TRIES - 1)) + 1
    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", MLFLOW_TIMEOUT_S)
    return (f"each request gets {tries} tries of at most {timeout} s; set MLFLOW_HTTP_REQUEST_MAX_RETRIES and "
            "MLFLOW_HTTP_REQUEST_TIMEOUT to change that")


def resolve_uri(uri: str) -> str:
    """``uri`` with a local folder (a path, or a ``file:`` URI) made absolute, so every worker
    process writes to the same store whatever its working directory."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path).resolve().as_uri()
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """The run config as MLflow params: nested keys joined with '.', values as JSON text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
            continue
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > PARAM_MAX:
            text = "(longer than an MLflow param may be: see records/config.yaml)"
        out[name] = text
    return out


class MLflowTracker(Tracker):
    def __init__(self, setting: str, *, run_dir: Path, sweep: str, run_id: str) -> None:
        self.uri = resolve_uri(setting)
        self.run_dir = run_dir
        self.sweep = sweep
        self.run_id = run_id
        self.client = None
        self.mlflow_run = None  # the MLflow run id
        self.seen: dict[str, set[int]] = {}

    def open(self, *, config: dict, identity: dict, rows: list[dict], resumed: bool) -> dict:
        if urlparse(self.uri).scheme == "file":
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        bound_retries()
        try:
            return self._open(config=config, identity=identity, rows=rows, resumed=resumed)
        except Exception as exc:  # noqa: BLE001 - MlflowException, requests' errors, OSError ...
            raise TrackingError(f"MLflow tracking at {self.uri} failed: {type(exc).__name__}: "
                                f"{(str(exc).strip().splitlines() or [''])[0][:200]} ({retry_statement()})") from exc

    def _open(self, *, config: dict, identity: dict, rows: list[dict], resumed: bool) -> dict:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        previous = (identity.get("tracking") or {}).get("mlflow_run_id") if resumed else None
        if previous is not None and self._exists(previous):
            self.mlflow_run = previous
            self.client.update_run(previous, status="RUNNING")
            self.seen = {key: {m.step for m in self.client.get_metric_history(previous, key)}
                         for key in self.client.get_run(previous).data.metrics}
        else:
            run = self.client.create_run(self._experiment(), run_name=self.run_id, tags={
                "albench.sweep": self.sweep, "albench.run_id": self.run_id, "albench.run_dir": str(self.run_dir)})
            self.mlflow_run = run.info.run_id
            params = sorted(flat_params(config).items())
            from mlflow.entities import Param

            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.mlflow_run, params=[Param(k, v) for k, v in params[start:start + 100]])
        for row in rows:
            self.cycle(row)
        return {"mlflow_run_id": self.mlflow_run, "mlflow_uri": self.uri}

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(self.sweep)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.sweep)
        except MlflowException:  # another worker of the sweep created it first
            return self.client.get_experiment_by_name(self.sweep).experiment_id

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for key, value in values.items():
            steps = self.seen.setdefault(key, set())
            if step not in steps:  # logged before a resume
                metrics.append(Metric(key, value, now, step))
                steps.add(step)
        if metrics:
            self.client.log_batch(self.mlflow_run, metrics=metrics)

    def epoch(self, *, cycle: int, epoch: int, step: int, loss: float) -> None:
        self._log({TRAIN_LOSS: loss}, step)

    def cycle(self, row: dict) -> None:
        self._log(cycle_scalars(row), int(row["cycle"]))

    def finish(self, run_dir: Path) -> None:
        for path in sorted(run_dir.iterdir()):
            if path.name in NOT_RECORDS or path.name.startswith("."):
                continue
            if path.is_dir():
                self.client.log_artifacts(self.mlflow_run, str(path), f"records/{path.name}")
            else:
                self.client.log_artifact(self.mlflow_run, str(path), "records")
        self.client.set_terminated(self.mlflow_run, "FINISHED")

    def fail(self, error: str) -> None:
        if self.client is not None and self.mlflow_run is not None:
            self.client.set_tag(self.mlflow_run, "albench.error", error[:5000])
            self.client.set_terminated(self.mlflow_run, "FAILED")
