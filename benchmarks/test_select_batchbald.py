"""``select`` time and peak extra memory of BatchBALD beside BALD's, at the issue's size: N = 2,000 and
10,000 candidates, K = 10 picks, T = 100 MC-dropout passes, C = 10 classes, on the CPU.

    nice -n 19 python -m pytest benchmarks/test_select_batchbald.py -q --benchmark-json=PATH

Inputs come from :func:`benchmarks.conftest.make_case` (20 labeled images, so N + 20 in the pool; T
passes of posteriors of a random linear head's logits plus unit Gaussian noise per pass): BatchBALD
gets the (N, T, C) float32 posteriors, BALD the (N,) mutual informations reduced from the same
posteriors chunk by chunk as the engine does. BALD's ``select`` is then only a top-K, so its case also
times that reduction once (``mi_reduce_s`` in ``extra_info``, float64 mutual information over chunks
of 1,024 candidates): BALD's scoring plus select is ``mi_reduce_s`` plus its select time, the work
BatchBALD's first pick repeats inside its select.

BatchBALD runs with its defaults (``samples`` M = 40,000): with C = 10, picks 1-5 sum the joint
exactly over 1, 10, 100, 1,000 and 10,000 label configurations, picks 6-10 over 40,000 sampled ones,
each an (M, T) x (T, N * C) float64 product and M * N * C logarithms. ``extra_info`` records the
params, the sizes, the threads and ``peak_extra_mb`` (one call in a fresh process; see conftest) with
its ratio to the inputs. One round each: a select at N = 10,000 takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import time

import pytest
import torch

N_CANDIDATES = [2_000, 10_000]
BUDGET, PASSES, CLASSES, LABELED = 10, 100, 10, 20

# id: (strategy, params)
CASES = {
    "batchbald": ("batchbald", {"passes": PASSES}),
    "bald": ("bald", {"passes": PASSES}),
}


def _mi_reduce_seconds(case) -> float:
    """Seconds to reduce BatchBALD's raw (N, T, C) posteriors of the same pool to BALD's (N,) scores."""
    from albench.strategies.bald import mutual_information

    raw = case.inputs.candidates.stochastic
    t = time.perf_counter()
    torch.cat([mutual_information(raw[s:s + 1024]) for s in range(0, raw.shape[0], 1024)])
    return time.perf_counter() - t


@pytest.mark.parametrize("n", N_CANDIDATES, ids=lambda n: f"n{n // 1000}k")
@pytest.mark.parametrize("case_id", list(CASES))
def test_select(benchmark, select_case, peak_memory, case_id, n):
    name, params = CASES[case_id]
    case = select_case(name, params, n + LABELED, labeled=LABELED, budget=BUDGET, num_classes=CLASSES)
    assert len(case.inputs.candidates.indices) == n
    benchmark.group = f"batchbald vs bald, N = {n}"
    benchmark.extra_info.update(strategy=name, params=params, passes=PASSES, classes=CLASSES, **case.info())
    if name == "bald":
        raw = select_case("batchbald", {"passes": PASSES}, n + LABELED, labeled=LABELED, budget=BUDGET,
                          num_classes=CLASSES)
        benchmark.extra_info["mi_reduce_s"] = round(_mi_reduce_seconds(raw), 3)
        del raw
    picked = benchmark.pedantic(case.run, rounds=1, iterations=1)
    assert len(set(picked.tolist())) == BUDGET
    if name == "batchbald":
        benchmark.extra_info.update(samples=case.strategy.samples, sampled_picks=case.strategy.last_sampled,
                                    scores_nats=[round(s, 4) for s in case.strategy.last_scores])
    benchmark.extra_info.update(peak_memory(name, params, n + LABELED, labeled=LABELED, budget=BUDGET,
                                            num_classes=CLASSES))
