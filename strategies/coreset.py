"""Core-Set (Sener & Savarese, ICLR 2018): k-center greedy on the main model's embeddings.

Facts followed (google/active-learning ``kcenter_greedy.py`` and its copy in
razvancaramalau/Sequential-GCN-for-Active-Learning): features are the pooled penultimate
embeddings (eval mode, test transform, not normalised); Euclidean distance; each candidate keeps
its distance to the nearest labeled or already-chosen center, and K times the farthest candidate
is chosen and the minima are updated with it. Candidates are a random subset of 10,000 unlabeled
images plus the labeled set (the labeled images are the initial centers); ``subset: null`` uses the
whole unlabeled pool.

Memory: never an N x N matrix. The greedy keeps two (N,) vectors (squared norms, minimum squared
distances); each step updates them in row chunks with one matrix-vector product per chunk, so a
step costs one pass over the (N, d) candidate matrix. Distances to the labeled set are computed
block-wise (4096 rows x 256 centers at a time), never as an N x L matrix.

Where we differ on purpose: with an empty labeled set the official code fails (its "random first
center" branch is unreachable); we start from a center drawn from the run's generator. Squared
distances are compared (the same argmax as distances, without a square root). The distance is
expanded as |x|^2 - 2 x.c + |c|^2, as in scikit-learn's ``pairwise_distances`` (which the official
code calls), but in the features' dtype (float32 for embeddings; scikit-learn accumulates float32
in float64), so near-ties closer than float32 resolution may break differently. Chosen points are
excluded explicitly so that rounding can never choose a point twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from albench.divergence import check_finite
from albench.typed import Bounds
from albench.strategies.base import Inputs, Need, PoolState, Strategy, Subset, random_subset
from albench.strategies.registry import register_strategy

# Distances to existing centers are computed in blocks of at most _INIT_ROWS rows x _CENTER_BLOCK
# centers: a matrix product efficient on CPU and GPU whose temporary stays at 4 MiB (float32).
_CENTER_BLOCK = 256
_INIT_ROWS = 4096
DEFAULT_CHUNK_ROWS = 65536  # rows per greedy update: a 256 KiB temporary; fewer, larger kernels per step


def _sq_norms(x: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """(n,) squared L2 norms of the rows of ``x``, chunked so no (n, d) temporary is made."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], chunk_rows):
        torch.linalg.vector_norm(x[s:s + chunk_rows], dim=1, out=out[s:s + chunk_rows])
    return out.square_()


def min_sq_dist_to_centers(x: torch.Tensor, centers: torch.Tensor, *, chunk_rows: int = _INIT_ROWS,
                           x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(n,) squared Euclidean distance of each row of ``x`` to its nearest row of ``centers``.

    Computed block-wise (``min(chunk_rows, 4096)`` rows x 256 centers at a time): extra memory is
    O(n + 4096 * 256), never n x m. Values are clamped at 0 (the expansion can round below it).
    """
    n = x.shape[0]
    chunk_rows = min(chunk_rows, _INIT_ROWS)
    x_sq = _sq_norms(x, chunk_rows) if x_sq is None else x_sq
    c_sq = _sq_norms(centers, chunk_rows)
    best = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    for s in range(0, n, chunk_rows):
        xs = x[s:s + chunk_rows]
        b = best[s:s + chunk_rows]
        for t in range(0, centers.shape[0], _CENTER_BLOCK):
            c = centers[t:t + _CENTER_BLOCK]
            d = torch.addmm(c_sq[t:t + _CENTER_BLOCK].unsqueeze(0), xs, c.T, alpha=-2.0)
            d.add_(x_sq[s:s + chunk_rows].unsqueeze(1))
            torch.minimum(b, d.amin(dim=1), out=b)
    return best.clamp_(min=0.0)


def kcenter_greedy(features: torch.Tensor, k: int, *, centers: torch.Tensor | None = None,
                   selected: np.ndarray | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Greedy k-center: the positions (rows of ``features``) of ``k`` new centers, in pick order.

    ``features`` (n, d) are the candidates. Existing centers are either given as rows of another
    matrix ``centers`` (m, d) (e.g. the labeled set's embeddings, so no concatenated copy is made)
    or as positions ``selected`` of ``features``; both may be given. Each step picks the candidate
    whose squared Euclidean distance to its nearest center is largest (ties: the lowest position)
    and updates every candidate's minimum with it, in chunks of ``chunk_rows`` rows on the
    features' device. With no existing center at all, the first pick is uniform from ``rng``.

    Time O(k * n * d + n * m * d); extra memory O(n) floats plus a fixed 4 MiB block.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (n, d); got shape {tuple(features.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows}")
    # float64 stays float64 (exact comparisons in tests); half precision is widened to float32.
    x = features if features.dtype in (torch.float32, torch.float64) else features.float()
    x = x.contiguous()
    n = x.shape[0]
    selected = np.zeros(0, dtype=np.int64) if selected is None else np.asarray(selected, dtype=np.int64).reshape(-1)
    free = n - len(np.unique(selected))
    if not 0 <= k <= free:
        raise ValueError(f"cannot choose {k} new centers among {free} candidates that are not centers")
    order = np.empty(k, dtype=np.int64)
    if k == 0:
        return order
    x_sq = _sq_norms(x, min(chunk_rows, _INIT_ROWS))
    # a NaN distance would never win the argmax nor lose it consistently: fail instead of choosing
    check_finite(x_sq, phase="select", what="a coreset squared embedding norm")
    has_centers = centers is not None and centers.shape[0] > 0
    if has_centers:
        c = centers.to(device=x.device, dtype=x.dtype).contiguous()
        min_d = min_sq_dist_to_centers(x, c, chunk_rows=chunk_rows, x_sq=x_sq)
        check_finite(min_d, phase="select", what="a coreset distance")
    else:
        min_d = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    chosen_mask = torch.zeros(n, dtype=torch.bool, device=x.device)
    buf = torch.empty(min(n, chunk_rows), dtype=x.dtype, device=x.device)
    first = 0
    if len(selected):
        # Distances to already-selected rows, as from any other center; they themselves never win.
        sel_t = torch.as_tensor(selected, device=x.device)
        torch.minimum(min_d, min_sq_dist_to_centers(x, x[sel_t], chunk_rows=chunk_rows, x_sq=x_sq), out=min_d)
        chosen_mask[sel_t] = True
    elif not has_centers:
        if rng is None:
            raise ValueError("no existing center: pass rng to draw the first one")
        order[0] = int(rng.integers(n))
        first = 1
        _update(x, x_sq, min_d, int(order[0]), chunk_rows, buf)
        chosen_mask[int(order[0])] = True
    min_d.masked_fill_(chosen_mask, -1.0)
    for i in range(first, k):
        idx = int(torch.argmax(min_d))  # first maximum on ties (documented torch behaviour)
        order[i] = idx
        _update(x, x_sq, min_d, idx, chunk_rows, buf)
        min_d[idx] = -1.0  # rounding may leave it slightly above 0: exclude it explicitly
    return order


def _update(x: torch.Tensor, x_sq: torch.Tensor, min_d: torch.Tensor, idx: int, chunk_rows: int,
            buf: torch.Tensor) -> None:
    """min_d <- min(min_d, |x - x[idx]|^2): per chunk of rows one fused matrix-vector product into
    ``buf`` (no allocation per step), one add and one in-place minimum."""
    c = x[idx]
    c_sq = x_sq[idx]
    n = x.shape[0]
    for s in range(0, n, chunk_rows):
        e = min(s + chunk_rows, n)
        d = buf[:e - s]
        torch.addmv(x_sq[s:e], x[s:e], c, alpha=-2.0, out=d)
        d.add_(c_sq)
        m = min_d[s:e]
        torch.minimum(m, d, out=m)


@dataclass(frozen=True)
class CoreSetParams:
    """``subset``: candidates are this many random unlabeled images (None: all of them);
    ``chunk_rows``: rows per distance update (memory per update, not the result)."""

    subset: Subset = 10000
    chunk_rows: Annotated[int, Bounds(ge=1)] = DEFAULT_CHUNK_ROWS


@register_strategy
class CoreSet(Strategy):
    name = "coreset"
    description = "k-center greedy on the model's embeddings, labeled images as centers (params: subset, chunk_rows)"
    needs = frozenset({Need.EMBEDDINGS, Need.LABELED})
    # on segmentation the embedding is the model's globally pooled backbone features, one vector per image
    tasks = frozenset({"classification", "segmentation"})

    Params = CoreSetParams

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        cand = inputs.candidates
        feats = cand.embeddings.to(inputs.device)
        lab = inputs.labeled.embeddings if inputs.labeled is not None else None
        order = kcenter_greedy(feats, budget, centers=None if lab is None else lab.to(inputs.device),
                               chunk_rows=self.chunk_rows, rng=rng)
        return cand.indices[order]
