"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022; avihu111/TypiClust): max coverage of δ-balls.

On a self-supervised representation of the pool (:mod:`albench.strategies.representation`; SimCLR by
default, L2-normalised as the official code loads it), with no trained classifier:

1. δ (``prepare``): the paper's purity rule, the largest δ of ``delta_grid`` (default 0.01, 0.02, ...,
   2.00: every distance between unit vectors lies in [0, 2]) whose purity is at least ``alpha`` = 0.95.
   Purity(δ) is the share of points whose δ-ball {y : ‖x − y‖ < δ} holds a single k-means label,
   with K = the number of classes (k-means++, 3 restarts, seeded from the run's seed). A point is
   pure exactly when its nearest point of another label is at distance ≥ δ, so one blockwise pass
   gives the purity of every δ. A fixed ``delta`` overrides the rule. (The official code has no
   purity code: δ is a command-line value, default 0.6: the ``official_delta`` quirk.)
2. The graph: an edge x → y when ‖x − y‖ < δ (strict; self-loops included), built in blocks of
   ``chunk_rows`` rows against the pool's later points (each pair's distance is computed once, so
   the graph is symmetric by construction), stored as compressed rows (int32 targets). It is
   refused, naming the params to change, as soon as its edge count passes ``max_edges`` (default
   10^8; building it peaks at about 9 bytes per edge, so about 0.9 GB).
3. Each query (the cold start included): points covered by the labeled set (the out-neighbours of
   labeled points) are removed; then, B times, the node with the most uncovered out-neighbours is
   taken (ties to the lowest pool index) and what it covers is removed. One pass over every edge
   counts the uncovered out-neighbours at the start; when a point gets covered, the nodes with an
   edge into it lose one, and since the graph is symmetric those are its own out-neighbours, so no
   reverse index is built: a query is O(E + B N) and holds the graph plus O(N).
4. Once everything is covered, the rest of the query is drawn uniformly from ``rng`` among the
   unlabeled points not yet chosen. The official code has no such fallback: every degree is then
   0 and its argmax returns position 0 again and again (the first labeled point, or the first
   unlabeled one), i.e. duplicate or already-labeled queries. That is not reproduced, since a
   duplicate query breaks the harness's invariants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import Inputs, PoolState, PrepareContext, Quirk, Strategy
from albench.strategies.pretext import derive_seed
from albench.strategies.registry import register_strategy
from albench.strategies.representation import RepresentationMixin, RepresentationParams

DEFAULT_GRID = tuple(round(0.01 * i, 2) for i in range(1, 201))  # 0.01 .. 2.00
BYTES_PER_EDGE = 9  # peak while building: the upper half (4 B per pair), its transpose (4 + 1) and the rows (4 B per edge)
DEFAULT_MAX_EDGES = 100_000_000


class GraphTooLarge(ValueError):
    """The δ-ball graph would pass the edge limit."""


def _sq_dist_block(xs: torch.Tensor, x: torch.Tensor, xs_sq: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    return torch.addmm(x_sq[None, :], xs, x.T, alpha=-2.0).add_(xs_sq[:, None]).clamp_(min=0.0)


def _as_tensor(features) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features)) if not isinstance(features, torch.Tensor) else features.cpu()
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def other_label_distance(features, labels: np.ndarray, *, chunk_rows: int = 1000) -> np.ndarray:
    """(N,) float64: each point's L2 distance to its nearest point with another label (inf if none).
    Blockwise, ``chunk_rows`` x N distances at a time."""
    x = _as_tensor(features)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    sq = (x * x).sum(1)
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in range(0, x.shape[0], chunk_rows):
        e = min(s + chunk_rows, x.shape[0])
        d2 = _sq_dist_block(x[s:e], x, sq[s:e], sq)
        d2.masked_fill_(lab[s:e, None] == lab[None, :], float("inf"))
        out[s:e] = d2.amin(1).sqrt().double().numpy()
    return out


def purity(other_distance: np.ndarray, delta: float) -> float:
    """Share of points whose open δ-ball holds one label only (nearest other label at distance ≥ δ)."""
    return float(np.mean(np.asarray(other_distance) >= delta))


def purity_delta(other_distance: np.ndarray, grid, alpha: float) -> float | None:
    """The largest δ of ``grid`` with purity ≥ ``alpha``, or None when none has."""
    ok = [float(d) for d in grid if purity(other_distance, float(d)) >= alpha]
    return max(ok) if ok else None


def kmeans_labels(features, k: int, seed: int) -> np.ndarray:
    """(N,) k-means labels (k-means++, 3 restarts, ``seed``): the purity rule's pseudo-classes. (The
    paper does not say how many restarts; 3 keeps the rule's cost at a 50k pool near one distance pass.)"""
    from sklearn.cluster import KMeans

    x = np.ascontiguousarray(np.asarray(features), dtype=np.float32)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x).astype(np.int64)


def ball_graph(features, delta: float, *, max_edges: int = DEFAULT_MAX_EDGES,
               chunk_rows: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(indptr (N+1,) int64, targets (E,) int32): edges x -> y with ‖x − y‖ < ``delta``, self-loops
    included, rows in pool order and each row's targets ascending (compressed sparse rows).

    Symmetric by construction (x -> y exactly when y -> x): each pair is decided once, from the
    distance computed for the lower of its two rows, so rounding cannot put an edge in one direction
    only. Rows are processed ``chunk_rows`` at a time against the columns from the block on (half of
    the N^2 distances); the other half of the graph is the transpose of what is found. Raises
    :class:`GraphTooLarge` as soon as the edge count passes ``max_edges``.
    """
    import scipy.sparse as sp

    x = _as_tensor(features)
    n = x.shape[0]
    sq = (x * x).sum(1)
    d2max = float(delta) ** 2
    upper_counts = np.zeros(n, dtype=np.int64)  # per row: its targets y >= x, itself included
    parts: list[np.ndarray] = []
    total = 0
    for s in range(0, n, chunk_rows):
        e = min(s + chunk_rows, n)
        d2 = _sq_dist_block(x[s:e], x[s:], sq[s:e], sq[s:])
        local = torch.arange(e - s)
        d2[local, local] = 0.0  # rounding can put a point off its own ball
        hit = d2 < d2max
        hit[:, :e - s].triu_()  # within the block's own columns, only y >= x: y < x is decided by y's row
        r, c = torch.nonzero(hit, as_tuple=True)  # row-major: targets ascending within a row
        total += 2 * int(c.numel()) - (e - s)  # each off-diagonal pair is two edges, each self-loop one
        if total > max_edges:
            raise GraphTooLarge(
                f"the delta-ball graph at delta={delta:g} passes {max_edges:,} edges (already {total:,} found "
                f"after {e:,} of {n:,} rows; about {BYTES_PER_EDGE} bytes each): set params.delta lower, or raise "
                f"params.max_edges if the memory is there")
        upper_counts[s:e] = np.bincount(r.numpy(), minlength=e - s)
        parts.append((c + s).numpy().astype(np.int32))
        del d2, hit, r, c
    up_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(upper_counts, out=up_ptr[1:])
    up = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    del parts
    # the transpose: for each y, the rows x <= y with an edge x -> y, ascending (a counting sort)
    tr = sp.csr_matrix((np.ones(len(up), dtype=np.int8), up, up_ptr), shape=(n, n)).tocsc()
    low_ptr, low = tr.indptr.astype(np.int64), tr.indices.astype(np.int32, copy=False)
    del tr
    # row x: the rows below it (from the transpose, ending with x itself), then its targets above x
    low_counts = np.diff(low_ptr)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(low_counts + upper_counts - 1, out=indptr[1:])
    targets = np.empty(int(indptr[-1]), dtype=np.int32)
    _place(targets, low, low_ptr[:-1], indptr[:-1], low_counts)
    _place(targets, up, up_ptr[:-1] + 1, indptr[:-1] + low_counts, upper_counts - 1)  # past x itself
    return indptr, targets


def _place(out: np.ndarray, src: np.ndarray, src_start: np.ndarray, dst_start: np.ndarray,
           lengths: np.ndarray, *, block: int = 1 << 22) -> None:
    """For every row i, copy ``src[src_start[i] : src_start[i] + lengths[i]]`` to ``out[dst_start[i]:]``,
    rows grouped so that about ``block`` values move at a time (bounded index arrays)."""
    n = len(lengths)
    ends = np.cumsum(lengths)
    a = 0
    while a < n:
        done = int(ends[a - 1]) if a else 0
        b = min(n, max(a + 1, int(np.searchsorted(ends, done + block, side="right"))))
        lens = lengths[a:b]
        total = int(ends[b - 1]) - done
        if total:
            within = np.arange(total, dtype=np.int64) - np.repeat(ends[a:b] - lens - done, lens)
            out[np.repeat(dst_start[a:b], lens) + within] = src[np.repeat(src_start[a:b], lens) + within]
        a = b


def uncovered_degrees(indptr: np.ndarray, targets: np.ndarray, covered: np.ndarray, *,
                      block: int = 1 << 20) -> np.ndarray:
    """(N,) int64: each row's count of targets not ``covered``: one pass over the edges (a gather and a
    segment sum per row; an empty row counts 0), about ``block`` edges at a time (numpy's segment sum
    widens its input to the sum's type, 4 bytes per edge of a block)."""
    n = len(indptr) - 1
    out = np.zeros(n, dtype=np.int64)
    a = 0
    while a < n:
        b = min(n, max(a + 1, int(np.searchsorted(indptr, indptr[a] + block, side="right")) - 1))
        lo, hi = int(indptr[a]), int(indptr[b])
        if hi > lo:
            free = (~covered[targets[lo:hi]]).view(np.int8)
            starts = indptr[a:b] - lo
            nonempty = indptr[a:b] < indptr[a + 1:b + 1]
            # reduceat sums free[start_i : start_{i+1}]; an empty row would read one element: nonempty rows only
            out[a:b][nonempty] = np.add.reduceat(free, starts[nonempty], dtype=np.int32)
        a = b
    return out


def max_coverage(indptr: np.ndarray, targets: np.ndarray, labeled: np.ndarray, k: int,
                 rng: np.random.Generator, *, silent: np.ndarray | None = None) -> np.ndarray:
    """``k`` pool indices (int64, pick order) by greedy max coverage of the graph (see the module doc):
    labeled points' out-neighbours start covered; each step takes the node with the most uncovered
    out-neighbours (ties: lowest index); once all is covered the rest is uniform from ``rng``.

    The graph must be symmetric (x -> y exactly when y -> x), as :func:`ball_graph` builds it: the
    nodes that lose a count when y gets covered are then y's own out-neighbours, so no reverse index
    is needed. ``silent``: pool indices whose out-edges are ignored (they cover nothing, so they are
    never picked and, if labeled, cover nothing at the start): the ``graph_row_blocks_floor`` quirk.

    Cost: one pass over every edge for the starting counts (:func:`uncovered_degrees`), the rows of
    the points that get covered (each at most once: at most the edges again), and an argmax over the
    N counts per pick; memory beyond the graph O(N) plus the rows of one pick's newly covered points.
    """
    n = len(indptr) - 1
    labeled = np.asarray(labeled, dtype=np.int64)
    chosen = np.zeros(n, dtype=bool)
    chosen[labeled] = True
    if k > n - int(chosen.sum()):
        raise ValueError(f"only {n - int(chosen.sum())} unlabeled points are left; {k} were asked for")
    muted = np.zeros(n, dtype=bool)
    if silent is not None:
        muted[np.asarray(silent, dtype=np.int64)] = True
    covered = np.zeros(n, dtype=bool)
    for x in labeled[~muted[labeled]]:
        covered[targets[indptr[x]:indptr[x + 1]]] = True
    degree = uncovered_degrees(indptr, targets, covered)
    degree[muted] = -1  # never the maximum; the decrements below only lower it further
    picks: list[int] = []
    while len(picks) < k:
        x = int(np.argmax(degree))  # first maximum: the lowest index on ties
        if degree[x] <= 0:
            break
        picks.append(x)
        chosen[x] = True
        out = targets[indptr[x]:indptr[x + 1]]
        new = out[~covered[out]]
        covered[new] = True
        # every node with an edge into a newly covered point covers one point less: by symmetry, that
        # point's own out-neighbours
        rows = np.concatenate([targets[indptr[y]:indptr[y + 1]] for y in new.tolist()])
        np.subtract.at(degree, rows, 1)  # O(len(rows)); a bincount over all N nodes each pick costs more
    if len(picks) < k:  # everything covered: uniform over the rest (the official code repeats index 0)
        rest = rng.choice(np.flatnonzero(~chosen), size=k - len(picks), replace=False)
        picks.extend(int(i) for i in rest)
    return np.asarray(picks, dtype=np.int64)


def official_row_tail(labeled: np.ndarray, unlabeled: np.ndarray, block: int) -> np.ndarray:
    """Pool indices whose rows the official graph leaves out: it orders the points as [labeled;
    unlabeled] and builds ``range(N // block)`` row blocks, so the last N mod ``block`` of that order
    get no out-edges. ValueError when N < ``block`` (no block at all: the official code fails)."""
    order = np.concatenate([np.asarray(labeled, dtype=np.int64), np.asarray(unlabeled, dtype=np.int64)])
    if len(order) < block:
        raise ValueError(f"the graph_row_blocks_floor quirk builds the graph in {len(order)} // {block} = 0 row "
                         f"blocks for a pool of {len(order)} points, so no point has an edge (the official code "
                         "fails here): use a pool of at least that many points, or drop the quirk (list the "
                         "others under strategies[i].quirks)")
    return order[(len(order) // block) * block:]


OFFICIAL_DELTA = Quirk(
    "official_delta",
    "delta = 0.6, the command-line default of the official deep-al/tools/train_al.py (avihu111/TypiClust, "
    "69ca863 through 4097a71; the code has no purity rule), instead of the paper's purity rule",
    params={"delta": 0.6}, source="avihu111/TypiClust@4097a71 deep-al/tools/train_al.py")
GRAPH_ROW_BLOCKS_FLOOR = Quirk(
    "graph_row_blocks_floor",
    "the delta-graph is built in row blocks of 500 over the points ordered [labeled; unlabeled], for i in "
    "range(N // 500) (construct_graph in deep-al/pycls/al/prob_cover.py, 830be3f through 4097a71), so the last "
    "N mod 500 points of that order get no out-edges: they are never picked and, if labeled, cover nothing. "
    "albench's unlabeled order is ascending pool index (the official remainSet is sorted after each query; "
    "before the first one it is the framework's shuffled split)",
    params={"row_block": 500}, source="avihu111/TypiClust@4097a71 deep-al/pycls/al/prob_cover.py")


@dataclass(frozen=True)
class ProbCoverParams(RepresentationParams):
    """``delta``: a fixed ball radius (None: the purity rule over ``delta_grid``, None for 0.01,
    0.02, ..., 2.00, at purity ``alpha``). ``max_edges``: refuse a graph with more edges (about 9
    bytes each at peak). ``chunk_rows``: rows per distance block (chunk_rows x N floats). ``row_block``: the
    ``graph_row_blocks_floor`` quirk's block (None: every row has its edges). The representation
    params are in :class:`~albench.strategies.representation.RepresentationParams`."""

    delta: Annotated[float | None, Bounds(gt=0)] = None
    alpha: Annotated[float, Bounds(gt=0, le=1)] = 0.95
    delta_grid: list[float] | None = None
    max_edges: Annotated[int, Bounds(ge=1, le=10 ** 11)] = DEFAULT_MAX_EDGES  # a memory cap, not a count of work
    chunk_rows: Annotated[int, Bounds(ge=1)] = 1000
    row_block: Annotated[int | None, Bounds(ge=1)] = None


@register_strategy
class ProbCover(RepresentationMixin, Strategy):
    name = "probcover"
    description = ("greedy max coverage of delta-balls in a self-supervised representation, delta by the purity "
                   "rule (params: representation, delta, alpha, max_edges, pretext_*)")
    needs: frozenset = frozenset()
    quirks = (OFFICIAL_DELTA, GRAPH_ROW_BLOCKS_FLOOR)

    Params = ProbCoverParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._init_representation()
        self.delta_grid = tuple(self.delta_grid) if self.delta_grid is not None else DEFAULT_GRID
        self.delta_: float | None = None
        self._graph: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        cls._check_representation(params, path)
        grid = params.get("delta_grid")
        if grid is not None and (not grid or any(not (g > 0) for g in grid)):
            raise ConfigError(f"{path}.delta_grid", "must be a non-empty list of positive numbers",
                              f"set {path}.delta_grid to e.g. [0.2, 0.4, 0.6], or null for 0.01 .. 2.00", grid)

    def prepare(self, ctx: PrepareContext) -> dict:
        info = self._prepare_features(ctx, normalize=True)
        return {**info, **self.fit_graph(self.features_, num_classes=ctx.pool.num_classes, seed=ctx.seed, log=ctx.log)}

    def fit_graph(self, features: np.ndarray, *, num_classes: int, seed: int, log=print) -> dict:
        """Choose delta (the purity rule, with k-means seeded from ``seed``, or the fixed ``delta``)
        and build the delta-ball graph of ``features``; return what run.json records about them."""
        purity_at = None
        if self.delta is not None:
            delta, rule = float(self.delta), "fixed"
        else:
            labels = kmeans_labels(features, num_classes, derive_seed(seed, "probcover-purity") % (2**31 - 1))
            other = other_label_distance(features, labels, chunk_rows=self.chunk_rows)
            delta = purity_delta(other, self.delta_grid, self.alpha)
            if delta is None:  # purity only falls as delta grows: the smallest grid value is the purest
                low = min(self.delta_grid)
                raise ValueError(
                    f"no delta of the grid reaches purity {self.alpha} (at delta={low:g} it is "
                    f"{purity(other, low):.3f}; the representation puts points of different k-means clusters "
                    "this close): set params.delta, a params.delta_grid with smaller values, a lower params.alpha, "
                    "or train the representation longer (params.pretext_epochs)")
            rule, purity_at = "purity", purity(other, delta)
        self.delta_ = delta
        self._graph = ball_graph(features, delta, max_edges=self.max_edges, chunk_rows=self.chunk_rows)
        edges = int(len(self._graph[1]))
        log(f"probcover: delta={delta:g} ({rule}), {edges:,} edges, mean ball {edges / len(features):.1f} points")
        return {"probcover_delta": delta, "probcover_delta_rule": rule, "probcover_purity": purity_at,
                "probcover_edges": edges}

    def _query(self, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        if self._graph is None:
            raise RuntimeError("probcover has no graph: prepare() has not run")
        silent = None if self.row_block is None else official_row_tail(pool.labeled, pool.unlabeled, self.row_block)
        return max_coverage(*self._graph, pool.labeled, size, rng, silent=silent)

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return self._query(size, pool, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        return self._query(budget, pool, rng)


__all__ = ["GraphTooLarge", "ProbCover", "ball_graph", "kmeans_labels", "max_coverage", "official_row_tail",
           "other_label_distance", "purity", "purity_delta", "uncovered_degrees"]
