"""Environment fingerprint recorded with every run, so a reviewer knows what produced a number."""

from __future__ import annotations

import platform
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


def git_state(path: Path | None = None) -> dict:
    """{'sha': commit or None, 'dirty': bool or None} of the git tree holding the albench source."""
    path = path or Path(albench.__file__).resolve().parent.parent
    try:
        proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        sha = proc.stdout.strip()
        if proc.returncode != 0 or not sha:
            return {"sha": None, "dirty": None}
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


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
