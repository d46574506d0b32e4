"""Mini-batch k-means for the pool's clusters (TypiClust): k-means++ seeding on a sample, mini-batch
steps over the pool, one final assignment. Linear in K.

:func:`minibatch_kmeans` does, with every draw from one seeded torch generator:

1. **Seeding**: greedy k-means++ (as scikit-learn's: each new centre is the best of 2 + int(ln K)
   candidates drawn with probability proportional to the squared distance to the nearest centre so
   far, best = the lowest total squared distance after adding it) on a uniform sample of
   ``init_size`` = min(N, 3 max(K, 1024)) points: scikit-learn's MiniBatchKMeans rule with its
   default batch of 1,024, so the sample does not grow with K below 1,024 clusters. Its products
   have 2 + int(ln K) rows; they run on one thread (more threads only wait on each other at that
   size, and on a busy machine a threaded product this small costs 10-40x more).
2. **Mini-batch steps** (Sculley 2010, scikit-learn's update rule): max(``min_steps`` = 10, one
   epoch) batches of ``batch_size`` = 5,000 points, drawn as shuffled passes over the pool (without
   replacement within a pass; the last batch of a pass is its remainder); each batch is assigned to
   its nearest centres, and each centre moves to the running mean of every point assigned to it so
   far (learning rate 1 / its count). Ten steps is the least scikit-learn's early stopping
   (``max_no_improvement`` = 10) lets its MiniBatchKMeans run; at 50,000 points they are one epoch.
3. **Labels**: every point's nearest final centre (one pass, in blocks).

Cost: the seeding is K (2 + ln K) x init_size x d multiply-adds; the steps max(10 x 5,000, N) x K x d;
the final assignment N x K x d (one *assignment pass*); memory O(batch_size x K + K d) beyond the
features. Linear in K; from 50,000 points on, two assignment passes plus the seeding. Determinism:
on the CPU the same seed and thread count give the same labels.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

ASSIGN_ROWS = 8192  # rows per block of the final assignment: 8192 x K distances at a time


@contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _row_sq(x: torch.Tensor, rows: int = ASSIGN_ROWS) -> torch.Tensor:
    """(N,) squared row norms, in blocks (``(x * x).sum(1)`` would hold a copy of the whole pool)."""
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], rows):
        xb = x[s:s + rows]
        out[s:s + rows] = (xb * xb).sum(1)
    return out


def _sq_dist(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    """(len(x), len(c)) squared distances, not clamped (only compared)."""
    return torch.addmm(c_sq[None, :], x, c.T, alpha=-2.0).add_(x_sq[:, None])


def nearest_centre(x: torch.Tensor, centres: torch.Tensor, *, rows: int = ASSIGN_ROWS) -> torch.Tensor:
    """(N,) int64: each row's nearest centre (squared L2; ties to the lowest centre index), in blocks
    of ``rows`` rows. One assignment pass: N x K x d multiply-adds."""
    c_sq = (centres * centres).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.int64)
    for s in range(0, x.shape[0], rows):
        xb = x[s:s + rows]
        out[s:s + rows] = _sq_dist(xb, (xb * xb).sum(1), centres, c_sq).argmin(1)
    return out


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, d) centres chosen among the rows of ``x`` by greedy k-means++ (see the module docstring)."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means++ needs 1 <= k <= n, got k={k}, n={n}")
    trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(1)
    x_t = x.T.contiguous()  # (d, n): each step is a (trials, d) x (d, n) product, rows contiguous
    chosen = torch.empty(k, dtype=torch.int64)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    with _one_thread():
        closest = torch.addmm(x_sq[None, :], x[chosen[:1]], x_t, alpha=-2.0).add_(x_sq[chosen[:1], None])
        closest = closest[0].clamp_(min=0.0)
        for i in range(1, k):
            cum = torch.cumsum(closest, 0, dtype=torch.float64)
            total = float(cum[-1])
            if total <= 0.0:  # every point sits on a centre: the rest uniformly among the points left
                left = torch.ones(n, dtype=torch.bool)
                left[chosen[:i]] = False
                pool = torch.nonzero(left).flatten()
                chosen[i:] = pool[torch.randperm(len(pool), generator=generator)[:k - i]]
                break
            draws = torch.rand(trials, generator=generator, dtype=torch.float64) * total
            cand = torch.searchsorted(cum, draws, right=True).clamp_(max=n - 1)
            d = torch.addmm(x_sq[None, :], x[cand], x_t, alpha=-2.0).add_(x_sq[cand, None]).clamp_(min=0.0)
            torch.minimum(d, closest[None, :], out=d)  # (trials, n): the distances if each were added
            best = int(torch.argmin(d.sum(1, dtype=torch.float64)))
            chosen[i] = cand[best]
            closest = d[best]
    return x[chosen].clone()


def minibatch_kmeans(features, k: int, *, seed: int, batch_size: int = 5000, min_steps: int = 10,
                     init_size: int | None = None) -> np.ndarray:
    """(N,) int64 cluster ids in 0..k-1 of the rows of ``features`` (N, d) (see the module docstring).

    ``init_size`` None: min(N, 3 max(k, 1024)) points seed the centres; max(``min_steps``, one epoch)
    mini-batch steps of ``batch_size`` points move them; the labels are the nearest final centres.
    """
    x = torch.as_tensor(np.asarray(features)) if not isinstance(features, torch.Tensor) else features.cpu()
    x = x.float().contiguous()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k}, n={n}")
    g = torch.Generator().manual_seed(int(seed))
    size = min(n, init_size if init_size is not None else 3 * max(k, 1024))
    sample = x[torch.randperm(n, generator=g)[:size]] if size < n else x
    centres = kmeans_plus_plus(sample, k, g).double()
    counts = torch.zeros(k, dtype=torch.float64)
    b = min(batch_size, n)
    x_sq = _row_sq(x)
    per_epoch = -(-n // b)
    steps = max(int(min_steps), per_epoch)
    for e in range(-(-steps // per_epoch)):
        order = torch.randperm(n, generator=g)
        for s in range(0, min(n, (steps - e * per_epoch) * b), b):
            idx = order[s:s + b]
            xb = x[idx]
            c32 = centres.float()
            lab = _sq_dist(xb, x_sq[idx], c32, (c32 * c32).sum(1)).argmin(1)
            got = torch.bincount(lab, minlength=k).double()
            sums = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, lab, xb.double())
            counts += got
            hit = got > 0
            # running mean of every point assigned so far: c += (sum - m c) / count
            centres[hit] += (sums[hit] - got[hit, None] * centres[hit]) / counts[hit, None]
    return nearest_centre(x, centres.float()).numpy()


__all__ = ["kmeans_plus_plus", "minibatch_kmeans", "nearest_centre"]
