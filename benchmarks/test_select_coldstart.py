"""Query time, its floor and peak extra memory of TypiClust and ProbCover (budget 1,000, 1,000 labeled).

The select benchmark's synthetic pool (:func:`benchmarks.conftest.make_case`'s embeddings: ReLU of a
10-cluster Gaussian mixture), L2-normalised, stands in for the SimCLR representation their
``prepare`` would train (the training is not timed here); on the CPU. Run::

    ALBENCH_BENCH_THREADS=1 nice -n 10 python -m pytest benchmarks/test_select_coldstart.py -q

Cases:

- ``typiclust-k<K>``: one query with ``max_clusters`` = K (K = 400, 500, 1,000) on 8,000 points of
  64-d (the size of a Fashion-MNIST or MNIST subset's small-CNN representation) and 50,000 of 512-d
  (CIFAR-10's ResNet-18 SimCLR). ``typiclust-sklearn-k500``: the same with the
  ``sklearn_minibatch_kmeans`` quirk (scikit-learn's MiniBatchKMeans, 3 seedings).
  Floor, measured in the same process right after the query, on the query's own clusters: one
  assignment pass (every point to its nearest of the K cluster means,
  :func:`albench.strategies.kmeans.nearest_centre`: the product any k-means that labels the pool
  makes once) plus the kNN typicality of every cluster (what the query computes for the clusters it
  picks from: all of them at this budget). ``extra_info``: ``floor_s``, ``floor_assign_s``,
  ``floor_knn_s``, ``over_floor`` (query time / floor) and ``over_assign`` (query time / one pass).
- ``probcover-purity``: the purity rule of ``prepare`` (k-means with K = 10, then one blockwise pass
  for each point's nearest other-label distance). Its delta is recorded in ``extra_info``. (10k, 50k)
- ``probcover-graph``: the delta-ball graph of ``prepare`` at a fixed delta = 0.84, about the 1%
  quantile of the pairwise distances of this pool (mean ball ~100 points at 10k, ~650 at 50k). On
  this mixture the purity rule's delta (~1.04) gives balls of ~1,000 points at 10k and would pass
  the default ``max_edges`` at 50k (refused).
- ``probcover``: one greedy max-coverage query on that graph. Floor, in the same process: the one
  pass over every edge the greedy cannot skip, counting each node's uncovered out-neighbours once
  (:func:`albench.strategies.probcover.uncovered_degrees`). ``extra_info``: ``floor_s``,
  ``over_floor``, ``graph_mb`` and (from the memory probe) ``peak_extra_over_graph``.

Peak extra memory is measured as in conftest (a fresh process, VmHWM above VmRSS after the inputs
are built).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from albench.engine.device import limit_thread_pools
from benchmarks.conftest import REPO, THREADS, _pool_arrays, _status_kb, _trim_heap

BUDGET = 1000
LABELED = 1000
GRAPH_DELTA = 0.84
TYPICLUST_POOLS = {8_000: 64, 50_000: 512}  # pool size: feature dim
TYPICLUST_CASES = ["typiclust-k400", "typiclust-k500", "typiclust-k1000", "typiclust-sklearn-k500"]
PROBCOVER_POOLS = [10_000, 50_000]
PROBCOVER_CASES = ["probcover-purity", "probcover-graph", "probcover"]


def _features(pool_size: int, dim: int = 512) -> np.ndarray:
    from albench.strategies.pretext.features import l2_normalize

    return l2_normalize(_pool_arrays(pool_size, dim, 10, 0)["embeddings"].numpy())


def _typiclust(case: str, pool_size: int, feats: np.ndarray, pool, info: dict):
    import albench.strategies.typiclust as tc
    from albench.strategies.kmeans import nearest_centre
    from albench.strategies.registry import make_strategy

    k = int(case.rsplit("-k", 1)[1])
    st = make_strategy("typiclust", {"max_clusters": k, "kmeans": "sklearn" if "sklearn" in case else "albench"})
    st.features_ = feats
    seen: dict = {}
    real = tc.cluster_pool

    def spy(*a, **kw):  # keeps the query's clusters for the floor (no cost inside the timed call)
        seen["clusters"] = real(*a, **kw)
        return seen["clusters"]

    def query():
        tc.cluster_pool = spy
        try:
            t = time.perf_counter()
            out = st.select(cycle=1, budget=BUDGET, pool=pool, inputs=None, rng=np.random.default_rng(3))
            info["query_s"] = time.perf_counter() - t
        finally:
            tc.cluster_pool = real
        return out

    def floor() -> None:
        clusters = seen["clusters"]
        x = torch.from_numpy(feats)
        lab = torch.from_numpy(clusters)
        counts = torch.bincount(lab, minlength=k).double()
        means = (torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, lab, x.double())
                 / counts.clamp(min=1)[:, None]).float()
        t = time.perf_counter()
        nearest_centre(x, means)
        assign = time.perf_counter() - t
        t = time.perf_counter()
        for c in range(k):
            m = torch.nonzero(lab == c).flatten()
            if len(m) > 5:  # the clusters the query keeps (min_cluster_size 5)
                tc.mean_knn_distance(x[m], min(20, len(m) // 2))
        knn = time.perf_counter() - t
        info.update(clusters=k, floor_assign_s=round(assign, 4), floor_knn_s=round(knn, 4),
                    floor_s=round(assign + knn, 4), over_floor=round(info["query_s"] / (assign + knn), 3),
                    over_assign=round(info["query_s"] / assign, 3))

    return query, floor


def build(case: str, pool_size: int):
    """(call, info, after): the timed call of ``case`` with its inputs built (untimed), and what
    measures its floor after it (None where none is defined)."""
    from albench.strategies.base import PoolState
    from albench.strategies.probcover import (DEFAULT_GRID, kmeans_labels, other_label_distance, purity_delta,
                                              uncovered_degrees)
    from albench.strategies.registry import make_strategy

    dim = TYPICLUST_POOLS.get(pool_size, 512) if case.startswith("typiclust") else 512
    feats = _features(pool_size, dim)
    labeled = np.sort(np.random.default_rng(0).permutation(pool_size)[:LABELED])
    pool = PoolState(images=torch.zeros(pool_size, 1, 1, 1, dtype=torch.uint8), labeled=labeled,
                     labeled_targets=torch.zeros(LABELED, dtype=torch.long), num_classes=10)
    info = {"pool_size": pool_size, "dim": dim, "labeled": LABELED, "budget": BUDGET,
            "threads": torch.get_num_threads(), "features_mb": round(feats.nbytes / 2**20, 2)}
    if case.startswith("typiclust"):
        query, floor = _typiclust(case, pool_size, feats, pool, info)
        return query, info, floor
    if case == "probcover-purity":
        def purity_rule():
            other = other_label_distance(feats, kmeans_labels(feats, 10, 0))
            info["delta"] = purity_delta(other, DEFAULT_GRID, 0.95)
            return other
        return purity_rule, info, None
    st = make_strategy("probcover", {"delta": GRAPH_DELTA})
    if case == "probcover-graph":
        def graph():
            out = st.fit_graph(feats, num_classes=10, seed=0, log=lambda s: None)
            info["edges"] = out["probcover_edges"]
            return out
        return graph, info, None
    st.fit_graph(feats, num_classes=10, seed=0, log=lambda s: None)
    indptr, targets = st._graph
    info.update(edges=int(len(targets)), graph_mb=round((indptr.nbytes + targets.nbytes) / 2**20, 2))

    def greedy():
        t = time.perf_counter()
        out = st.select(cycle=1, budget=BUDGET, pool=pool, inputs=None, rng=np.random.default_rng(3))
        info["query_s"] = time.perf_counter() - t
        return out

    def floor() -> None:
        covered = np.zeros(pool_size, dtype=bool)
        for x in labeled:
            covered[targets[indptr[x]:indptr[x + 1]]] = True
        t = time.perf_counter()
        uncovered_degrees(indptr, targets, covered)
        info["floor_s"] = round(time.perf_counter() - t, 4)
        info["over_floor"] = round(info["query_s"] / info["floor_s"], 3)
    return greedy, info, floor


def _probe_main() -> None:
    spec = json.loads(sys.argv[1])
    limit_thread_pools(spec["threads"])
    warm, _, _ = build(spec["case"], 2000)
    warm()
    del warm
    call, _, _ = build(spec["case"], spec["pool_size"])
    _trim_heap()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kb("VmRSS")
    call()
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak_extra_mb": round((peak - base) / 1024, 2), "rss_before_mb": round(base / 1024, 2)}))


def peak_extra(case: str, pool_size: int) -> dict:
    code = "from benchmarks.test_select_coldstart import _probe_main; _probe_main()"
    spec = {"case": case, "pool_size": pool_size, "threads": THREADS}
    res = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe for {case} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _run(benchmark, case: str, pool_size: int) -> None:
    call, info, after = build(case, pool_size)
    benchmark.group = f"cold start, pool {pool_size // 1000}k"
    out = benchmark.pedantic(call, rounds=1, iterations=1)
    if after is not None:
        after()  # the floor, in the same process right after the query (not in the memory probe)
    if case.startswith("typiclust") or case == "probcover":
        assert len(set(np.asarray(out).tolist())) == BUDGET  # a valid query, not just a fast one
    benchmark.extra_info.update(case=case, **info)
    mem = peak_extra(case, pool_size)
    benchmark.extra_info.update(mem)
    if "graph_mb" in info:
        benchmark.extra_info["peak_extra_over_graph"] = round(mem["peak_extra_mb"] / info["graph_mb"], 3)


@pytest.mark.parametrize("pool_size", list(TYPICLUST_POOLS), ids=lambda n: f"pool{n // 1000}k")
@pytest.mark.parametrize("case", TYPICLUST_CASES)
def test_typiclust_query(benchmark, case, pool_size):
    _run(benchmark, case, pool_size)


@pytest.mark.parametrize("pool_size", PROBCOVER_POOLS, ids=lambda n: f"pool{n // 1000}k")
@pytest.mark.parametrize("case", PROBCOVER_CASES)
def test_probcover_step(benchmark, case, pool_size):
    _run(benchmark, case, pool_size)
