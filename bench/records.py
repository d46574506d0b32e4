"""Run records: one folder per run, written atomically, never rewritten once complete.

Layout of a run folder (``<output>/<sweep>/<dataset>/<strategy>/seed-<n>/``):

- ``run.json``: identity (sweep, dataset, strategy, seed, protocol, quirks, flags) and what reports
  need to read the records without the code that made them: ``baseline`` (the strategy label the
  sweep's ratios divide by, or null), ``phases`` (the timed phases, in order; each is a
  ``seconds_<phase>`` column of cycles.csv) and ``quirk_docs`` ({quirk name: its documentation} for
  every active quirk). Runs recorded before these fields existed read with the old defaults: see
  :func:`recorded_phases`, :func:`recorded_quirk_docs` and :func:`recorded_baseline`. ``prepare``: what
  the strategy's prepare phase reported; ``cache_uses``: every cached artifact the run used (entry,
  miss/hit/off, its compute time, the wait), see :mod:`albench.cached`.
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
import stat
import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml

from albench.errors import RecordError
from albench.typed import INT64_MAX, Bounds

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


def run_id(dataset: str, strategy: str, seed: int | str) -> str:
    """A run's id, ``dataset/strategy label/seed-N``: its folder below the sweep, and what ``run
    --only``, ``report --only``, ``status`` and the worker messages name it by."""
    return f"{dataset}/{strategy}/seed-{seed}"


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


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` in one write, creating it (0666 less the umask) if needed; the file is
    opened without following links (OSError ELOOP for a symbolic link, which is never written through)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "a") as fh:
        fh.write(text)


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
        for folder in (self.dir, self.dir / "artifacts"):  # never write through a link (claim checked them
            if os.path.islink(folder):                     # too; this holds should one appear since)
                raise RecordError(f"{folder} is a symbolic link; albench never writes records through links")
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
        """Append a line to run.log (opened without following links: a run.log linked elsewhere is
        refused with OSError, never appended to)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        append_text(self.dir / "run.log", f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def finish(self) -> None:
        """Mark complete and drop the checkpoint; from here on the folder is read-only to us."""
        self._guard()
        self._set_status("complete", finished=time.time())
        ckpt = self.dir / "checkpoint.pt"
        if ckpt.exists():
            ckpt.unlink()

    def stop(self, labels: int) -> None:
        """Mark the run left unfinished on purpose at ``labels`` labels (``--stop-at-labels``): resumable,
        not running (``albench status`` says so, whatever the worker that stopped it does next)."""
        self._guard()
        self._set_status("stopped", labels=int(labels))

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


# The states status.json may hold; anything else is a damaged record (never a run to start over).
RECORDED_STATES = ("running", "stopped", "complete", "failed")
# No record albench writes comes near this (an ImageNet-scale queries.json is a few MB); a larger
# file is not one of ours, and is refused before it is read into memory.
MAX_RECORD_BYTES = 256 * 1024 * 1024


def record_bytes(p: Path, limit: int = MAX_RECORD_BYTES) -> bytes | None:
    """The bytes of record file ``p``, or None when it does not exist.

    DamagedRecord when it is a symbolic link, a folder, a FIFO or another non-regular file (checked
    before opening, and opened without following links, so a FIFO cannot block), larger than
    ``limit`` bytes, or unreadable."""
    if not os.path.lexists(p):
        return None
    with _open_record(Path(p)) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise DamagedRecord(p, f"holds {size} bytes, more than any albench record ({limit})")
        try:
            return fh.read(limit + 1)[:limit]
        except OSError as exc:
            raise DamagedRecord(p, f"cannot be read: {exc.strerror or exc}") from None


def _file_kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def record_text(p: Path) -> str | None:
    """Record file ``p`` as UTF-8 text (None when absent); DamagedRecord as :func:`record_bytes`, or
    when it is not UTF-8."""
    data = record_bytes(p)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedRecord(p, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _read_json_record(p: Path) -> Any:
    text = record_text(p)
    if text is None:
        raise DamagedRecord(p, "missing")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedRecord(p, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits, deep nesting
        raise DamagedRecord(p, f"not valid JSON: {str(exc)[:100]}") from None


# ---------------------------------------------------------------------------------------------
# record schemas: the fields readers use, with their types (other fields pass unchecked, so a
# record of a newer albench still reads). A nested dict is a sub-mapping's schema.

_SEED = Annotated[int, Bounds(ge=0, le=INT64_MAX)]
_COUNT = Annotated[int | None, Bounds(ge=0, le=INT64_MAX)]
RUN_JSON = {
    "sweep": str, "dataset": str, "strategy": str, "seed": _SEED, "strategy_name": str | None,
    "protocol": str | None, "quirks": list[str] | None, "flags": list[str] | None, "metric": str | None,
    "baseline": str | None, "phases": list[str] | None, "quirk_docs": dict[str, str] | None, "task": str | None,
    "augment": dict | None, "dataset_info": dict | None, "prepare": dict | None, "tracking": dict | None,
}
RUN_JSON_REQUIRED = ("dataset", "strategy", "seed")
CONFIG_YAML = {
    "al": {"initial": _COUNT, "budget": _COUNT, "cycles": _COUNT},
    "train": {"epochs": _COUNT, "batch_size": _COUNT, "min_steps": _COUNT},
    "model": {"name": str | None, "params": dict | None},
    "strategy": {"name": str | None, "params": dict | None},
    "dataset": {"name": str | None, "params": dict | None},
}
ENV_JSON = {"device": str | None, "device_name": str | None, "torch": str | None, "cuda": str | None,
            "threads": _COUNT, "git": {"sha": str | None, "dirty": bool | None, "source": str | None}}
STATUS_JSON = {"state": str, "error": str | None, "labels": int | None}
FINGERPRINT_JSON = {"keys": dict, "sha256": str | None, "version": int | None}


def check_record(p: Path, data: Any, schema: dict, required: tuple[str, ...] = (), where: str = "") -> dict:
    """``data`` (read from record file ``p``) checked against ``schema``: a mapping whose fields in
    the schema have the declared types (read by :func:`albench.typed.coerce`); returns it with those
    fields typed. DamagedRecord naming the file and the field otherwise."""
    from albench.errors import ConfigError
    from albench.typed import coerce

    if not isinstance(data, dict):
        kind = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false",
                type(None): "empty"}.get(type(data), type(data).__name__)
        raise DamagedRecord(p, f"{where.rstrip('.') or 'the record'} is {kind}, not a mapping")
    out = dict(data)
    for key in required:
        if key not in data:
            raise DamagedRecord(p, f"no '{where}{key}' field")
    for key, tp in schema.items():
        if key not in data:
            continue
        if isinstance(tp, dict):
            if data[key] is not None:
                out[key] = check_record(p, data[key], tp, where=f"{where}{key}.")
            continue
        try:
            out[key] = coerce(tp, data[key], f"{where}{key}")
        except ConfigError as exc:
            got = repr(exc.value if exc.value is not ... else data[key])
            raise DamagedRecord(p, f"'{exc.field}' {exc.problem} (got {got[:80]})") from None
    return out


def read_status(run_dir: Path) -> dict | None:
    """status.json, or None before the run wrote one; DamagedRecord when it cannot be read, or holds
    a state albench never writes (only running, stopped, complete and failed are records; any other
    is damage, and a damaged run is never started over)."""
    p = Path(run_dir) / "status.json"
    if not os.path.lexists(p):
        return None
    st = _read_json_record(p)
    if not isinstance(st, dict) or "state" not in st:
        raise DamagedRecord(p, "no 'state' field")
    st = check_record(p, st, STATUS_JSON)
    if st["state"] not in RECORDED_STATES:
        raise DamagedRecord(p, f"unknown state {st['state'][:40]!r} (albench writes {', '.join(RECORDED_STATES)})")
    return st


def stopped_note(status: dict) -> str:
    """What a ``stopped`` status.json means, for status lines and reports."""
    return f"left unfinished at {status.get('labels', '?')} labels by --stop-at-labels; rerun without the flag to go on"


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
    text = record_text(p)
    if text is None:
        return []
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
    """{cycle: train-set indices queried at that cycle}; DamagedRecord unless it is a mapping of
    cycle numbers to lists of non-negative integers."""
    p = Path(run_dir) / "queries.json"
    if not os.path.lexists(p):
        return {}
    data = _read_json_record(p)
    try:
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not a mapping")
        out = {}
        for c, q in data.items():
            if not isinstance(q, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in q):
                raise TypeError(f"cycle {c[:20]!r} holds {str(q)[:40]}, not a list of indices")
            arr = np.asarray(q, dtype=np.int64)
            if arr.size and arr.min() < 0:
                raise ValueError(f"cycle {c[:20]!r} holds a negative index")
            out[int(c)] = arr
        return out
    except (TypeError, ValueError, OverflowError) as exc:
        raise DamagedRecord(p, f"not {{cycle: [indices]}}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    """An exception's first line (at most 120 characters), or its type's name when it has no text."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _npy_header(p: Path, fh) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the .npy file open as ``fh``, checked against its size; DamagedRecord when
    the header is not an .npy header, declares objects (pickles), or another size than the file's."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise DamagedRecord(p, f"not an .npy array: {_first_line(exc)}") from None
    if dtype.hasobject:
        raise DamagedRecord(p, "declares Python objects; albench saves plain arrays only")
    want = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = os.fstat(fh.fileno()).st_size - fh.tell()
    if want != have:
        raise DamagedRecord(p, f"{'truncated' if have < want else 'has trailing bytes'}: its header declares "
                            f"{dtype} {tuple(shape)} ({want} bytes of data) but the file holds {have}")
    return tuple(shape), dtype


def _open_record(p: Path):
    """``p`` opened for reading without following links; DamagedRecord when it is a link, not a
    regular file, or cannot be opened."""
    try:
        st = os.lstat(p)
    except OSError as exc:
        raise DamagedRecord(p, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DamagedRecord(p, "is a symbolic link; albench writes its records as plain files and never "
                            "follows links inside a run folder")
    if not stat.S_ISREG(st.st_mode):
        raise DamagedRecord(p, f"is not a regular file (a {_file_kind(st.st_mode)})")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DamagedRecord(p, f"cannot be read: {exc.strerror or exc}") from None
    return os.fdopen(fd, "rb")


def _artifacts_dir(run_dir: Path) -> Path | None:
    """The run's artifacts/ folder, None when there is none; DamagedRecord when it is a link or no folder."""
    folder = Path(run_dir) / "artifacts"
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DamagedRecord(folder, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DamagedRecord(folder, "is a symbolic link; albench never follows links inside a run folder")
    if not stat.S_ISDIR(st.st_mode):
        kind = "file" if stat.S_ISREG(st.st_mode) else _file_kind(st.st_mode)
        raise DamagedRecord(folder, f"is not a folder (a {kind})")
    return folder


def check_artifacts(run_dir: Path) -> list[str]:
    """The names of the run's artifacts (``artifacts/<name>.npy``), each header checked against its
    file's size without reading the data; DamagedRecord naming the first damaged one."""
    folder = _artifacts_dir(run_dir)
    if folder is None:
        return []
    names = []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith(".") or not entry.endswith(".npy"):
            continue  # temp files of a write in progress, or foreign files
        with _open_record(folder / entry) as fh:
            _npy_header(folder / entry, fh)
        names.append(entry[:-4])
    return names


def read_artifact(run_dir: Path, name: str) -> np.ndarray | None:
    """The run's ``artifacts/<name>.npy`` array, or None when it was not recorded; DamagedRecord
    (naming the file) when it is truncated, garbled or not a plain array."""
    folder = _artifacts_dir(run_dir)
    if folder is None:
        return None
    p = folder / f"{name}.npy"
    if not os.path.lexists(p):
        return None
    with _open_record(p) as fh:
        _npy_header(p, fh)  # before anything is allocated: a header may declare terabytes
        fh.seek(0)
        try:
            return np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DamagedRecord(p, f"cannot be read: {_first_line(exc)}") from None


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


def read_json_record(p: Path) -> Any:
    """The JSON value in record file ``p``; DamagedRecord when missing, a link, not a regular file,
    not UTF-8 or not valid JSON."""
    return _read_json_record(Path(p))


def read_yaml_record(p: Path) -> Any:
    """The YAML document in record file ``p`` (bounded and duplicate-free, as configs are read);
    DamagedRecord when missing, a link, not a regular file, not UTF-8, empty or not valid YAML."""
    from albench.config import YamlRefused, load_yaml_text

    text = record_text(p)
    if text is None:
        raise DamagedRecord(p, "missing")
    try:
        data = load_yaml_text(text)
    except (yaml.YAMLError, YamlRefused) as exc:
        raise DamagedRecord(p, f"not valid YAML: {str(exc).splitlines()[0][:120]}") from None
    if data is None:
        raise DamagedRecord(p, "empty")
    return data


def read_config_record(run_dir: Path) -> dict:
    """The run's config.yaml ({} when absent), checked against :data:`CONFIG_YAML`."""
    p = Path(run_dir) / "config.yaml"
    if not os.path.lexists(p):
        return {}
    return check_record(p, read_yaml_record(p), CONFIG_YAML)


def read_env(run_dir: Path) -> dict:
    """The run's env.json ({} when absent), checked against :data:`ENV_JSON`."""
    p = Path(run_dir) / "env.json"
    if not os.path.lexists(p):
        return {}
    return check_record(p, _read_json_record(p), ENV_JSON)


def read_identity(run_dir: Path) -> dict:
    """The run's run.json, checked against :data:`RUN_JSON` (DamagedRecord naming the file and field)."""
    p = Path(run_dir) / "run.json"
    return check_record(p, _read_json_record(p), RUN_JSON, RUN_JSON_REQUIRED)


def check_records(run_dir: Path) -> dict | None:
    """The run's status (as :func:`read_status`) once every identity record it holds reads through its
    schema (run.json, config.yaml, env.json, fingerprint.json; absent ones pass): what must hold before
    a run folder is resumed or counted. DamagedRecord naming the first damaged one."""
    from albench.drift import fingerprint, holds_results

    run_dir = Path(run_dir)
    st = read_status(run_dir)
    if os.path.lexists(run_dir / "run.json"):
        read_identity(run_dir)
    config = read_config_record(run_dir)
    read_env(run_dir)
    fp = run_dir / "fingerprint.json"
    if os.path.lexists(fp):
        recorded = check_record(fp, _read_json_record(fp), FINGERPRINT_JSON, ("keys",))
        # once a run holds results, both were written from the same run config (before its first
        # result; neither is rewritten after): a config.yaml whose result keys no longer hash to the
        # fingerprint's was cut or edited, and would misstate what produced the numbers. Before
        # that, a start killed between the two writes may leave them apart, harmlessly.
        if config and recorded.get("sha256") and holds_results(run_dir) \
                and fingerprint(config)["sha256"] != recorded["sha256"]:
            raise DamagedRecord(run_dir / "config.yaml", "its result keys differ from those fingerprint.json "
                                "recorded when the run started (the file was cut or edited)")
    return st


def load_run(run_dir: Path) -> dict:
    """Identity, status, config, environment and rows of one run, each record read through its schema
    (:data:`RUN_JSON`, :data:`STATUS_JSON`, :data:`CONFIG_YAML`, :data:`ENV_JSON`) and every artifact's
    header checked against its size; DamagedRecord naming the file and what is wrong."""
    run_dir = Path(run_dir)
    ident = read_identity(run_dir)
    out = {
        "dir": run_dir,
        "identity": ident,
        "status": read_status(run_dir) or {"state": "unknown"},
        "config": read_config_record(run_dir),
        "env": read_env(run_dir),
        "rows": read_cycles(run_dir),
        "artifacts": check_artifacts(run_dir),
    }
    check_records(run_dir)  # fingerprint.json too: 'run' leaves a run with a damaged one alone, so readers say so
    planned = (out["config"].get("al") or {}).get("cycles")
    if out["status"]["state"] == "complete" and planned is not None and len(out["rows"]) != planned:
        raise DamagedRecord(run_dir / "cycles.csv",
                            f"holds {len(out['rows'])} of the {planned} cycles of a complete run")
    return out
