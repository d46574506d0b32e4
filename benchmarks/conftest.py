"""Shared pieces for the ``select`` benchmarks: synthetic inputs, peak-memory probes, JSON output.

Run (from the repo root; the default ``pytest`` run never collects this folder, testpaths = tests)::

    nice -n 10 python -m pytest benchmarks -q

Results are written as pytest-benchmark JSON to ``results/benchmarks/bench-<UTC time>.json``
unless ``--benchmark-json=PATH`` is given. Select a subset with ``-k``, e.g. ``-k coreset``.
Everything runs on the CPU with every thread pool (torch's, and each BLAS and OpenMP runtime's, as a
run sets them: :func:`albench.engine.device.limit_thread_pools`) at ``ALBENCH_BENCH_THREADS`` threads
(default ``os.cpu_count()``).

What a benchmark file gets from here:

- :func:`make_case` / the ``select_case`` fixture: a strategy plus the ``PoolState`` and ``Inputs``
  the engine would hand to its ``select`` at cycle 1 for a synthetic pool (``pool_size`` images,
  ``labeled`` of them labeled, ``dim``-d non-negative embeddings from a 10-cluster mixture, logits
  from a random linear head, posteriors, confidence, random aux scores, random uint8 images of
  ``image_shape``; for a :class:`StochasticPasses` need, T passes of posteriors of the logits plus
  Gaussian noise, reduced chunk by chunk with the strategy's ``reduce`` as the engine does).
  Candidates come from the strategy's own ``candidates`` hook, and only the
  declared ``needs`` are filled, as in the engine. ``case.run()`` calls ``select`` once.
- :func:`peak_extra_memory` / the ``peak_memory`` fixture: the peak extra resident memory of one
  ``select`` call, measured in a fresh child process (see below), as a dict for
  ``benchmark.extra_info``.

How peak memory is measured: torch's CPU tensors do not go through Python's allocator, so
tracemalloc cannot see them. The child process builds the case, runs one warm-up ``select`` on a
small pool (to load lazily initialised libraries and thread pools), frees it, returns freed heap
pages to the OS (``malloc_trim``), resets the kernel's peak-RSS counter (writing ``5`` to
``/proc/self/clear_refs``), reads ``VmRSS``, runs ``select`` once and reads ``VmHWM``. The
difference is the largest amount of memory the call touched at one time beyond what existed before
it (page granularity, Linux only). Memory that is allocated but never touched does not count, as
it costs nothing.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from albench.engine.device import limit_thread_pools
from albench.strategies.base import Inputs, Need, Outputs, PoolState, StochasticPasses, Strategy
from albench.strategies.registry import make_strategy

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "benchmarks"
THREADS = int(os.environ.get("ALBENCH_BENCH_THREADS", os.cpu_count() or 1))


def pytest_configure(config):
    """Default the JSON report to results/benchmarks/ (pytest-benchmark reads it after this hook)."""
    if getattr(config.option, "benchmark_json", None) is None and hasattr(config.option, "benchmark_json"):
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        config.option.benchmark_json = open(RESULTS / f"bench-{stamp}.json", "wb")  # the plugin closes it
    limit_thread_pools(THREADS)


# ---------------------------------------------------------------------------------------------
# Synthetic select inputs


@dataclass
class SelectCase:
    """One ``select`` call ready to run, with what a report needs to know about its size."""

    strategy: Strategy
    pool: PoolState
    inputs: Inputs
    budget: int
    seed: int

    def run(self) -> np.ndarray:
        return self.strategy.select(cycle=1, budget=self.budget, pool=self.pool, inputs=self.inputs,
                                    rng=np.random.default_rng(self.seed))

    @property
    def input_bytes(self) -> int:
        """Bytes of every tensor handed to ``select`` in ``inputs`` (candidates + labeled)."""
        total = 0
        for out in (self.inputs.candidates, self.inputs.labeled):
            for name in ("logits", "posteriors", "confidence", "embeddings", "aux", "stochastic"):
                t = None if out is None else getattr(out, name)
                total += 0 if t is None else t.numel() * t.element_size()
        return total

    @property
    def embedding_bytes(self) -> int:
        """Bytes of the embedding matrices handed to ``select`` (candidates + labeled), 0 if none."""
        total = 0
        for out in (self.inputs.candidates, self.inputs.labeled):
            if out is not None and out.embeddings is not None:
                total += out.embeddings.numel() * out.embeddings.element_size()
        return total

    def info(self) -> dict:
        return {"pool_size": self.pool.size, "candidates": int(len(self.inputs.candidates.indices)),
                "labeled": int(len(self.pool.labeled)), "budget": self.budget, "threads": torch.get_num_threads(),
                "embedding_mb": round(self.embedding_bytes / 2**20, 2), "input_mb": round(self.input_bytes / 2**20, 2)}


def _pool_arrays(pool_size: int, dim: int, num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """Embeddings (ReLU of a 10-cluster Gaussian mixture), logits of a random linear head, aux scores."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(10, dim, generator=g)
    emb = torch.randn(pool_size, dim, generator=g)
    emb.add_(means[torch.randint(0, 10, (pool_size,), generator=g)]).relu_()
    logits = emb @ (torch.randn(dim, num_classes, generator=g) / dim ** 0.5)
    return {"embeddings": emb, "logits": logits, "aux": torch.randn(pool_size, generator=g)}


def make_case(strategy: str, params: dict | None, pool_size: int, *, labeled: int = 1000, budget: int = 1000,
              dim: int = 512, num_classes: int = 10, image_shape: tuple[int, ...] = (1, 1, 1),
              seed: int = 0) -> SelectCase:
    """The select call of ``strategy`` at cycle 1 on a synthetic pool (see the module docstring).

    All tensors are on the CPU; candidate and labeled outputs are fresh copies, as the engine makes.
    """
    s = make_strategy(strategy, params or {})
    arrays = _pool_arrays(pool_size, dim, num_classes, seed)
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randint(0, 256, (pool_size, *image_shape), dtype=torch.uint8, generator=g)
    lab = np.sort(np.random.default_rng(seed).permutation(pool_size)[:labeled])
    targets = torch.randint(0, num_classes, (labeled,), generator=g)
    pool = PoolState(images=images, labeled=lab, labeled_targets=targets, num_classes=num_classes)
    cand = np.asarray(s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(seed + 2)), dtype=np.int64)

    def outputs(idx: np.ndarray) -> Outputs:
        t = torch.from_numpy(idx)
        out = Outputs(indices=idx)
        logits = arrays["logits"][t]
        if Need.LOGITS in s.needs:
            out.logits = logits
        if Need.POSTERIORS in s.needs or Need.CONFIDENCE in s.needs:
            post = torch.softmax(logits, dim=1)
            out.posteriors = post if Need.POSTERIORS in s.needs else None
            out.confidence = post.max(dim=1).values if Need.CONFIDENCE in s.needs else None
        if Need.EMBEDDINGS in s.needs:
            out.embeddings = arrays["embeddings"][t]
        if Need.AUX in s.needs:
            out.aux = arrays["aux"][t]
        spec = next((n for n in s.needs_for("classification") if isinstance(n, StochasticPasses)), None)
        if spec is not None:
            out.stochastic = stochastic_rows(logits, spec, seed)
        return out

    inputs = Inputs(candidates=outputs(cand), labeled=outputs(lab) if Need.LABELED in s.needs else None,
                    device=torch.device("cpu"))
    del arrays
    return SelectCase(strategy=s, pool=pool, inputs=inputs, budget=budget, seed=seed + 3)


def stochastic_rows(logits: torch.Tensor, spec: StochasticPasses, seed: int, chunk: int = 1024) -> torch.Tensor:
    """What the engine hands a StochasticPasses need: per chunk of ``chunk`` rows, (b, T, C) posteriors of
    ``logits`` plus unit Gaussian noise per pass, reduced by ``spec.reduce`` (or kept whole without one)."""
    g = torch.Generator().manual_seed(seed + 4)
    rows = []
    for s in range(0, logits.shape[0], chunk):
        lg = logits[s:s + chunk]
        probs = torch.softmax(lg.unsqueeze(1) + torch.randn(lg.shape[0], spec.passes, lg.shape[1], generator=g), dim=2)
        rows.append(probs if spec.reduce is None else spec.reduce(probs))
    return torch.cat(rows)


@pytest.fixture
def select_case():
    """The :func:`make_case` factory."""
    return make_case


# ---------------------------------------------------------------------------------------------
# Peak memory, in a child process


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M).group(1))


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed heap pages may stay resident (under-counts)
        pass


def _probe(spec: dict) -> dict:
    """Runs in the child: warm up, reset the peak-RSS counter, run one select, report the delta."""
    limit_thread_pools(spec["threads"])
    kw = dict(spec["case"])
    warm = make_case(spec["strategy"], spec["params"], min(spec["pool_size"], 2000),
                     **{**kw, "labeled": min(kw.get("labeled", 1000), 200), "budget": min(kw.get("budget", 1000), 50)})
    warm.run()
    del warm
    case = make_case(spec["strategy"], spec["params"], spec["pool_size"], **kw)
    gc.collect()
    _trim_heap()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    base = _status_kb("VmRSS")
    case.run()
    peak = _status_kb("VmHWM")
    return {"peak_extra_mb": round((peak - base) / 1024, 2), "rss_before_mb": round(base / 1024, 2),
            "embedding_mb": round(case.embedding_bytes / 2**20, 2), "input_mb": round(case.input_bytes / 2**20, 2),
            "peak_extra_over_inputs": round((peak - base) * 1024 / case.input_bytes, 3) if case.input_bytes else None,
            "peak_extra_over_embeddings": round((peak - base) * 1024 / case.embedding_bytes, 3)
            if case.embedding_bytes else None}


def _probe_main() -> None:
    print(json.dumps(_probe(json.loads(sys.argv[1]))))


def peak_extra_memory(strategy: str, params: dict | None, pool_size: int, *, threads: int = THREADS,
                      **case_kw) -> dict:
    """Peak extra resident memory (MiB) of one ``select`` call, measured in a fresh process.

    Returns ``{"peak_extra_mb", "rss_before_mb", "embedding_mb", "input_mb", "peak_extra_over_inputs",
    "peak_extra_over_embeddings"}``.
    """
    spec = {"strategy": strategy, "params": params or {}, "pool_size": pool_size, "threads": threads,
            "case": case_kw}
    code = "from benchmarks.conftest import _probe_main; _probe_main()"
    res = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe for {strategy} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def peak_memory():
    """The :func:`peak_extra_memory` function."""
    return peak_extra_memory
