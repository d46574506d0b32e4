"""BatchBALD with MC dropout (Kirsch, van Amersfoort & Gal, NeurIPS 2019).

BALD scores each candidate alone, so with K > 1 it queries near-duplicates. BatchBALD builds the
batch greedily, each pick maximising the mutual information between the labels of the batch so far
*plus* the candidate and the weights, estimated from T consistent MC-dropout passes w_1..w_T:

    a(x_1..x_n, x) = H[y_1..y_n, y] - (H[y | w] + sum_j H[y_j | w])          (nats)

- ``H[y | w] = -(1/T) sum_t sum_c p_t(c) log p_t(c)``, the conditional entropy, exact (0 log 0 = 0);
- ``H[y_1..y_n, y]``, the joint entropy, from the joint over the passes,
  ``P(m, c) = (1/T) sum_t J[m, t] p_t(c)`` with ``J[m, t] = prod_j p_{j,t}(y_j(m))``:
  *exact* (m runs over all C^n label configurations of the chosen points) while C^n <= M;
  else *sampled*: M configurations are drawn, M // T from each pass t (y_j ~ p_{j,t}, so m ~ q, the
  mean over the passes), and ``H ~ (1/M) sum_m sum_c -P(m, c) log P(m, c) / q(m)``, q(m) = mean_t J[m, t].
  The sample is redrawn from all chosen points at every sampled step.

n = 0 gives BALD's mutual information, so K = 1 picks BALD's top point. Each step takes the highest
score over the candidates not yet chosen, ties to the lowest pool index.

What this reproduces of the authors' code, BlackHC/batchbald_redux e56c260 (``batchbald_redux/
batchbald.py`` ``get_batchbald_batch``, ``joint_entropy.py`` ``DynamicJointEntropy``) and the paper's
code BlackHC/BatchBALD 2ab8d74 (``src/multi_bald.py``, ``src/joint_entropy/{exact,sampling}.py``), with
no switch, since both codes agree:

- the exact/sampled switch: exact while ``C ** n <= M``, n the number of points chosen so far
  (``DynamicJointEntropy.add_variables``; ``multi_bald.py``: ``num_classes ** i <= num_samples``);
- the sample: ``S = M // T`` draws per pass for every chosen point and pass, with replacement
  (``torch.multinomial`` on the float64 posteriors, rows in (point, pass) order), T * S configurations
  in all; J from ``exp(sum_j log p)``; redrawn at every step. Identical draws are merged here into one
  row weighted by its count, the same sum (the authors keep a row per draw): with confident points most
  draws repeat, which makes the sampled steps several times cheaper;
- float64 for the joint, the entropies and the scores (the redux example passes ``dtype=torch.double``;
  the paper's code casts everything to float64); scores ``joint - (conditional + shared)``;
- ties: the first maximum over the candidates in pool order (``scores_N.max(dim=0)``, ``argmax()``);
  picks already made are set to -inf;
- consistent MC dropout (``ConsistentMCDropout``): pass t uses one dropout mask per layer for every
  candidate (``StochasticPasses(consistent=True)``), BatchNorm in eval mode;
- the candidates: the whole unlabeled pool (``subset`` None; the paper's MNIST runs
  ``initial_percentage=100, reduce_percentage=0``: no culling).

``samples`` (M) defaults to 40,000, the paper's code (``multi_bald.py``: ``num_samples_per_ws = 40000 // k``,
``num_samples = num_samples_per_ws * k``), which made the paper's figures; with T = 100 and C = 10 the
first five picks are exact and the rest sampled. Documented, not switches (no pick they change can
be reproduced here, or they change none):

- the sampled configurations come from a torch generator seeded from the run's ``select`` generator;
  the authors draw from torch's global RNG (seeded once per experiment in the paper's code, not at
  all in the redux), whose state depends on everything drawn before, so their draws cannot be replayed;
- the dropout masks likewise come from the engine's seeded generator, the authors' from the global RNG;
- the authors' input is float32 ``log_softmax``, exponentiated in float64; ours is the engine's float32
  softmax. Where a softmax underflows to 0 (a logit gap above ~103), theirs is e^-103 or less: the
  entropy terms differ by < 1e-40 nats, and 0 log 0 = 0 here keeps the scores finite;
- the redux's ``num_samples`` has no default (its example notebook uses 100,000: set ``samples:
  100000`` to match it); the paper's code compares C^n with T * (40000 // T), the redux with M (the
  same number when T divides M);
- the redux computes the conditional entropy in the input's dtype (float64 in its example); ours is
  float64;
- the authors keep each sampled configuration's J[m, t] as a plain float64 product; ours factors out
  s_m = max_t J[m, t] (it cancels in P / q and adds log s_m to -log P), the same number in exact
  arithmetic. It matters once a product falls below float64's range, e^-708 (a batch of hundreds of
  uncertain points): theirs then loses precision and ends in 0 / 0 = NaN scores; ours stays finite;
- summation order inside the float64 sums differs (chunked GEMMs), which can only flip float near-ties.

Memory: the engine hands over the (N, T, C) float32 posteriors (refused above 1 GiB: use ``subset``);
the joint is computed a chunk of candidates at a time, ``CHUNK_BYTES`` of float64 (M' x chunk x C) per
chunk, M' <= M the configurations (distinct draws while sampling), plus J (M' x T float64) and the
draws' (T * S, n) labels (the authors' sampling gathers an (n, T, T, S) float64 tensor at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NamedTuple

import numpy as np
import torch

from albench.divergence import check_finite
from albench.errors import ConfigError
from albench.strategies.base import (Inputs, PoolState, StochasticPasses, Strategy, Subset, random_subset)
from albench.strategies.registry import register_strategy
from albench.typed import Bounds

# float64 bytes of one chunk's joint probabilities (configurations x candidates x classes)
CHUNK_BYTES = 32 << 20


def conditional_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(n,) float64 H[y | w] in nats from (n, T, C) posteriors: the mean over the T passes of each
    pass's entropy, with 0 log 0 = 0."""
    p = probs.double()
    return -torch.special.xlogy(p, p).sum(dim=(1, 2)) / p.shape[1]


def exact_joint(chosen: torch.Tensor) -> torch.Tensor:
    """(C^n, T) float64: for every label configuration m of the n chosen points (the first point's
    label slowest, the last's fastest) and every pass t, prod_j p_{j,t}(y_j(m)). ``chosen`` is
    (n, T, C); n = 0 gives one row of ones."""
    n, t, c = chosen.shape
    joint = torch.ones(1, t, dtype=torch.float64, device=chosen.device)
    for j in range(n):
        # (M, 1, T) x (1, C, T) -> (M * C, T): configuration m extended by each label of point j
        joint = (joint[:, None, :] * chosen[j].double().t()[None, :, :]).reshape(-1, t)
    return joint


class Sample(NamedTuple):
    """A sample of label configurations of the chosen points (see :func:`sampled_joint`)."""

    joint: torch.Tensor  # (U, T) float64: J[u, t] / s_u for each distinct configuration u
    log_scale: torch.Tensor  # (U,) float64: log s_u, s_u = max_t J[u, t]
    counts: torch.Tensor  # (U,) float64: how many of the draws gave configuration u (they sum to T * S)


def sampled_joint(chosen: torch.Tensor, samples: int, generator: torch.Generator) -> Sample:
    """Label configurations of the n chosen points drawn S = samples // T at a time from each pass's
    posteriors (T * S draws: for every chosen point and pass, S labels with replacement), and for each
    configuration u the product over the points of every pass's probability of its label,
    J[u, t] = exp(sum_j log p_{j,t}(y_j(u))).

    Identical draws are merged into one row with its count (the estimate sums over the draws; a row
    weighted by its count is the same sum). Each row is stored divided by its largest entry s_u, with
    log s_u beside it: the scale cancels in P(u, c) / q(u) and enters the entropy as log s_u, so no
    product underflows however many points are chosen. ``chosen`` is (n, T, C) with n >= 1; the draws
    come from ``generator`` only."""
    n, t, c = chosen.shape
    s = samples // t
    p = chosen.double()
    # (n, T * S) labels: S draws with replacement from every (point, pass) row, in that row order
    labels = torch.multinomial(p.reshape(n * t, c), s, replacement=True, generator=generator).reshape(n, t * s)
    configs, counts = torch.unique(labels.t(), dim=0, return_counts=True)  # (U, n) distinct configurations
    log_p = torch.log(p)
    log_joint = torch.zeros(t, configs.shape[0], dtype=torch.float64, device=chosen.device)
    for j in range(n):
        # (T, U): pass t (rows) log probability of configuration u's label for point j
        log_joint += log_p[j].index_select(1, configs[:, j])
    log_scale = log_joint.max(dim=0).values  # finite: a drawn label has a probability above 0 in its own pass
    return Sample((log_joint - log_scale).exp_().t().contiguous(), log_scale, counts.double())


def joint_entropies(joint: torch.Tensor, probs: torch.Tensor, *, sample: Sample | None = None,
                    chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """(N,) float64 H[y_1..y_n, y] in nats for each of the N candidates of ``probs`` (N, T, C), given
    the chosen points' joint over the passes.

    ``sample`` None: ``joint`` is :func:`exact_joint`'s (M, T), and H = sum over the M configurations
    and the C labels of -P log P, P(m, c) = (1/T) sum_t J[m, t] p_t(c). Otherwise ``joint`` is ignored
    and H is the importance-weighted mean over the draws of :func:`sampled_joint`,
    (1/D) sum_draws sum_c -P(u, c) log P(u, c) / q(u), q(u) = (1/T) sum_t J[u, t], D = T * S draws,
    computed with each configuration's scale factored out (P / q, and log P = log s_u + log(P / s_u)).

    Computed a chunk of candidates at a time, so that the (rows, chunk, C) float64 joint probabilities
    stay within ``chunk_bytes``."""
    weights = log_scale = None
    if sample is not None:
        joint = sample.joint
        # (U, 1): count / (D q(u)); each row's mean is at least 1 / T
        weights = (sample.counts / (joint.mean(dim=1) * sample.counts.sum()))[:, None]
        log_scale = sample.log_scale[:, None]
    m, t = joint.shape
    n, t2, c = probs.shape
    if t != t2:
        raise ValueError(f"the joint has {t} passes and the candidates {t2}")
    out = torch.empty(n, dtype=torch.float64, device=probs.device)
    step = max(1, chunk_bytes // (m * c * 8))
    for start in range(0, n, step):
        chunk = probs[start:start + step].double()
        b = chunk.shape[0]
        # (M, T) @ (T, b * C) -> (M, b * C): P(m, y = c) summed over the passes, then averaged
        joint_probs = joint @ chunk.permute(1, 0, 2).reshape(t, b * c)
        joint_probs.div_(t)
        # (M, b): sum_c P(m, c) / s_m, from each pass's posterior sum (1 up to float32 rounding)
        mass = None if weights is None else joint @ (chunk.sum(dim=2).t() / t)
        nats = torch.special.xlogy(joint_probs, joint_probs, out=joint_probs).reshape(m, b, c).sum(dim=2)
        if weights is not None:
            nats = (nats + log_scale * mass).mul_(weights)
        out[start:start + b] = -nats.sum(dim=0)
    return out


def batchbald_select(probs: torch.Tensor, budget: int, samples: int, generator: torch.Generator,
                     chunk_bytes: int = CHUNK_BYTES) -> tuple[list[int], list[float], list[bool]]:
    """Greedy BatchBALD over the (N, T, C) posteriors ``probs`` (T consistent passes).

    Returns (positions into ``probs`` in pick order, each pick's BatchBALD score of the batch so far
    in nats, whether each pick's joint entropy was sampled). The joint is exact while C ** n <=
    ``samples`` (n = points chosen before the pick), else sampled from ``samples`` // T draws per pass
    with ``generator``."""
    n, t, c = probs.shape
    if budget > n:
        raise ValueError(f"batchbald: a budget of {budget} from {n} candidates")
    if samples < t:
        raise ValueError(f"batchbald: samples ({samples}) must be at least the number of passes ({t})")
    conditional = conditional_entropy(probs)
    picks: list[int] = []
    scores: list[float] = []
    modes: list[bool] = []
    joint, sample = exact_joint(probs[:0]), None
    for i in range(budget):
        sampled = c ** i > samples
        if sampled:
            sample = sampled_joint(probs[picks], samples, generator)
        elif i > 0:
            joint = exact_joint(probs[picks])
        score = joint_entropies(joint, probs, sample=sample, chunk_bytes=chunk_bytes)
        shared = conditional[picks].sum()
        score -= conditional + shared
        check_finite(score, phase="select", what="a BatchBALD score")
        score[picks] = -float("inf")
        best = int(torch.argmax(score))  # the first maximum: ties to the lowest position
        picks.append(best)
        scores.append(float(score[best]))
        modes.append(sampled)
    return picks, scores, modes


@dataclass(frozen=True)
class BatchBaldParams:
    """``passes``: consistent MC-dropout passes per candidate (T); ``samples``: M, the most label
    configurations of the batch so far summed exactly (C^n <= M), and the number drawn (T * (M // T))
    once there are more; ``subset``: score a random subset of this many unlabeled images (None: all)."""

    passes: Annotated[int, Bounds(ge=2)] = 100
    samples: Annotated[int, Bounds(ge=2)] = 40_000
    subset: Subset = None


@register_strategy
class BatchBald(Strategy):
    name = "batchbald"
    description = ("greedy batch maximising the joint mutual information over T consistent MC-dropout passes "
                   "(params: passes, samples, subset)")
    Params = BatchBaldParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.last_sampled: list[bool] = []  # per pick of the latest select: joint sampled (True) or exact
        self.last_scores: list[float] = []  # per pick of the latest select: the batch's score, nats

    def needs_for(self, task: str) -> frozenset:
        """T consistent stochastic passes, unreduced: (N, T, C) float32 posteriors; the engine seeds the
        dropout masks from the run's seed and cycle."""
        return frozenset({StochasticPasses(passes=self.passes, batchnorm="eval", reduce=None, consistent=True)})

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        if params["samples"] < params["passes"]:
            raise ConfigError(f"{path}.samples", f"is below passes ({params['passes']}): each pass draws "
                              "samples // passes configurations, so none would be drawn",
                              f"set {path}.samples to at least {path}.passes (default 40000)", params["samples"])

    @classmethod
    def check_schedule(cls, params: dict, *, pool_size: int, initial: int, budget: int, cycles: int,
                       path: str) -> None:
        subset = params.get("subset")
        if subset is not None and subset < budget:
            raise ConfigError(f"{path}.subset", f"scores {subset} candidates for a budget of {budget}",
                              f"set {path}.subset to at least al.budget ({budget}), or null", subset)

    @classmethod
    def check_model(cls, params: dict, *, model: str, model_params: dict, path: str) -> None:
        """Refuse a model without an active dropout layer, as BALD does."""
        from albench.strategies.bald import require_dropout

        require_dropout(model=model, model_params=model_params, path=path, strategy=cls.name)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        if c.stochastic is None or c.stochastic.ndim != 3:
            raise ValueError("batchbald: no (N, T, C) stochastic-pass posteriors in the inputs (needs_for() "
                             "declares the passes; the engine computes them)")
        probs = c.stochastic
        generator = torch.Generator(device=probs.device)
        generator.manual_seed(int(rng.integers(0, 2**63 - 1)))  # the sampled configurations' draws
        picks, self.last_scores, self.last_sampled = batchbald_select(probs, budget, self.samples, generator)
        return np.asarray(c.indices, dtype=np.int64)[picks]
