"""Query time and peak extra memory of TypiClust and ProbCover at 10k and 50k (512-d, budget 1,000).

The select benchmark's synthetic pool (:func:`benchmarks.conftest.make_case`'s embeddings: ReLU of a
10-cluster Gaussian mixture, 512-d), L2-normalised, stands in for the SimCLR representation their
``prepare`` would train (the training is not timed here); 1,000 points are labeled, and the query
takes 1,000, on the CPU. Run::

    nice -n 10 python -m pytest benchmarks/test_select_coldstart.py -q

Cases:

- ``typiclust``: one query, K = min(1,000 + 1,000, 500) = 500 clusters (mini-batch k-means) and the
  per-cluster kNN typicality.
- ``probcover-purity``: the purity rule of ``prepare`` (k-means with K = 10, then one blockwise pass
  for each point's nearest other-label distance). Its delta is recorded in ``extra_info``.
- ``probcover-graph``: the delta-ball graph of ``prepare`` at a fixed delta = 0.84, about the 1%
  quantile of the pairwise distances of this pool (mean ball ~100 points at 10k, ~500 at 50k). On
  this mixture the purity rule's delta (~1.04) gives balls of ~1,000 points at 10k and would pass
  the default ``max_edges`` at 50k (refused).
- ``probcover``: one greedy max-coverage query on that graph.

Peak extra memory is measured as in conftest (a fresh process, VmHWM above VmRSS after the inputs
are built).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.conftest import REPO, THREADS, _pool_arrays, _status_kb, _trim_heap

POOLS = [10_000, 50_000]
BUDGET = 1000
LABELED = 1000
GRAPH_DELTA = 0.84
CASES = ["typiclust", "probcover-purity", "probcover-graph", "probcover"]


def _features(pool_size: int) -> np.ndarray:
    from albench.strategies.pretext.features import l2_normalize

    return l2_normalize(_pool_arrays(pool_size, 512, 10, 0)["embeddings"].numpy())


def build(case: str, pool_size: int):
    """(call, info): the timed call of ``case`` with its inputs built (untimed)."""
    from albench.strategies.base import PoolState
    from albench.strategies.probcover import kmeans_labels, other_label_distance, purity_delta, DEFAULT_GRID
    from albench.strategies.registry import make_strategy

    feats = _features(pool_size)
    labeled = np.sort(np.random.default_rng(0).permutation(pool_size)[:LABELED])
    pool = PoolState(images=torch.zeros(pool_size, 1, 1, 1, dtype=torch.uint8), labeled=labeled,
                     labeled_targets=torch.zeros(LABELED, dtype=torch.long), num_classes=10)
    info = {"pool_size": pool_size, "dim": 512, "labeled": LABELED, "budget": BUDGET,
            "threads": torch.get_num_threads(), "features_mb": round(feats.nbytes / 2**20, 2)}
    if case == "typiclust":
        st = make_strategy("typiclust")
        st.features_ = feats
        return (lambda: st.select(cycle=1, budget=BUDGET, pool=pool, inputs=None, rng=np.random.default_rng(3))), info
    if case == "probcover-purity":
        def purity_rule():
            other = other_label_distance(feats, kmeans_labels(feats, 10, 0))
            info["delta"] = purity_delta(other, DEFAULT_GRID, 0.95)
            return other
        return purity_rule, info
    st = make_strategy("probcover", {"delta": GRAPH_DELTA})
    if case == "probcover-graph":
        def graph():
            out = st.fit_graph(feats, num_classes=10, seed=0, log=lambda s: None)
            info["edges"] = out["probcover_edges"]
            return out
        return graph, info
    st.fit_graph(feats, num_classes=10, seed=0, log=lambda s: None)
    info["edges"] = int(len(st._graph[1]))
    return (lambda: st.select(cycle=1, budget=BUDGET, pool=pool, inputs=None, rng=np.random.default_rng(3))), info


def _probe_main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    warm, _ = build(spec["case"], 2000)
    warm()
    del warm
    call, _ = build(spec["case"], spec["pool_size"])
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


@pytest.mark.parametrize("pool_size", POOLS, ids=lambda n: f"pool{n // 1000}k")
@pytest.mark.parametrize("case", CASES)
def test_coldstart_query(benchmark, case, pool_size):
    call, info = build(case, pool_size)
    benchmark.group = f"cold start, pool {pool_size // 1000}k"
    out = benchmark.pedantic(call, rounds=1, iterations=1)
    if case in ("typiclust", "probcover"):
        assert len(set(np.asarray(out).tolist())) == BUDGET  # a valid query, not just a fast one
    benchmark.extra_info.update(case=case, **info)
    benchmark.extra_info.update(peak_extra(case, pool_size))
