"""Cached artifacts: one rule for what a run records about a shared cache entry and what it is charged.

A *cached artifact* is anything one run computes and later runs reuse through a folder under the
output root: PT4AL's pretext losses, the self-supervised representation TypiClust and ProbCover
select from, a frozen backbone's features. Every such cache follows one rule:

- **Records.** Each run records, for every entry it used, the entry's compute time (measured by the
  run that computed it and stored in the entry, so a reader gets the same number) and how this run
  got it: ``miss`` (computed now), ``hit`` (read, computed by another run) or ``off`` (no cache
  folder: computed now, not stored). It also records the seconds it waited for another run that was
  computing the same entry. run.json ``cache_uses`` holds them, one dict per use (see
  :meth:`CacheUse.to_record`).
- **Reports.** A run is *charged* the compute time of every entry it used, whether it computed the
  entry or reused it, so a method's cost never depends on which run of a sweep came first. Its
  *incurred* time is what its own clock measured (a run that read an entry incurred only the read).
  Wall-clock tables show both and say so (:func:`charged_seconds` is the arithmetic).

API for a cache (the pretext losses and features of :mod:`albench.strategies.pretext` use it; a new
cache should too)::

    from albench.cached import Entry, load_or_compute

    entry, use = load_or_compute(
        "frozen-features", key, lock_dir=root,
        load=lambda: ...,          # the stored Entry, or None when absent or unreadable
        compute=lambda: ...,       # a fresh Entry(value, compute_seconds)
        store=lambda e: ...,       # write it atomically (readers never see a partial file)
        log=log)

``load_or_compute`` reads the entry when it is there; otherwise it takes ``<lock_dir>/<key>.lock``
(runs that need the same entry at once serialise: the first computes, the others wait and read),
computes and stores it. It returns the entry and the :class:`CacheUse` it also reports to the
collector the engine opens around each phase (:func:`collect_uses`), so the run records it without
the caller passing it on. ``lock_dir=None`` means no cache: compute, store nothing, status ``off``.
A cache that cannot go through ``load_or_compute`` calls :func:`note_use` with the use it made.

``Entry.origin`` names the computation an entry came from when one computation fills several
entries (the SimCLR features run also stores the same network's pretext losses): a run that uses
two entries of one origin is charged that computation once.

The engine records every use made while a strategy's ``prepare`` runs (phase ``pretext``, charged to
cycle 0). Engine code that uses a cache before that (say, a frozen backbone's features) wraps the work
in ``collect_uses("<its phase>")``, times that phase into cycle 0, and appends the uses to
``RunContext.cache_uses``: they are recorded with prepare's, and reports charge each use to the
cycle-0 seconds of its phase.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Literal, TypeVar

T = TypeVar("T")
Status = Literal["miss", "hit", "off"]
STATUSES = ("miss", "hit", "off")

LOCK_POLL_S = 0.5
LOCK_MAX_AGE_S = 48 * 3600.0  # a lock older than this is abandoned, whoever wrote it


@dataclass
class Entry(Generic[T]):
    """A cache entry's value and what it cost: ``compute_seconds`` of wall-clock for the run that
    computed it; ``origin``: the key of the computation that produced it (None: its own key)."""

    value: T
    compute_seconds: float
    origin: str | None = None


@dataclass(frozen=True)
class CacheUse:
    """One run's use of one cache entry.

    ``artifact``: what the entry holds (``pretext-losses``, ``representation``, ...); ``key``: the
    entry; ``status``: ``miss`` (computed by this run), ``hit`` (read) or ``off`` (no cache);
    ``compute_seconds``: the entry's compute time (the computing run's, on a hit too);
    ``wait_seconds``: spent waiting for another run computing it (None: not recorded, older records);
    ``origin``: the computation it came from (defaults to ``key``); ``phase``: the timed phase the
    use fell in (set by the engine's collector)."""

    artifact: str
    key: str
    status: Status
    compute_seconds: float
    wait_seconds: float | None = 0.0
    origin: str = ""
    phase: str = "pretext"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"cache use status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not self.origin:
            object.__setattr__(self, "origin", self.key)

    def to_record(self) -> dict:
        """Plain data for run.json ``cache_uses`` (seconds rounded to the millisecond)."""
        return {"artifact": self.artifact, "key": self.key, "status": self.status, "phase": self.phase,
                "compute_seconds": round(float(self.compute_seconds), 3),
                "wait_seconds": None if self.wait_seconds is None else round(float(self.wait_seconds), 3),
                "origin": self.origin}

    @classmethod
    def from_record(cls, rec: dict) -> "CacheUse":
        """The use a :meth:`to_record` dict describes (ValueError when it is not one)."""
        try:
            wait = rec.get("wait_seconds")
            return cls(artifact=str(rec["artifact"]), key=str(rec["key"]), status=str(rec["status"]),  # type: ignore[arg-type]
                       compute_seconds=float(rec["compute_seconds"]),
                       wait_seconds=None if wait is None else float(wait), origin=str(rec.get("origin") or ""),
                       phase=str(rec.get("phase") or "pretext"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a cache use record: {rec!r}") from exc


# ------------------------------------------------------------------------------------------------
# the collector the engine opens around a phase

_COLLECTOR: contextvars.ContextVar[tuple[list[CacheUse], str] | None] = contextvars.ContextVar(
    "albench_cache_uses", default=None)


@contextmanager
def collect_uses(phase: str) -> Iterator[list[CacheUse]]:
    """Collect every :class:`CacheUse` reported while inside (tagged with ``phase``) into the yielded
    list. Nested collectors: the innermost one gets the uses."""
    uses: list[CacheUse] = []
    token = _COLLECTOR.set((uses, phase))
    try:
        yield uses
    finally:
        _COLLECTOR.reset(token)


def note_use(use: CacheUse) -> CacheUse:
    """Report ``use`` to the open collector, if any (tagged with its phase); returns it as recorded."""
    current = _COLLECTOR.get()
    if current is None:
        return use
    uses, phase = current
    tagged = CacheUse(use.artifact, use.key, use.status, use.compute_seconds, use.wait_seconds, use.origin, phase)
    uses.append(tagged)
    return tagged


# ------------------------------------------------------------------------------------------------
# computing an entry once across runs


def _lock_is_stale(lock: Path) -> bool:
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        # unreadable: either being written right now or junk; judge by age
        try:
            return time.time() - lock.stat().st_mtime > 60.0
        except OSError:
            return False
    if time.time() - float(info.get("time", 0)) > LOCK_MAX_AGE_S:
        return True
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return True  # its owner died without cleaning up
        except (PermissionError, ValueError, KeyError):
            return False
    return False


@contextmanager
def entry_lock(lock_dir: str | Path, key: str, *, log: Callable[[str], None] = print,
               timeout_s: float | None = None, what: str = "cache") -> Iterator[bool]:
    """Hold ``<lock_dir>/<key>.lock`` while inside; yields True when held, False when ``timeout_s``
    ran out waiting for another holder (the caller then goes on without it). A lock whose owner
    died (same host) or older than 48 h is broken."""
    root = Path(lock_dir)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f"{key}.lock"
    waited_since = time.monotonic()
    told = False
    held = False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(lock):
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            if timeout_s is not None and time.monotonic() - waited_since > timeout_s:
                log(f"{what}: gave up waiting for {lock.name} after {timeout_s:.0f}s; computing anyway")
                break
            if not told:
                log(f"{what}: another run is computing entry {key}; waiting for it")
                told = True
            time.sleep(LOCK_POLL_S)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, fh)
        held = True
        break
    try:
        yield held
    finally:
        if held:
            try:
                lock.unlink()
            except FileNotFoundError:
                pass


def load_or_compute(artifact: str, key: str, *, lock_dir: str | Path | None, load: Callable[[], Entry | None],
                    compute: Callable[[], Entry], store: Callable[[Entry], Any],
                    log: Callable[[str], None] = print) -> tuple[Entry, CacheUse]:
    """The entry ``key`` of ``artifact`` and how this run got it (see the module docstring): read by
    ``load`` when stored, else computed by ``compute`` and written by ``store`` under the entry's
    lock (a run that waited for another's computation reads its entry). ``lock_dir`` None: no cache,
    ``compute`` only (``load`` and ``store`` are not called). The use is reported to the open
    collector (:func:`collect_uses`)."""
    if lock_dir is None:
        entry = compute()
        return entry, note_use(CacheUse(artifact, key, "off", entry.compute_seconds, 0.0, entry.origin or key))
    entry = load()
    if entry is not None:
        return entry, note_use(CacheUse(artifact, key, "hit", entry.compute_seconds, 0.0, entry.origin or key))
    asked = time.perf_counter()
    with entry_lock(lock_dir, key, log=log, what=f"{artifact} cache"):
        wait = time.perf_counter() - asked
        entry = load()  # another run may have written it while we waited
        if entry is not None:
            return entry, note_use(CacheUse(artifact, key, "hit", entry.compute_seconds, wait, entry.origin or key))
        entry = compute()
        store(entry)
    return entry, note_use(CacheUse(artifact, key, "miss", entry.compute_seconds, wait, entry.origin or key))


# ------------------------------------------------------------------------------------------------
# the charge


def charged_seconds(incurred: float, uses: list[CacheUse]) -> tuple[float, bool]:
    """(seconds to charge, whether a reused entry's compute time is in them) for a phase whose own
    clock measured ``incurred`` seconds while it made ``uses``.

    charged = incurred - the waits + the compute time of every entry read (``hit``), each origin once
    and none whose origin this run computed itself (that time is already in ``incurred``). A use
    recorded without its wait (None, older records) is charged max(incurred, compute): a wait overlaps
    the computation waited for, so adding the two would count it twice.
    """
    own = {u.origin for u in uses if u.status != "hit"}
    charged = float(incurred) - sum(float(u.wait_seconds) for u in uses if u.wait_seconds is not None)
    charged = max(0.0, charged)
    seen: set[str] = set()
    reused = False
    floor = 0.0
    for u in uses:
        if u.status != "hit" or u.origin in own or u.origin in seen:
            continue
        seen.add(u.origin)
        reused = True
        if u.wait_seconds is None:
            floor = max(floor, float(u.compute_seconds))
        else:
            charged += float(u.compute_seconds)
    return max(charged, floor), reused


def legacy_uses(prepare: dict) -> list[CacheUse]:
    """The cache uses a run.json ``prepare`` dict of a run recorded before ``cache_uses`` existed
    describes: PT4AL's ``pretext_cache`` / ``pretext_train_seconds`` / ``pretext_wait_seconds`` and
    the representation's ``representation_*`` fields (all in the pretext phase)."""
    out = []
    for prefix, artifact in (("pretext", "pretext-losses"), ("representation", "representation")):
        status = str(prepare.get(f"{prefix}_cache", "")).lower()
        secs = prepare.get(f"{prefix}_train_seconds")
        if status not in STATUSES or not isinstance(secs, (int, float)):
            continue
        wait = prepare.get(f"{prefix}_wait_seconds")
        out.append(CacheUse(artifact, str(prepare.get(f"{prefix}_key") or artifact), status, float(secs),  # type: ignore[arg-type]
                            float(wait) if isinstance(wait, (int, float)) else None))
    return out


__all__ = ["CacheUse", "Entry", "charged_seconds", "collect_uses", "entry_lock", "legacy_uses", "load_or_compute",
           "note_use"]
