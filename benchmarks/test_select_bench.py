"""``select`` time and peak extra memory of random, the uncertainty strategies, Core-Set, the GCNs,
BADGE and BALD.

Pools of 10k and 50k synthetic images with 512-d embeddings, 1,000 labeled, a budget of 1,000, on
the CPU (inputs from :func:`benchmarks.conftest.make_case`). Run::

    nice -n 10 python -m pytest benchmarks/test_select_bench.py -q

The JSON (results/benchmarks/bench-<UTC time>.json unless ``--benchmark-json=PATH``) holds per
benchmark the timings and, in ``extra_info``: sizes, threads, ``peak_extra_mb`` (one call, in a fresh
process; see conftest) and its ratio to the embedding matrices, and for Core-Set the
memory-bandwidth floor measured in the same rounds.

Core-Set runs on the whole pool (``subset: null``) so that the pool size matters; its target at
50k x 512 with K = 1,000 is a select time within 1.5x of the floor and a peak extra memory under
2x the embedding matrix. The floor is K passes of one fused distance update
``|x|^2 - 2 X c`` over every candidate row (``torch.addmv`` into a preallocated vector: the least
work a greedy step over the (N, d) candidate matrix can do), timed in the setup of every round,
right before the timed ``select``.

BADGE runs on the whole pool (its default). Its target at 50k x 512, 10 classes, K = 1,000 is a select
time within 2x of its floor and a peak extra memory under 2x its inputs (embeddings + posteriors).
The floor is K passes over the N x (C + d) factors, each the two matrix-vector products a step
cannot avoid (``a @ a_j`` and ``h @ h_j`` into preallocated vectors), timed in the setup of every
round. BALD's select is a top-K over the (N,) scores the engine reduced; its inputs are made as the
engine makes them (20 passes of noisy posteriors, reduced per chunk of 1,024 by its mutual
information), outside the timed call.

The GCN strategies keep their default ``subset: 10000`` (graphs of ~10-11k nodes at both pool
sizes; the whole 50k pool would need a 10 GB adjacency and is refused by ``max_adjacency_gb``).
They are timed with the full 200 steps, one round each; their memory probe runs 3 steps, since
every step allocates the same buffers (the adjacency is built once before the first). The
``-lowrank`` cases run the same GCNs with ``adjacency: lowrank`` (the same operator, never built).
"""

from __future__ import annotations

import time

import pytest
import torch

POOLS = [10_000, 50_000]
BUDGET = 1000

# id: (strategy, params, rounds)
CASES = {
    "random": ("random", {}, 5),
    "least-confidence": ("least-confidence", {}, 5),
    "entropy": ("entropy", {}, 5),
    "margin": ("margin", {}, 5),
    "coreset": ("coreset", {"subset": None}, 3),
    "uncertaingcn": ("uncertaingcn", {}, 1),
    "coregcn": ("coregcn", {}, 1),
    "uncertaingcn-lowrank": ("uncertaingcn", {"adjacency": "lowrank"}, 1),
    "coregcn-lowrank": ("coregcn", {"adjacency": "lowrank"}, 1),
    "badge": ("badge", {}, 3),
    "bald": ("bald", {}, 5),
}
GCN_MEMORY_PROBE = {"steps": 3}


def _floor_pass(x: torch.Tensor):
    """One fused distance update of every row of ``x`` to one center (see the module docstring)."""
    sq = torch.linalg.vector_norm(x, dim=1).square_()
    c = x[0].clone()
    out = torch.empty_like(sq)

    def one_pass() -> None:
        torch.addmv(sq, x, c, alpha=-2.0, out=out)

    return one_pass


def _badge_floor_pass(case):
    """One pass over BADGE's N x (C + d) factors: the two matrix-vector products of a step."""
    from albench.strategies.badge import gradient_factors

    c = case.inputs.candidates
    a, h = gradient_factors(c.posteriors, c.embeddings)
    out_a, out_h = torch.empty(a.shape[0]), torch.empty(a.shape[0])
    a_j, h_j = a[0].clone(), h[0].clone()

    def one_pass() -> None:
        torch.mv(a, a_j, out=out_a)
        torch.mv(h, h_j, out=out_h)

    return one_pass


@pytest.mark.parametrize("pool_size", POOLS, ids=lambda n: f"pool{n // 1000}k")
@pytest.mark.parametrize("case_id", list(CASES))
def test_select(benchmark, select_case, peak_memory, case_id, pool_size):
    name, params, rounds = CASES[case_id]
    case = select_case(name, params, pool_size, budget=BUDGET)
    benchmark.group = f"pool {pool_size // 1000}k"
    benchmark.extra_info.update(strategy=name, params=params, **case.info())
    setup = None
    floors: list[float] = []
    if name in ("coreset", "badge"):
        one_pass = _floor_pass(case.inputs.candidates.embeddings) if name == "coreset" else _badge_floor_pass(case)

        def setup() -> None:
            t = time.perf_counter()
            for _ in range(BUDGET):
                one_pass()
            floors.append(time.perf_counter() - t)

    picked = benchmark.pedantic(case.run, setup=setup, rounds=rounds, iterations=1)
    assert len(set(picked.tolist())) == BUDGET  # a valid query, not just a fast one

    if floors:
        times = benchmark.stats.stats
        benchmark.extra_info.update(
            floor_s_min=round(min(floors), 3), floor_s_all=[round(f, 3) for f in floors],
            select_over_floor_min=round(times.min / min(floors), 3),
            select_over_floor_median=round(times.median / sorted(floors)[len(floors) // 2], 3))
    probe = {**params, **(GCN_MEMORY_PROBE if "gcn" in name else {})}
    mem = peak_memory(name, probe, pool_size, budget=BUDGET)
    benchmark.extra_info.update(mem)
