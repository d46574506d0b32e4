"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022; avihu111/TypiClust): typical points of clusters.

Each query (the cold start included) picks from a self-supervised representation of the pool
(:mod:`albench.strategies.representation`; SimCLR by default), with no trained classifier:

1. Cluster the whole pool into K = min(|L| + B, ``max_clusters`` = 500) clusters: k-means (k-means++,
   10 restarts) for K <= 50, mini-batch k-means (batch 5,000, 3 restarts) above, both seeded from the
   query's ``rng``. (The official code sets no seed; its pinned scikit-learn 1.0.2 uses these
   restart counts.)
2. Drop clusters of ``min_cluster_size`` = 5 points or fewer (labeled points count).
3. Each pick goes to the cluster with the fewest labeled points (picks so far included), then the
   largest, then the lowest cluster id; clusters with no unlabeled point left are skipped.
4. In it, take the most typical unlabeled point: typicality = 1 / (mean L2 distance to its
   k = min(``knn`` = 20, n // 2) nearest neighbours among the cluster's n points, itself excluded).
   Ties go to the lowest pool index.
5. If no kept cluster has an unlabeled point left, the rest is drawn uniformly from ``rng``.

Features are L2-normalised (the official code since d1b93d5).

Cost bound. k-means (K <= 50): 10 restarts x at most 300 Lloyd iterations x N x K x d. Mini-batch
k-means (K > 50): 3 k-means++ seedings on scikit-learn's 15,000-point init sample (K (2 + ln K)
candidate distance passes over it) plus at most 100 N / 5,000 steps of 5,000 x K x d, stopped after
10 steps without improvement; at N = 50k, K = 500, d = 512 that is at most about 0.1 T multiply-adds of
seeding and 1.3 T of steps. Its memory is O(N + 5,000 K + K d) beyond the features. Nearest
neighbours are computed per cluster, in row blocks of at most 2^24 distances (64 MiB float32),
never as an N x N matrix: O(sum of n_c^2 d) over the clusters picked from, once per cluster (the
``candidate_density`` quirk recomputes per pick). Measured times: docs/speed.md.

The official code's behaviours are :class:`~albench.strategies.base.Quirk` switches, all on under
``protocol: official`` (file ``deep-al/pycls/al/typiclust.py`` at avihu111/TypiClust 4097a71 unless
stated): ``squared_distances``, ``fixed_cluster_order``, ``candidate_density`` and
``unnormalized_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from albench.typed import Bounds
from albench.strategies.base import Inputs, PoolState, PrepareContext, Quirk, Strategy
from albench.strategies.registry import register_strategy
from albench.strategies.representation import RepresentationMixin, RepresentationParams

KMEANS_MAX_K = 50  # full k-means up to this many clusters, mini-batch k-means above (official)
MINIBATCH_SIZE = 5000
BLOCK_ELEMENTS = 1 << 24  # distances per kNN block: 64 MiB in float32


def cluster_count(labeled: int, budget: int, max_clusters: int, pool_size: int) -> int:
    """K = min(|L| + B, max_clusters), and never more than the pool."""
    return max(1, min(labeled + budget, max_clusters, pool_size))


def cluster_pool(features: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) int64 cluster ids in 0..k-1: k-means for k <= 50, mini-batch k-means above, seeded from ``rng``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    seed = int(rng.integers(0, 2**31 - 1))
    x = np.ascontiguousarray(features, dtype=np.float32)
    if k <= KMEANS_MAX_K:
        km = KMeans(n_clusters=k, n_init=10, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=k, batch_size=MINIBATCH_SIZE, n_init=3, random_state=seed)
    return km.fit_predict(x).astype(np.int64)


def mean_knn_distance(x: torch.Tensor | np.ndarray, k: int, *, squared: bool = False) -> np.ndarray:
    """(n,) float64: each row's mean L2 distance (squared L2 with ``squared``) to its ``k`` nearest
    other rows of ``x`` (n, d). Computed in row blocks of at most 2^24 distances; needs k < n."""
    x = torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n, got k={k}, n={n}")
    sq = (x * x).sum(1)
    rows = max(1, BLOCK_ELEMENTS // n)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        d2 = torch.addmm(sq[None, :], x[s:e], x.T, alpha=-2.0).add_(sq[s:e, None]).clamp_(min=0.0)
        d2[torch.arange(e - s), torch.arange(s, e)] = float("inf")  # not its own neighbour
        near = torch.topk(d2, k, dim=1, largest=False).values
        out[s:e] = (near if squared else near.sqrt()).double().mean(1).numpy()
    return out


def typiclust_select(features: np.ndarray | torch.Tensor, clusters: np.ndarray, labeled: np.ndarray, budget: int, *,
                     rng: np.random.Generator, min_cluster_size: int = 5, knn: int = 20, resort: bool = True,
                     squared: bool = False, density: str = "cluster") -> np.ndarray:
    """``budget`` pool indices (int64, pick order) by TypiClust given the pool's cluster ids.

    ``resort``: re-rank the clusters after every pick (False: rank once and cycle through them, the
    official code). ``density``: ``cluster`` measures each point's kNN distance among all n points
    of its cluster (the paper); ``candidates`` among the cluster's unlabeled, not-yet-picked points
    only, recomputed after each pick, with k = min(knn, n_candidates // 2) and a lone candidate
    taken as is (the official code). ``squared``: mean squared distances (faiss's).
    """
    x = torch.as_tensor(np.asarray(features)) if isinstance(features, np.ndarray) else features.cpu()
    clusters = np.asarray(clusters, dtype=np.int64)
    n = len(clusters)
    free = np.ones(n, dtype=bool)
    free[np.asarray(labeled, dtype=np.int64)] = False
    if budget > free.sum():
        raise ValueError(f"only {int(free.sum())} unlabeled points are left; {budget} were asked for")
    ids, sizes = np.unique(clusters, return_counts=True)
    labeled_count = np.bincount(clusters[~free], minlength=int(ids.max()) + 1)[ids] if n else sizes * 0
    keep = sizes > min_cluster_size
    ids, sizes, counts = ids[keep], sizes[keep], labeled_count[keep].astype(np.int64)
    fixed = np.lexsort((ids, -sizes, counts))  # fewest labeled, then largest, then lowest id
    members = {int(c): np.flatnonzero(clusters == c) for c in ids}
    density_cache: dict[int, np.ndarray] = {}
    picks: list[int] = []
    step = 0
    while len(picks) < budget:
        if resort:
            order = np.lexsort((ids, -sizes, counts))
        else:
            order = np.roll(fixed, -(step % len(fixed))) if len(fixed) else fixed
        chosen = -1
        for pos in order:
            c = int(ids[pos])
            cand = members[c][free[members[c]]]
            if len(cand) == 0:
                continue  # nothing left to label here (the official code would fail)
            if density == "cluster":
                if c not in density_cache:
                    m = members[c]
                    k = min(knn, len(m) // 2)  # a lone point (min_cluster_size 0) has no neighbour
                    density_cache[c] = mean_knn_distance(x[m], k, squared=squared) if k else np.zeros(len(m))
                dist = density_cache[c][free[members[c]]]
                chosen = int(cand[int(np.argmin(dist))])
            else:
                k = min(knn, len(cand) // 2)
                chosen = int(cand[0]) if k == 0 else int(
                    cand[int(np.argmin(mean_knn_distance(x[cand], k, squared=squared)))])
            counts[pos] += 1
            break
        step += 1
        if chosen < 0:  # every kept cluster is exhausted: the rest uniformly
            rest = rng.choice(np.flatnonzero(free), size=budget - len(picks), replace=False)
            picks.extend(int(i) for i in rest)
            break
        picks.append(chosen)
        free[chosen] = False
    return np.asarray(picks, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# the official code's quirks

SQUARED_DISTANCES = Quirk(
    "squared_distances",
    "typicality from the mean SQUARED L2 distance to the k nearest neighbours, as faiss IndexFlatL2 returns "
    "(get_nn in pycls/al/typiclust.py, avihu111/TypiClust 4097a71); the paper writes mean L2",
    params={"squared_distances": True}, source="avihu111/TypiClust@4097a71 deep-al/pycls/al/typiclust.py")
FIXED_CLUSTER_ORDER = Quirk(
    "fixed_cluster_order",
    "rank the clusters once per query (labeled count, then size) and take pick i from cluster i mod n, never "
    "re-ranking after a pick (select_samples, 4097a71)",
    params={"resort": False}, source="avihu111/TypiClust@4097a71 deep-al/pycls/al/typiclust.py")
CANDIDATE_DENSITY = Quirk(
    "candidate_density",
    "measure each candidate's kNN distance among the cluster's unlabeled, not-yet-picked points only, "
    "recomputed after every pick, k = min(20, n_candidates // 2) (select_samples, 4097a71)",
    params={"density": "candidates"}, source="avihu111/TypiClust@4097a71 deep-al/pycls/al/typiclust.py")
UNNORMALIZED_FEATURES = Quirk(
    "unnormalized_features",
    "cluster the raw SimCLR embeddings, not L2-normalised: the code of the ICML 2022 paper (250a41d), before "
    "d1b93d5 (October 2022, 'typiclust didn't normalize features') added the normalisation to pycls/al/typiclust.py",
    params={"normalize": False}, source="avihu111/TypiClust@250a41d deep-al/pycls/al/typiclust.py")


@dataclass(frozen=True)
class TypiClustParams(RepresentationParams):
    """``max_clusters``, ``min_cluster_size``, ``knn``: the paper's 500, 5 and 20. ``normalize``,
    ``squared_distances``, ``resort``, ``density``: see the quirks. The representation params are in
    :class:`~albench.strategies.representation.RepresentationParams`."""

    max_clusters: Annotated[int, Bounds(ge=1)] = 500
    min_cluster_size: Annotated[int, Bounds(ge=0)] = 5
    knn: Annotated[int, Bounds(ge=1)] = 20
    normalize: bool = True
    squared_distances: bool = False
    resort: bool = True
    density: Literal["cluster", "candidates"] = "cluster"


@register_strategy
class TypiClust(RepresentationMixin, Strategy):
    name = "typiclust"
    description = ("most typical point of the least-labeled clusters of a self-supervised representation "
                   "(params: representation, max_clusters, pretext_*)")
    needs: frozenset = frozenset()  # no model output: the representation is computed in prepare
    quirks = (SQUARED_DISTANCES, FIXED_CLUSTER_ORDER, CANDIDATE_DENSITY, UNNORMALIZED_FEATURES)

    Params = TypiClustParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._init_representation()

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        cls._check_representation(params, path)

    def prepare(self, ctx: PrepareContext) -> dict:
        return self._prepare_features(ctx, normalize=self.normalize)

    def _query(self, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        feats = self._require_features()
        k = cluster_count(len(pool.labeled), size, self.max_clusters, pool.size)
        clusters = cluster_pool(feats, k, rng)
        return typiclust_select(feats, clusters, pool.labeled, size, rng=rng, min_cluster_size=self.min_cluster_size,
                                knn=self.knn, resort=self.resort, squared=self.squared_distances,
                                density=self.density)

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return self._query(size, pool, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        return self._query(budget, pool, rng)


__all__ = ["TypiClust", "cluster_count", "cluster_pool", "mean_knn_distance", "typiclust_select"]
