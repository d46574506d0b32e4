"""The cost of T = 100 MC-dropout passes against one plain pass, for dbal-cnn and small-cnn.

A model that declares its stochastic split (``forward_prefix`` / ``forward_suffix``) runs the
deterministic prefix once per batch and only the suffix T times ("cheap passes"); without the split
every pass runs the whole network ("full passes"). Both draw the same masks (tests/test_mc_passes.py).

Cases, each on one batch of ``BATCH`` random images in eval mode, on the CPU:

- ``plain``: one pass with dropout off (the denominator);
- ``cheap-T100``: :func:`albench.engine.inference.stochastic_posteriors` with the split;
- ``full-T100``: the same with ``split=False`` (one round: it is ~T plain passes).

Every timed round of a T = 100 case is preceded, in its setup, by one plain pass timed on the same
batch, so ``extra_info["ratio_to_plain"]`` divides the case's median wall-clock by the median plain
pass measured in the same rounds, and ``extra_info["cpu_ratio_to_plain"]`` does the same with the
process's CPU time (``time.process_time``; one thread). The machine is shared and busy: the wall-clock
of a single thread swings with the other processes on the 2 cores, its CPU time much less, so the
CPU-time ratio is the steadier measure of the work; both are reported.

Models: ``dbal-cnn`` (Gal et al. 2017, MNIST 1 x 28 x 28; the issue's goal: cheap T = 100 within 10x
of a plain pass, against ~100x for full passes; FLOP floor ~6.7x: of a pass's 17.5 MFLOP the dense
layer after the first dropout is 1 MFLOP and runs T times), with and without channels-last
activations; ``small-cnn`` (width 32, dropout 0.5 before its final layer, 3 x 32 x 32: the whole
network but the last linear layer is the prefix). Run::

    ALBENCH_BENCH_THREADS=1 nice -n 10 python -m pytest benchmarks/test_mc_passes.py -q
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from albench.engine.inference import seeded_dropout, stochastic_posteriors
from albench.models.registry import build_model

T = 100
BATCH = 256
CPU = torch.device("cpu")

MODELS = {
    "dbal-cnn": ("dbal-cnn", {}, (1, 28, 28), False),
    "dbal-cnn-channels-last": ("dbal-cnn", {}, (1, 28, 28), True),
    "small-cnn": ("small-cnn", {"width": 32, "dropout": 0.5}, (3, 32, 32), False),
}


def _setup(key: str):
    name, params, shape, channels_last = MODELS[key]
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1:], params=params).eval()
    x = torch.rand(BATCH, *shape, generator=torch.Generator().manual_seed(1))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def _plain(model, x) -> tuple[float, float]:
    """(wall-clock s, CPU s) of one plain pass."""
    with torch.inference_mode():
        start, cpu = time.perf_counter(), time.process_time()
        model(x)
        return time.perf_counter() - start, time.process_time() - cpu


@pytest.mark.parametrize("key", list(MODELS))
def test_plain_pass(benchmark, key):
    model, x = _setup(key)
    _plain(model, x)  # warm-up

    def run():
        with torch.inference_mode():
            model(x)

    benchmark.extra_info.update({"model": key, "batch": BATCH, "threads": torch.get_num_threads()})
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)


@pytest.mark.parametrize("mode", ["cheap", "full"])
@pytest.mark.parametrize("key", list(MODELS))
def test_t100_passes(benchmark, key, mode):
    model, x = _setup(key)
    _plain(model, x)
    plains: list[tuple[float, float]] = []
    cpus: list[float] = []

    def setup():
        plains.append(_plain(model, x))  # the denominator, measured right before each timed round
        return (), {}

    def run():
        cpu = time.process_time()
        with torch.inference_mode(), seeded_dropout(model, 0, CPU) as masks:
            stochastic_posteriors(model, x, masks, T, device=CPU, split=(mode == "cheap"))
        cpus.append(time.process_time() - cpu)

    rounds = 7 if mode == "cheap" else 1
    benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=0)
    timed = benchmark.stats.stats.median
    plain_wall = statistics.median(p[0] for p in plains)
    plain_cpu = statistics.median(p[1] for p in plains)
    benchmark.extra_info.update({"model": key, "mode": mode, "passes": T, "batch": BATCH,
                                 "threads": torch.get_num_threads(),
                                 "plain_median_s": plain_wall, "ratio_to_plain": timed / plain_wall,
                                 "cpu_median_s": statistics.median(cpus), "plain_cpu_median_s": plain_cpu,
                                 "cpu_ratio_to_plain": statistics.median(cpus) / plain_cpu})
