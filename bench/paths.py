"""Paths given by users (config files, results folders, ``output``, data roots): checked before any
file-system call, so a path the OS cannot take is one line naming the field, never an ``OSError``.

- :func:`check_path_text`: not empty, no NUL byte, valid Unicode, at most :data:`MAX_PATH_BYTES`
  bytes in all and :data:`MAX_NAME_BYTES` in each component (Linux's PATH_MAX and NAME_MAX);
- :class:`PathText`: the same as a declared bound (``Annotated[str, PathText()]``), so a config
  field typed as a path is checked by the declared-params reader;
- :func:`read_input_file`: the bytes of a regular file of bounded size; a folder, a FIFO (which
  would block the reader forever) or a device is refused without being opened.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albench.errors import ConfigError

MAX_PATH_BYTES = 4095  # PATH_MAX (4096) less the terminating NUL
MAX_NAME_BYTES = 255  # NAME_MAX: one component (a file or folder name)


def path_problem(value: str) -> str | None:
    """Why the OS cannot take ``value`` as a path, or None."""
    if not value:
        return "is empty"
    if "\0" in value:
        return "holds a NUL byte"
    try:
        data = os.fsencode(value)
    except UnicodeEncodeError:
        return "holds characters that are not valid Unicode"
    if len(data) > MAX_PATH_BYTES:
        return f"is {len(data)} bytes long; paths stop at {MAX_PATH_BYTES}"
    longest = max(data.split(b"/"), key=len)
    if len(longest) > MAX_NAME_BYTES:
        return (f"has a component of {len(longest)} bytes ({longest[:24].decode(errors='replace')}...); "
                f"a file or folder name stops at {MAX_NAME_BYTES}")
    return None


def check_path_text(value: Any, field: str, fix: str) -> None:
    """ConfigError naming ``field`` unless ``value`` is a path the OS can take (see :func:`path_problem`)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(field, "must be a path", fix, value)
    problem = path_problem(os.fspath(value))
    if problem is not None:
        raise ConfigError(field, problem, fix, os.fspath(value))


@dataclass(frozen=True)
class PathText:
    """A declared bound for a path-valued config string (``Annotated[str, PathText()]``); ``fix`` is
    the message's fix (default: set the field to a valid path)."""

    fix: str = ""

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            check_path_text(value, path, self.fix or f"set {path} to a valid path of fewer bytes")


# pseudo file systems: no run folder nor tracking store can be written there (os.access cannot
# tell: root may "write" /proc)
PSEUDO_FS = ("/proc", "/sys", "/dev")


def check_creatable(p: str | Path, field: str, fix: str, value: Any, *, folder: bool = True) -> None:
    """ConfigError naming ``field`` unless ``p`` (a folder, or with ``folder=False`` a file) exists as
    such or can be created: not under a file, not in a pseudo file system (/proc, /sys, /dev), its
    nearest existing parent a folder this user may write in."""
    absolute = Path(os.path.abspath(p))
    fs = next((f for f in PSEUDO_FS if absolute == Path(f) or Path(f) in absolute.parents), None)
    if fs is not None:
        raise ConfigError(field, f"points into {fs}, a pseudo file system where nothing can be stored", fix, value)
    if folder and absolute.exists() and not absolute.is_dir():
        raise ConfigError(field, f"{absolute} is a file, not a folder", fix, value)
    probe = absolute if folder else absolute.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot be created: {probe} is not a folder this user may write in", fix, value)


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a regular file"


def read_input_file(path: str | Path, field: str, limit: int, fix: str) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most ``limit`` of them.

    ConfigError naming ``field`` when the path is malformed or too long, missing, not a regular file
    (a folder, a FIFO, a device: refused before it is opened, so nothing can block), larger than
    ``limit`` bytes, or unreadable."""
    check_path_text(path, field, fix)
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {p}", fix) from None
    except OSError as exc:
        raise ConfigError(field, f"cannot be read ({exc.strerror or exc})", fix, str(p)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(field, f"is not a regular file ({_kind(st.st_mode)}): {p}", fix)
    too_big = ConfigError(field, f"is larger than {limit // 1024} KiB, far more than such a file holds",
                          f"{fix} (is {p} the right file?)", str(p))
    if st.st_size > limit:
        raise too_big
    try:  # O_NONBLOCK: should the path have become a FIFO since the stat, opening it cannot block
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ConfigError(field, f"is not a regular file: {p}", fix)
            blob = fh.read(limit + 1)  # bounded even if the file grows between stat and read
    except OSError as exc:
        raise ConfigError(field, f"cannot be read ({exc.strerror or exc})", fix, str(p)) from None
    if len(blob) > limit:
        raise too_big
    return blob


def check_folder_arg(value: str, field: str, fix: str) -> Path:
    """``value`` as a Path when it names an existing folder; ConfigError naming ``field`` otherwise."""
    check_path_text(value, field, fix)
    p = Path(value)
    try:
        st = os.stat(p)
    except OSError:
        raise ConfigError(field, "is not a folder", fix, str(p)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(field, f"is not a folder ({_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'})",
                          fix, str(p))
    return p


# ---------------------------------------------------------------------------------------------
# symbolic links inside an output root

# the folders albench writes below the output root besides run folders: the pretext cache (per
# output root) and, per sweep, runs moved aside, Slurm's ledger and logs, the debug executor's files
ROOT_DOT_FOLDERS = (".cache", ".cache/pretext")
SWEEP_DOT_FOLDERS = (".replaced", ".slurm", ".submitit")
# folders albench writes inside a run folder
RUN_SUBFOLDERS = ("artifacts", "tensorboard")


def first_link(root: Path, relative: Path | str) -> Path | None:
    """The first path from ``root`` (exclusive: the output root itself may be a link a user made)
    down to ``root / relative`` that is a symbolic link, or None. Missing parts end the walk."""
    here = Path(root)
    for part in Path(relative).parts:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return here
        if not stat.S_ISDIR(st.st_mode):
            return None
    return None


def links_in(folder: Path) -> list[Path]:
    """The entries of ``folder`` that are symbolic links (none when it is missing or unreadable)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        try:
            if stat.S_ISLNK(os.lstat(Path(folder) / name).st_mode):
                out.append(Path(folder) / name)
        except OSError:
            continue
    return out


def run_folder_links(output: Path, run_dir: Path) -> list[Path]:
    """Symbolic links a run would write through or into: any folder from the output root down to the
    run folder, its artifacts/ and tensorboard/ folders, and any entry of the run folder or of those."""
    output, run_dir = Path(output), Path(run_dir)
    try:
        rel = run_dir.relative_to(output)
    except ValueError:
        rel = Path(run_dir.name)
        output = run_dir.parent
    found = first_link(output, rel)
    if found is not None:
        return [found]
    out = links_in(run_dir)
    for sub in RUN_SUBFOLDERS:
        if (run_dir / sub) not in out:
            out += links_in(run_dir / sub)
    return out


def refuse_links(links: list[Path], field: str = "output") -> None:
    """ConfigError naming the first of ``links`` (symbolic links where albench would write)."""
    if links:
        more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
        raise ConfigError(field, f"{links[0]} is a symbolic link inside the output root{more}; albench never "
                          "writes through links (records would land in the link's target)",
                          "replace the link by the folder or file it points to, or point output (--out) at the "
                          "real folder")
