"""Device choice and the CPU determinism settings."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """CUDA when present and ``name`` is 'auto', else the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from albench.errors import ConfigError

        raise ConfigError("device", "asks for CUDA but no GPU is visible", "set device: auto or cpu", name)
    return dev


def configure_torch(device: torch.device, threads: int | None) -> int:
    """Fix thread count and determinism; returns the number of CPU threads in use.

    On CPU the same thread count gives bit-identical numbers run to run. On CUDA, cuDNN autotuning is
    allowed (fast, but not bit-reproducible); queried indices stay seeded.
    """
    if threads is None:
        threads = max(1, (os.cpu_count() or 1))
    torch.set_num_threads(int(threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return int(threads)


def _load_pool_runtimes() -> None:
    """Import the libraries that bring their own BLAS or OpenMP runtime, so a limit set now reaches
    them (threadpoolctl acts on the runtimes loaded at the time): numpy's and scipy's BLAS,
    scikit-learn's OpenMP (k-means, kNN). Torch's are loaded with torch."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    import sklearn.utils._openmp_helpers  # noqa: F401


def limit_thread_pools(threads: int) -> list[dict]:
    """Run every thread pool of the process at ``threads``: torch's intra-op pool, and each BLAS
    (OpenBLAS, MKL, BLIS) and OpenMP runtime loaded (numpy's, scipy's, torch's, scikit-learn's),
    through threadpoolctl. Returns what the pools report after the change, one dict per runtime
    (``user_api`` blas/openmp, ``internal_api``, ``num_threads``, ``version``, ``filepath``), plus
    ``{"user_api": "torch", "num_threads": ...}`` (env.json ``thread_pools``).

    Process-wide: it stays set for later work in the same process, as ``torch.set_num_threads`` does.
    On a busy machine more threads than the run's share make OpenMP and BLAS code much slower (a
    thread that waits for a descheduled peer spins), so every library follows the run's ``threads``.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    _load_pool_runtimes()
    torch.set_num_threads(int(threads))
    threadpool_limits(limits=int(threads))
    pools = [{"user_api": "torch", "internal_api": "intra-op", "num_threads": torch.get_num_threads(),
              "version": torch.__version__, "filepath": None}]
    for p in threadpool_info():
        pools.append({k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "filepath")})
    return pools


def use_amp(device: torch.device, mode: str) -> bool:
    """Whether to autocast to bf16: 'auto' means on CUDA only."""
    if mode == "off":
        return False
    if mode == "bf16":
        return True
    return device.type == "cuda"
