"""UncertainGCN and CoreGCN (Caramalau, Bhattarai & Kim, CVPR 2021).

Facts followed (razvancaramalau/Sequential-GCN-for-Active-Learning, ``selection_methods.py`` and
``models/query_models.py``):

- nodes: the L2-normalised embeddings of [a random subset of 10,000 unlabeled images; the labeled
  set], in that order;
- adjacency: ``A = X X^T - I``, each column divided by its sum, ``+ I`` (dense, n x n);
- GCN: graph convolution d -> 128, ReLU, dropout 0.3 (this is the "feature"), graph convolution
  128 -> 1, sigmoid; a graph convolution is ``A (H W) + b`` with weights and bias drawn uniformly
  from +-1/sqrt(fan_out); a fresh GCN for every query, Adam (lr 1e-3, weight decay 5e-4),
  200 full-batch steps;
- loss: ``-mean log s(labeled) - lambda * mean log(1 - s(unlabeled))``, lambda = 1.2;
- UncertainGCN: the K unlabeled nodes whose score is nearest s_margin = 0.1;
- CoreGCN: k-center greedy (Euclidean) on the GCN's hidden features (see below for the official
  129-d variant), labeled nodes as centers.

Memory: the dense adjacency takes n^2 float32 (1.6 GB at 10,000 + 10,000 nodes) and is the
largest buffer by far. Its size is checked against ``max_adjacency_gb`` when the config is loaded
(:meth:`_GCNStrategy.check_schedule`, from the pool size and the AL schedule) and again before it is
allocated; above the limit the run is refused with an error that names ``subset``, the knob to
lower. ``adjacency: lowrank`` applies the same matrix without building it
(:class:`LowRankAdjacency`: ``A S = X (X^T (S / c)) - S / c + S`` with c the column sums), in
O(n d) memory and O(n d h) time per product instead of O(n^2 h); ``dense`` (the official
computation) is the default.

Time: the node features are fixed while the GCN trains, so ``A X`` is computed once per query and
the first layer of every step is ``(A X) W1`` (the same matrix as the official ``A (X W1)``, in
O(n d h) instead of O(n^2 h)). Each of the 200 steps then touches A only through the 1-wide second
layer, O(n^2) on a dense graph.

Where we differ on purpose:

- the log terms are computed as ``logsigmoid(z)`` / ``logsigmoid(-z)`` of the GCN's last-layer
  output (the same values as ``log(sigmoid(z))``, without the -inf / NaN the official form hits
  once a score saturates);
- a column whose sum is exactly 0 (a node orthogonal to every other one, or a one-node graph) is
  left undivided instead of becoming NaN;
- k-center features. ``paper`` runs k-center greedy on the GCN's 128-d hidden features: the paper
  describes CoreGCN as CoreSet sampling on the features the GCN learned, and the hidden layer is
  that representation; its 1-d output is the labeled-vs-unlabeled score UncertainGCN ranks by, not
  a feature the paper names, so ``paper`` leaves it out (the two choices share 117-129 of 200
  picks on CIFAR-10 features, issue 13's measurement). The official code since
  commit a040272 (April 2021) concatenates the hidden features with the GCN's 1-d output logit
  (129-d): the ``kcenter-on-hidden-and-output`` quirk, on under ``protocol: official``. Before that
  commit it overwrote the GCN features with the input features, so the trained GCN was never used:
  ``kcenter-on-input-features-d8993bc``, kept for numbers made with that code but off under
  ``official``;
- training draws (initialisation, dropout masks) come from torch generators derived from the
  run's ``rng``, so a query is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import Inputs, Need, PoolState, Quirk, Strategy, Subset, random_subset, top_k_lowest
from albench.strategies.coreset import DEFAULT_CHUNK_ROWS, kcenter_greedy
from albench.strategies.registry import register_strategy

BYTES_PER_ENTRY = 4  # float32 adjacency
GB = 1e9  # max_adjacency_gb is in decimal gigabytes


# ---------------------------------------------------------------------------------------------
# Graph pieces


def normalized_adjacency(x: torch.Tensor) -> torch.Tensor:
    """The CoreGCN adjacency of the rows of ``x`` (already L2-normalised): a dense (n, n) tensor.

    ``A = X X^T - I``; column j is divided by its sum; then ``+ I``. Built in place in the one
    (n, n) buffer of the product, so peak memory is n^2 elements. A column that sums to exactly 0
    is left undivided (the official code would produce NaN there).
    """
    a = x @ x.T
    a.diagonal().sub_(1.0)
    col = a.sum(dim=0)
    col = torch.where(col == 0, torch.ones_like(col), col)
    a.div_(col)  # broadcasting over the last dim divides column j by col[j]
    a.diagonal().add_(1.0)
    return a


class LowRankAdjacency:
    """The matrix of :func:`normalized_adjacency` as an operator, never materialised.

    With G = X X^T, column sums c = X (X^T 1) - 1 and A = (G - I) diag(1/c) + I:
    ``A @ S = X (X^T (S / c)) - S / c + S`` for S of shape (n, h). Memory O(n d); each product costs
    O(n d h). Zero column sums are treated as in :func:`normalized_adjacency`.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        col = x @ x.sum(dim=0) - 1.0
        self.inv_col = 1.0 / torch.where(col == 0, torch.ones_like(col), col)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.x.shape[0], self.x.shape[0])

    def __matmul__(self, s: torch.Tensor) -> torch.Tensor:
        t = s * self.inv_col.unsqueeze(1)
        return self.x @ (self.x.T @ t) - t + s


def adjacency_gb(n: int) -> float:
    """Size in GB (1e9 bytes) of the dense float32 adjacency over ``n`` nodes."""
    return n * n * BYTES_PER_ENTRY / GB


def max_query_nodes(*, pool_size: int, subset: int | None, initial: int, budget: int, cycles: int) -> int:
    """The largest graph any query of the schedule builds: unlabeled candidates + labeled nodes.

    The last query (before the final cycle) sees ``initial + budget * (cycles - 2)`` labeled images;
    the graph only grows with the labeled set. 0 when the schedule never queries (one cycle).
    """
    if cycles < 2:
        return 0
    labeled = initial + budget * (cycles - 2)
    unlabeled = max(pool_size - labeled, 0)
    cand = unlabeled if subset is None else min(subset, unlabeled)
    return cand + labeled


class GraphConv(nn.Module):
    """One graph convolution ``A (H W) + b``; weights and bias uniform in +-1/sqrt(out)."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_out)
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound, generator=generator))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound, generator=generator))

    def forward(self, h: torch.Tensor, adj: torch.Tensor | LowRankAdjacency) -> torch.Tensor:
        if isinstance(adj, torch.Tensor):
            return torch.addmm(self.bias, adj, h @ self.weight)
        return adj @ (h @ self.weight) + self.bias


class GCN(nn.Module):
    """Two graph convolutions: d -> hidden (ReLU, dropout) -> 1."""

    def __init__(self, n_in: int, hidden: int, dropout: float, generator: torch.Generator) -> None:
        super().__init__()
        self.gc1 = GraphConv(n_in, hidden, generator)
        self.gc2 = GraphConv(hidden, 1, generator)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor | LowRankAdjacency, *,
                dropout_gen: torch.Generator | None = None,
                ax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) logits of "labeled" and the (n, hidden) ReLU features (before dropout).

        In training mode dropout masks are drawn from ``dropout_gen``. ``ax``: ``adj @ x``, when the
        caller has it; the first layer is then ``ax W + b``, the same matrix as ``A (x W) + b``
        without an (n, n) x (n, hidden) product.
        """
        if ax is None:
            h = torch.relu(self.gc1(x, adj))
        else:
            h = torch.relu(torch.addmm(self.gc1.bias, ax, self.gc1.weight))
        hd = h
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = torch.empty_like(h).bernoulli_(keep, generator=dropout_gen).div_(keep)
            hd = h * mask
        return self.gc2(hd, adj).squeeze(1), h


def gcn_loss(logits: torch.Tensor, labeled: torch.Tensor, lambda_: float) -> torch.Tensor:
    """``-mean log s(labeled) - lambda_ * mean log(1 - s(unlabeled))`` with ``s = sigmoid(logits)``
    (nats). ``labeled`` is a boolean mask; an empty side contributes 0."""
    loss = logits.new_zeros(())
    if labeled.any():
        loss = loss - F.logsigmoid(logits[labeled]).mean()
    if (~labeled).any():
        loss = loss - lambda_ * F.logsigmoid(-logits[~labeled]).mean()
    return loss


def train_gcn(x: torch.Tensor, adj: torch.Tensor | LowRankAdjacency, labeled: torch.Tensor, *, hidden: int,
              dropout: float, steps: int, lr: float, weight_decay: float, lambda_: float, seed: int) -> GCN:
    """A fresh GCN trained full-batch for ``steps`` Adam steps on the labeled-vs-unlabeled loss,
    returned in eval mode. Initialisation and dropout draw from generators seeded with ``seed``."""
    init_gen = torch.Generator().manual_seed(seed)
    drop_gen = torch.Generator(device=x.device).manual_seed(seed ^ 0x5DEECE66D)
    model = GCN(x.shape[1], hidden, dropout, init_gen).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    # the node features never change, so A X is propagated once: each step's first layer is then
    # (A X) W1, O(n d h), instead of A (X W1), O(n^2 h) on a dense graph; only the 1-wide second
    # layer still multiplies by A
    with torch.no_grad():
        ax = adj @ x
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x, adj, dropout_gen=drop_gen, ax=ax)
        gcn_loss(logits, labeled, lambda_).backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Strategies

GCN_REPO = "razvancaramalau/Sequential-GCN-for-Active-Learning"
GCN_HEAD = f"{GCN_REPO}@bbc43db"  # the repository's HEAD (2022-07-24) the quirks were read from
_OFFICIAL_TRAINING = Quirk(
    "train-20-epochs",
    "the official main.py trains the task model for --no_of_epochs = 20 epochs by default (config.py's "
    "EPOCH = 200 is not used for training) with its lr milestones [160, 240] never reached (a constant lr), "
    "a fresh model every cycle",
    train={"epochs": 20, "schedule.name": "constant", "schedule.milestones": [], "init": "fresh"},
    source=f"{GCN_HEAD} main.py",
)
_OFFICIAL_NORMALIZATION = Quirk(
    "official-std",
    "the task model's images are normalised with mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, "
    "0.2010) (load_dataset.py), not CIFAR-10's std (0.2470, 0.2435, 0.2616)",
    train={"augment.mean": [0.4914, 0.4822, 0.4465], "augment.std": [0.2023, 0.1994, 0.2010]},
    source=f"{GCN_HEAD} load_dataset.py",
)


@dataclass(frozen=True)
class GCNParams:
    """``subset``: unlabeled nodes per query (None: all); ``steps``: full-batch Adam steps;
    ``lambda_``: weight of the unlabeled term; ``max_adjacency_gb``: refuse a dense adjacency larger
    than this many GB (1e9 bytes); ``adjacency``: 'dense' (built, bounded) or 'lowrank' (the same
    operator applied in factored form, no n x n buffer)."""

    subset: Subset = 10000
    steps: Annotated[int, Bounds(ge=1)] = 200
    lr: Annotated[float, Bounds(gt=0)] = 1e-3
    weight_decay: Annotated[float, Bounds(ge=0)] = 5e-4
    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.3
    hidden: Annotated[int, Bounds(ge=1)] = 128
    lambda_: Annotated[float, Bounds(ge=0)] = 1.2
    max_adjacency_gb: Annotated[float, Bounds(gt=0)] = 2.0
    adjacency: Literal["dense", "lowrank"] = "dense"


@dataclass(frozen=True)
class UncertainGCNParams(GCNParams):
    """``s_margin``: the score (probability of "labeled") whose nearest unlabeled nodes are chosen."""

    s_margin: Annotated[float, Bounds(ge=0, le=1)] = 0.1


@dataclass(frozen=True)
class CoreGCNParams(GCNParams):
    """``kcenter_features``: 'hidden' (the GCN's 128-d hidden features, the paper), 'hidden-output'
    (those and the GCN's output logit, 129-d: the official code since a040272) or 'input' (the
    L2-normalised embeddings: the official code before a040272); ``chunk_rows``: rows per k-center
    update."""

    kcenter_features: Literal["hidden", "hidden-output", "input"] = "hidden"
    chunk_rows: Annotated[int, Bounds(ge=1)] = DEFAULT_CHUNK_ROWS


class _GCNStrategy(Strategy):
    Params = GCNParams
    needs = frozenset({Need.EMBEDDINGS, Need.LABELED})

    @classmethod
    def check_schedule(cls, params: dict, *, pool_size: int, initial: int, budget: int, cycles: int,
                       path: str) -> None:
        """Refuse a schedule whose largest query graph exceeds ``max_adjacency_gb``."""
        if params.get("kcenter_features") == "input" or params["adjacency"] == "lowrank":
            return  # no n x n buffer is built
        n = max_query_nodes(pool_size=pool_size, subset=params.get("subset"), initial=initial, budget=budget,
                            cycles=cycles)
        _check_adjacency(n, initial + budget * max(cycles - 2, 0), params, path)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def _graph(self, inputs: Inputs, rng: np.random.Generator, *, train: bool = True):
        """(L2-normalised node features, trained GCN or None, adjacency or None, number of unlabeled nodes)."""
        dev = inputs.device
        cand = inputs.candidates.embeddings.to(dev, torch.float32)
        lab = inputs.labeled.embeddings.to(dev, torch.float32) if inputs.labeled is not None else cand[:0]
        n_u = cand.shape[0]
        x = torch.cat([cand, lab])
        x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12))  # F.normalize, in place
        if not train:
            return x, None, None, n_u
        if self.adjacency == "lowrank":
            adj = LowRankAdjacency(x)
        else:
            _check_adjacency(x.shape[0], lab.shape[0],
                             {"subset": self.subset, "max_adjacency_gb": self.max_adjacency_gb}, "params")
            adj = normalized_adjacency(x)
        labeled = torch.zeros(x.shape[0], dtype=torch.bool, device=dev)
        labeled[n_u:] = True
        seed = int(rng.integers(2**62))
        model = train_gcn(x, adj, labeled, hidden=self.hidden, dropout=self.dropout, steps=self.steps, lr=self.lr,
                          weight_decay=self.weight_decay, lambda_=self.lambda_, seed=seed)
        return x, model, adj, n_u


def _check_adjacency(n: int, labeled: int, params: dict, path: str) -> None:
    """ConfigError naming ``subset`` when an n-node dense adjacency exceeds ``max_adjacency_gb``."""
    limit = params["max_adjacency_gb"]
    need = adjacency_gb(n)
    if need <= limit:
        return
    fits = int(math.isqrt(int(limit * GB / BYTES_PER_ENTRY)))
    room = fits - labeled
    problem = (f"the GCN's dense adjacency over {n} nodes ({n - labeled} unlabeled + {labeled} labeled) needs "
               f"{need:.3g} GB, above max_adjacency_gb = {limit:g}")
    if room >= 1:
        fix = (f"lower {path}.subset to {room} or less, raise {path}.max_adjacency_gb to {need:.3g} if the "
               f"device has that much memory to spare, or set {path}.adjacency to 'lowrank' (no n x n buffer)")
    else:
        fix = (f"the labeled set alone ({labeled}) exceeds the limit: lower al.initial / al.budget / al.cycles, "
               f"raise {path}.max_adjacency_gb, or set {path}.adjacency to 'lowrank'")
    raise ConfigError(f"{path}.subset", problem, fix, params.get("subset"))


@register_strategy
class UncertainGCN(_GCNStrategy):
    name = "uncertaingcn"
    description = ("a GCN over [unlabeled subset; labeled] embeddings learns labeled-vs-unlabeled; the K "
                   "unlabeled nodes scored nearest s_margin (params: subset, steps, s_margin, max_adjacency_gb, "
                   "adjacency)")
    quirks = (_OFFICIAL_TRAINING, _OFFICIAL_NORMALIZATION)

    Params = UncertainGCNParams

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        x, model, adj, n_u = self._graph(inputs, rng)
        with torch.no_grad():
            logits, _ = model(x, adj)
        return inputs.candidates.indices[select_nearest_margin(torch.sigmoid(logits[:n_u]), budget, self.s_margin)]


def select_nearest_margin(scores: torch.Tensor, k: int, s_margin: float) -> np.ndarray:
    """Positions of the ``k`` scores nearest ``s_margin`` (smallest ``|s - s_margin|``; ties: lowest position)."""
    return top_k_lowest((scores.float() - s_margin).abs(), k)


@register_strategy
class CoreGCN(_GCNStrategy):
    name = "coregcn"
    description = ("k-center greedy on the hidden features of a GCN trained labeled-vs-unlabeled "
                   "(params: subset, steps, kcenter_features, max_adjacency_gb, adjacency)")
    quirks = (
        _OFFICIAL_TRAINING,
        _OFFICIAL_NORMALIZATION,
        Quirk("kcenter-on-hidden-and-output",
              "k-center greedy on the concatenation of the GCN's 128-d hidden ReLU features and its 1-d output "
              "(the logit before the sigmoid), 129 dimensions, as the third output of the official GCN "
              "(models/query_models.py) that selection_methods.py uses since commit a040272",
              params={"kcenter_features": "hidden-output"}, source=f"{GCN_REPO}@a040272 selection_methods.py"),
        Quirk("kcenter-on-input-features-d8993bc",
              "the superseded official code (de77723 to d8993bc, replaced in a040272): selection_methods.py "
              "overwrites the GCN features with the L2-normalised backbone features before k-center greedy, so "
              "the trained GCN is never used (and is not trained here); off under protocol official, for "
              "numbers made with that code",
              params={"kcenter_features": "input"}, source=f"{GCN_REPO}@d8993bc selection_methods.py",
              official=False),
    )

    Params = CoreGCNParams

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        use_gcn = self.kcenter_features != "input"
        x, model, adj, n_u = self._graph(inputs, rng, train=use_gcn)
        if use_gcn:
            with torch.no_grad():
                logits, feats = model(x, adj)
            del adj
            if self.kcenter_features == "hidden-output":  # official: [hidden features, output logit]
                feats = torch.cat([feats, logits.unsqueeze(1)], dim=1)
        else:
            feats = x
        order = kcenter_greedy(feats[:n_u], budget, centers=feats[n_u:], chunk_rows=self.chunk_rows, rng=rng)
        return inputs.candidates.indices[order]
