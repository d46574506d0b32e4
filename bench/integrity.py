"""Run integrity: what may happen to an existing run folder before and while a run writes it.

Before anything is queued (:func:`survey`, in the process that reads the config) every run folder
of the plan is checked for config drift (:mod:`albench.drift`) and damaged records; the CLI refuses
drift (exit 2) unless told to start those runs over, and leaves damaged runs alone unless told to
move them aside. Each run then executes inside :func:`claim` (in whichever process runs it): it holds
the run's lock (:mod:`albench.runlock`), checks the folder again, cleans leftover temp files and
writes the fingerprint before the first record.

Runs started over are never mixed with the old ones nor deleted: their folder moves to
``<sweep>/.replaced/<time>/<dataset>/<strategy>/seed-<n>/`` (dot-folders are not read as runs).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from albench import drift, runlock
from albench.paths import run_folder_links
from albench.records import DamagedRecord, check_records

REPLACED = ".replaced"
TMP_MIN_AGE_S = 0.0  # only ever cleaned under the run's lock, so no live writer owns them


@dataclass
class Survey:
    """What the existing folders of a plan hold that stops a plain rerun (each a list of (run, why))."""

    changed: list[tuple[object, list]] = field(default_factory=list)  # (RunConfig, [(key, old, new)])
    damaged: list[tuple[object, str]] = field(default_factory=list)
    busy: list[tuple[object, dict]] = field(default_factory=list)  # (RunConfig, lock contents)


def survey(plan: list) -> Survey:
    """Check every run folder of ``plan`` that exists; changes nothing on disk."""
    out = Survey()
    for rc in plan:
        run_dir = Path(rc.run_dir)
        if not run_dir.is_dir():
            continue
        holder = runlock.live_holder(run_dir)
        if holder is not None:
            out.busy.append((rc, holder))
        try:
            check_records(run_dir)
        except DamagedRecord as exc:
            out.damaged.append((rc, str(exc)))
            continue
        try:
            changes = drift.changed_keys(rc.to_dict(), run_dir)
        except drift.DamagedFingerprint as exc:
            out.damaged.append((rc, f"{exc}"))
            continue
        if changes:
            out.changed.append((rc, changes))
    return out


def replaced_dir(rc, stamp: str) -> Path:
    """Where :func:`move_aside` puts ``rc``'s folder."""
    return Path(rc.output) / rc.sweep / REPLACED / stamp / rc.dataset.name / rc.strategy.key / f"seed-{rc.seed}"


def move_aside(rc, stamp: str) -> Path:
    """Move ``rc``'s run folder under ``<sweep>/.replaced/<stamp>/``; returns the new path."""
    dest = replaced_dir(rc, stamp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(rc.run_dir, dest)
    return dest


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def clean_tmp(run_dir: Path) -> list[Path]:
    """Remove leftover ``.*.tmp`` files of killed atomic writes in a run folder (and its artifacts/);
    returns them. Call only while holding the run's lock or when no live process holds it."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "artifacts"):
        if os.path.islink(folder):  # never delete in a link's target
            continue
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(folder / name)
                    removed.append(folder / name)
                except OSError:
                    pass
    return removed


def clean_idle(plan: list) -> int:
    """:func:`clean_tmp` in every existing run folder of ``plan`` that no live process holds (complete
    ones included); returns how many files went."""
    n = 0
    for rc in plan:
        if Path(rc.run_dir).is_dir() and runlock.live_holder(rc.run_dir) is None:
            n += len(clean_tmp(rc.run_dir))
    return n


@contextmanager
def claim(rc) -> Iterator[tuple[str, str] | None]:
    """Hold ``rc``'s run lock while inside and check its folder; yields None when the run may go on,
    else (outcome state, why): ``busy`` (another live process writes it), ``damaged`` (status or
    fingerprint unreadable), ``changed`` (started with another config) or ``failed`` (the folder
    cannot be written). The folder is left untouched in every refused case."""
    run_dir = Path(rc.run_dir)
    links = run_folder_links(Path(rc.output), run_dir)  # before the lock: taking it creates the folders
    if links:
        yield "damaged", (f"{links[0]} is a symbolic link; albench never writes through links; fix: replace the "
                          "link by what it points to")
        return
    try:
        cm = runlock.hold(run_dir)
        lock = cm.__enter__()
    except OSError as exc:
        yield "failed", f"cannot write the run folder {run_dir}: {exc.strerror or exc}"
        return
    try:
        if not lock.held:
            yield "busy", f"another albench process is writing it ({runlock.describe_holder(lock.holder)})"
            return
        try:
            check_records(run_dir)
            changes = drift.changed_keys(rc.to_dict(), run_dir)
        except (DamagedRecord, drift.DamagedFingerprint) as exc:
            yield "damaged", f"{exc}; fix: rerun with --restart-damaged to move it aside and run it again"
            return
        if changes:
            yield "changed", (f"its folder was started with another config ({drift.describe(changes)}); "
                              "fix: set another name or --out, or rerun with --restart-changed")
            return
        clean_tmp(run_dir)
        try:
            drift.write_fingerprint(rc.to_dict(), run_dir)
        except OSError as exc:
            yield "failed", f"cannot write the run folder {run_dir}: {exc.strerror or exc}"
            return
        yield None
    finally:
        cm.__exit__(None, None, None)
