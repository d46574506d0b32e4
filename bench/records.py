"""Run records: one folder per run, written atomically, never rewritten once complete.

Layout of a run folder (``<output>/<sweep>/<dataset>/<strategy>/seed-<n>/``):

- ``run.json``: identity (sweep, dataset, strategy, seed, protocol, quirks, flags) and what reports
  need to read the records without the code that made them: ``baseline`` (the strategy label the
  sweep's ratios divide by, or null), ``phases`` (the timed phases, in order; each is a
  ``seconds_<phase>`` column of cycles.csv) and ``quirk_docs`` ({quirk name: its documentation} for
  every active quirk). Runs recorded before these fields existed read with the old defaults: see
  :func:`recorded_phases`, :func:`recorded_quirk_docs` and :func:`recorded_baseline`.
- ``config.yaml``: the resolved config of this run (every default filled in)
- ``env.json``: environment fingerprint (python, torch, CUDA, device model, host, git SHA + dirty)
- ``cycles.csv``: one row per cycle (cycle, n_labeled, metric, value, test_loss, seconds per phase)
- ``queries.json``: ``{"<cycle>": [train-set indices queried at that cycle]}``
- ``status.json``: ``state`` = running | complete | failed, times, host, error tail
- ``artifacts/<name>.npy``: arrays for analyses. The engine writes ``labeled_targets`` (labels of
  the queried images, in query order), ``test_loss`` (cycles x test images, main-task loss in nats),
  ``embeddings`` + ``embedding_indices`` (final-model embeddings, float16, of a fixed random pool
  subset plus every labeled image; train-set indices) and, when a validation split is carved from
  train, ``validation_indices``; strategies add their own (e.g. PT4AL's pretext losses). For target
  maps (segmentation) ``labeled_class_pixels`` (queried images x classes, labeled pixels of each)
  replaces ``labeled_targets``; every extra value the task's meter reports per cycle is saved as
  ``metric_<name>`` (cycles x ...), e.g. ``metric_class_iou`` (per-class IoU, NaN when absent).
- ``checkpoint.pt``: resume state while the run is unfinished (removed when it completes)
- ``run.log``: human-readable progress
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from albench.errors import RecordError

# The phases the engine times, in order (bench/engine/timer.py charges each cycle's seconds to them).
PHASES = ("pretext", "train", "inference", "select", "evaluate")

class DamagedRecord(RecordError, ValueError):
    """A record file exists but cannot be read as what albench writes (garbled, truncated, foreign).

    ``path`` is the file; a ValueError too, so readers that skip unreadable runs skip it."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: damaged ({problem})")

CYCLE_COLUMNS = [
    "cycle", "n_labeled", "metric", "value", "test_loss",
    *(f"seconds_{p}" for p in PHASES),
    "seconds_total", "epochs", "steps", "selected_epoch",
    "value_single_pass",  # the metric with dropout off when value is MC-averaged (train.test_passes); else empty
]
PHASE_COLUMNS = [f"seconds_{p}" for p in PHASES]

# The strategy a run recorded before run.json named its sweep's baseline compared against: the one
# registered as "random" (reports matched it by strategy_name, preferring the label "random").
LEGACY_BASELINE_STRATEGY = "random"


# ---------------------------------------------------------------------------------------------
# run.json fields reports read, with the defaults for runs recorded before the fields existed


def recorded_phases(identity: dict) -> tuple[str, ...]:
    """The timed phases of a run, in order: run.json ``phases``, else :data:`PHASES` (older runs)."""
    phases = identity.get("phases")
    return tuple(str(p) for p in phases) if isinstance(phases, list) and phases else PHASES


def recorded_quirk_docs(identity: dict) -> dict[str, str]:
    """{active quirk name: its documentation} from run.json ``quirk_docs``; {} for older runs."""
    docs = identity.get("quirk_docs")
    return {str(k): str(v) for k, v in docs.items()} if isinstance(docs, dict) else {}


def recorded_baseline(identity: dict) -> tuple[bool, str | None]:
    """(whether run.json designates a baseline, the baseline's strategy label or None).

    Runs recorded before the field existed return ``(False, None)``: their baseline is found by the
    old rule (:func:`pick_baseline`).
    """
    if "baseline" not in identity:
        return False, None
    b = identity["baseline"]
    return True, (str(b) if b is not None else None)


def pick_baseline(runs: list[tuple[str, str, bool, str | None]]) -> str | None:
    """The baseline label of one sweep, from its runs' ``(label, strategy_name, designated, baseline)``.

    Runs that designate a baseline (run.json ``baseline``) decide: their label, or None when they
    disagree or designate none. When no run designates one (records older than the field), the old
    rule holds (:func:`default_baseline`).
    """
    designated = {b for _, _, has, b in runs if has}
    if designated:
        return designated.pop() if len(designated) == 1 else None
    return default_baseline((label, name) for label, name, _, _ in runs)


def default_baseline(strategies) -> str | None:
    """The baseline label when none is designated, from ``(label, strategy_name)`` pairs.

    Among the labels of the strategy named :data:`LEGACY_BASELINE_STRATEGY`: ``"random"`` itself,
    else the first in sorted order; None when no such strategy is present.
    """
    labels = sorted({label for label, name in strategies if name == LEGACY_BASELINE_STRATEGY})
    if not labels:
        return None
    return LEGACY_BASELINE_STRATEGY if LEGACY_BASELINE_STRATEGY in labels else labels[0]


# ---------------------------------------------------------------------------------------------
# atomic writes


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename (no torn files).

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask), not
    mkstemp's owner-only 0600: collaborators on a shared results folder must be able to read records.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


# ---------------------------------------------------------------------------------------------
# writing one run


class RunRecorder:
    """Writes one run's folder. Refuses to touch a folder whose run is complete."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)

    # status --------------------------------------------------------------------------------
    def status(self) -> dict | None:
        return read_status(self.dir)

    def is_complete(self) -> bool:
        st = self.status()
        return bool(st and st.get("state") == "complete")

    def _guard(self) -> None:
        if self.is_complete():
            raise RecordError(f"{self.dir} holds a complete run; it is never rewritten "
                              "(choose another output folder or sweep name to run it again)")

    def _set_status(self, state: str, **extra) -> None:
        prev = self.status() or {}
        st = {"state": state, "host": socket.gethostname(), "pid": os.getpid(),
              "started": prev.get("started", time.time()), "updated": time.time(), **extra}
        if "resumes" in prev and "resumes" not in st:  # the final status still says how often it resumed
            st["resumes"] = prev["resumes"]
        if "SLURM_JOB_ID" in os.environ:
            st["slurm_job_id"] = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
            st["slurm_task_id"] = os.environ.get("SLURM_ARRAY_TASK_ID")
        atomic_write_json(self.dir / "status.json", st)

    def start(self, identity: dict, config: dict, env: dict) -> None:
        """Write identity, config and environment; mark the run as running."""
        self._guard()
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir / "run.json", identity)
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        atomic_write_json(self.dir / "env.json", env)
        self._set_status("running")

    def write_cycles(self, rows: list[dict], queries: dict[int, list[int]]) -> None:
        """Rewrite cycles.csv and queries.json with every cycle so far (atomic each)."""
        self._guard()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CYCLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in CYCLE_COLUMNS})
        atomic_write_text(self.dir / "cycles.csv", buf.getvalue())
        atomic_write_text(self.dir / "queries.json",
                          json.dumps({str(c): list(map(int, q)) for c, q in sorted(queries.items())}) + "\n")

    def save_artifacts(self, arrays: dict[str, np.ndarray]) -> None:
        self._guard()
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr), allow_pickle=False)
            atomic_write_bytes(self.dir / "artifacts" / f"{name}.npy", buf.getvalue())

    def update_identity(self, **fields) -> None:
        self._guard()
        ident = json.loads((self.dir / "run.json").read_text())
        ident.update(fields)
        atomic_write_json(self.dir / "run.json", json.loads(json.dumps(ident, default=_json_default)))

    def mark_resumed(self, resumes: int, env: dict) -> None:
        """Note a resume in status.json and keep each host's fingerprint (env.json stays the first)."""
        self._guard()
        self._set_status("running", resumes=resumes)
        atomic_write_json(self.dir / f"env.resume-{resumes}.json", env)

    def log(self, message: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "run.log", "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def finish(self) -> None:
        """Mark complete and drop the checkpoint; from here on the folder is read-only to us."""
        self._guard()
        self._set_status("complete", finished=time.time())
        ckpt = self.dir / "checkpoint.pt"
        if ckpt.exists():
            ckpt.unlink()

    def fail(self, exc: BaseException) -> str | None:
        """Record the failure in status.json and run.log; returns None, or why it could not be
        recorded (never raises: a failure handler that raises would abort the other runs)."""
        try:
            if self.is_complete():
                return None
        except DamagedRecord as why:  # a damaged status.json is left as it is: it may be a complete run's
            return str(why)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.log(f"FAILED: {exc!r}\n{tb}")
            self._set_status("failed", error=f"{type(exc).__name__}: {exc}", traceback=tb[-4000:])
        except OSError as why:
            return f"could not record the failure in {self.dir}: {why.strerror or why}"
        return None

    # checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def save_checkpoint(self, state: dict) -> None:
        import torch

        self._guard()
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def load_checkpoint(self) -> dict | None:
        """The last checkpoint (loaded with ``weights_only=True``), or None."""
        import torch

        if not self.checkpoint_path.exists():
            return None
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, garbled, or not a torch file at all
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise DamagedRecord(self.checkpoint_path, f"cannot be loaded: {first}; fix: delete it to start this "
                                "run over from cycle 0, or move the run folder aside") from None
        if not isinstance(state, dict) or "next_cycle" not in state:
            raise DamagedRecord(self.checkpoint_path, "not an albench checkpoint; fix: delete it to start this run "
                                "over from cycle 0, or move the run folder aside")
        return state


# ---------------------------------------------------------------------------------------------
# reading


def _read_json_record(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except UnicodeDecodeError as exc:
        raise DamagedRecord(p, f"not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise DamagedRecord(p, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def read_status(run_dir: Path) -> dict | None:
    """status.json, or None before the run wrote one; DamagedRecord when it cannot be read."""
    p = Path(run_dir) / "status.json"
    if not p.exists():
        return None
    st = _read_json_record(p)
    if not isinstance(st, dict) or not isinstance(st.get("state"), str):
        raise DamagedRecord(p, "no 'state' field")
    return st


INT_COLUMNS = ("cycle", "n_labeled", "epochs", "steps", "selected_epoch")


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_cycles(run_dir: Path) -> list[dict]:
    """Rows of cycles.csv with numeric fields parsed (empty list if none yet).

    DamagedRecord when the file is not a whole table as albench writes it: an unknown header, a row
    with missing or extra fields, a value that is not a number, cycles out of order, or a last line
    without its newline (a truncated file must never pass for real values).
    """
    p = Path(run_dir) / "cycles.csv"
    if not p.exists():
        return []
    try:
        text = p.read_text()
    except UnicodeDecodeError as exc:
        raise DamagedRecord(p, f"not UTF-8 text: {exc.reason}") from None
    if not text.endswith("\n"):
        raise DamagedRecord(p, "truncated: the last line is incomplete" if text else "empty")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if "cycle" not in header or len(set(header)) != len(header) or not all(k.isidentifier() for k in header):
        raise DamagedRecord(p, f"unexpected header {','.join(header)[:120]!r}")
    rows = []
    for line_no, fields in enumerate(reader, start=2):
        if len(fields) != len(header):
            raise DamagedRecord(p, f"line {line_no} has {len(fields)} fields, the header {len(header)}")
        out: dict[str, Any] = {}
        for k, v in zip(header, fields):
            try:
                if k == "metric" or (k not in CYCLE_COLUMNS and not _is_number(v)):
                    out[k] = v  # the metric's name, or a column of another albench version
                elif v == "":
                    out[k] = None
                elif k in INT_COLUMNS:
                    f = float(v)
                    if f != int(f):
                        raise ValueError(v)
                    out[k] = int(f)
                else:
                    out[k] = float(v)
            except (ValueError, OverflowError):
                raise DamagedRecord(p, f"line {line_no}: {k} is {v[:40]!r}, not a number") from None
        if out.get("cycle") != len(rows):
            raise DamagedRecord(p, f"line {line_no}: cycle {out.get('cycle')} where {len(rows)} was expected")
        rows.append(out)
    return rows


def read_queries(run_dir: Path) -> dict[int, np.ndarray]:
    """{cycle: train-set indices queried at that cycle}."""
    p = Path(run_dir) / "queries.json"
    if not p.exists():
        return {}
    data = _read_json_record(p)
    try:
        if not isinstance(data, dict):
            raise TypeError("not a mapping")
        return {int(c): np.asarray(q, dtype=np.int64) for c, q in data.items()}
    except (TypeError, ValueError, OverflowError) as exc:
        raise DamagedRecord(p, f"not {{cycle: [indices]}}: {exc}") from None


def read_artifact(run_dir: Path, name: str) -> np.ndarray | None:
    p = Path(run_dir) / "artifacts" / f"{name}.npy"
    return np.load(p, allow_pickle=False) if p.exists() else None


def find_runs(root: str | Path) -> list[Path]:
    """Run folders (those holding run.json) under ``root``, sorted."""
    root = Path(root)
    if not root.exists():
        raise RecordError(f"{root}: no such folder")
    if (root / "run.json").exists():
        return [root]
    # dot-folders hold no live runs (.replaced/ keeps runs moved aside, .slurm/ and .cache/ no runs)
    return sorted(p.parent for p in root.rglob("run.json")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def load_run(run_dir: Path) -> dict:
    """Identity, status, config and rows of one run."""
    run_dir = Path(run_dir)
    ident = _read_json_record(run_dir / "run.json")
    if not isinstance(ident, dict):
        raise DamagedRecord(run_dir / "run.json", "not a mapping")
    cfg_path = run_dir / "config.yaml"
    return {
        "dir": run_dir,
        "identity": ident,
        "status": read_status(run_dir) or {"state": "unknown"},
        "config": yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {},
        "rows": read_cycles(run_dir),
    }
