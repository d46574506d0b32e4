"""Environment fingerprint recorded with every run, so a reviewer knows what produced a number."""

from __future__ import annotations

import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import torch

import albench
from albench.engine.malloc import malloc_state


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where available."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(package_dir: Path | None = None) -> dict:
    """Which albench source made a run: ``{'sha', 'dirty', 'source'}``.

    ``source`` is ``git`` when the albench package is the ``bench/`` folder of a git work tree's root
    (``sha``: its HEAD; ``dirty``: whether tracked files differ from it), ``archive`` when the source
    was unpacked from ``git archive`` (``sha``: the commit the archive stamped into
    ``_source.py``; ``dirty``: None, unknowable), and None when neither (for instance a ``pip
    install`` from a work tree: sha and dirty None). A package that merely sits inside some other
    repository (a virtual environment in a user's project) is not that repository's commit.
    """
    package_dir = (package_dir or Path(albench.__file__).parent).resolve()
    root = package_dir.parent
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--verify", "-q", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        lines = proc.stdout.split()
        if proc.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == root:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return {"sha": lines[1], "dirty": bool(dirty), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        stamp = re.search(r'ARCHIVE_SHA = "([0-9a-f]{40})"', (package_dir / "_source.py").read_text())
    except OSError:
        stamp = None
    if stamp:
        return {"sha": stamp.group(1), "dirty": None, "source": "archive"}
    return {"sha": None, "dirty": None, "source": None}


def fingerprint(device: torch.device, threads: int | None = None, *, thread_pools: list[dict] | None = None) -> dict:
    """Python, torch, CUDA and cuDNN versions, the device model, host name, CPU threads, the thread
    pools as set for the run (``thread_pools``: torch's and each BLAS / OpenMP runtime's thread
    count, see :func:`albench.engine.device.limit_thread_pools`; None when not given), the malloc
    settings (see albench.engine.malloc), git state."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        dev_name = torch.cuda.get_device_name(idx)
    else:
        dev_name = cpu_model()
    return {
        "albench": albench.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": dev_name,
        "cpu": cpu_model(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "thread_pools": thread_pools,
        "malloc": malloc_state(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "git": git_state(),
    }
