"""BALD with MC dropout (Gal, Islam & Ghahramani, ICML 2017; Houlsby et al. 2011).

Each candidate is scored by the mutual information between its predicted label and the network's
weights, estimated from T stochastic forward passes with dropout on:

    MI = H[mean_t p_t] - mean_t H[p_t]      (nats; 0 log 0 = 0)

and the K highest are queried (ties: the lower pool index). The passes are a declared input
(:class:`~albench.strategies.base.StochasticPasses`): the engine runs them in chunks of one evaluation batch
on the run's device, with dropout masks from a generator seeded from the run (this strategy draws the
seed from the run's candidates generator each cycle), and hands each chunk's (b, T, C) posteriors to
:func:`mutual_information`; only the (n,) scores are kept, so memory is one chunk (eval batch x T x C
floats) plus n scores, whatever the pool size.

Paper protocol (baal-org/baal 7da1cfb, ``baal/bayesian/dropout.py`` and
``baal/active/heuristics/heuristics.py``): only the dropout layers are stochastic; BatchNorm stays in
eval mode with its running statistics; T = 20 (baal's experiment default); xlogy entropies.

The model needs dropout: ``small-cnn`` and ``resnet18-cifar`` take ``model.params.dropout`` (p of a
dropout layer before the final linear layer, default 0), ``dbal-cnn`` has ``dropout_conv`` and
``dropout_dense``. A model whose dropout is 0 (or that has no such param) is refused when the config
is loaded: every pass would be identical and MI = 0. A model that declares its stochastic split runs
only the layers from its first dropout on T times (see :mod:`albench.strategies.mc_dropout`).

Official protocol: ej0cl6/deep-active-learning (eea3d2c), whose BALD file JordanAsh/badge and DeepAL+
copied. Its quirks, each a switch:

- ``train-mode-passes``: ``nets.py`` ``Net.predict_prob_dropout_split`` calls ``self.clf.train()``, so
  BatchNorm layers use the statistics of each batch of candidates (and dropout is on). Our passes run
  in batches of ``train.eval_batch_size`` in pool order, as the official loader does (shuffle off).
- ``ten-passes``: ``query_strategies/bayesian_active_learning_disagreement_dropout.py`` defaults
  ``n_drop=10``.
- ``log-zero-nan``: the same file takes ``torch.log`` of float32 probabilities without guarding 0, so
  a probability that underflows to 0 makes a candidate's score NaN, and ``uncertainties.sort()``
  (ascending E[H] - H[E], i.e. descending MI) puts NaN last: such a candidate is never queried while
  a finite one is left. Changes numbers only when a softmax underflows in float32.

Gal, Islam & Ghahramani's own Keras code
(Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803,
``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_BALD_Q10_N1000.py``) is a second
official codebase; its quirks are off under ``protocol: official`` (which means ej0cl6's code here)
and are listed under ``quirks`` to reproduce it:

- ``gal-nan-first``: ``np.log2`` without a guard, per-pass entropies in float32 summed in float64, and
  ``argsort()[-K:][::-1]``: a NaN score (a probability that underflowed to 0) is queried first;
- ``gal-pool-subset-2000``: each acquisition scores a random 2,000 of the pool.

Documented, not switches (they change no number or cannot be reproduced here):
- the official ranks E[H] - H[E] ascending; that is MI descending, as ours (its unstable sort breaks
  exact ties arbitrarily, ours by pool index);
- its C is ``len(np.unique(data.Y))`` over the candidates' *true* labels (all classes on CIFAR-10);
- its ``CIFAR10_Net`` has ``F.dropout(p=0.5)`` on the 50-d penultimate activation; to match, set
  ``model.params.dropout: 0.5`` (a model param, not a strategy quirk);
- JordanAsh/badge and DeepAL+ run the same file on networks without dropout (MI ~ 0, a ranking of
  float noise); we refuse that configuration instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import (Inputs, PoolState, Quirk, StochasticPasses, Strategy, Subset, random_subset,
                             top_k_highest)
from albench.strategies.registry import register_strategy

SUGGESTED_DROPOUT = 0.5  # ej0cl6's nets and the TypiClust repo's BALD baseline use p = 0.5
GAL_REPO = "Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803"
GAL_SCRIPTS = "ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run"


def require_dropout(*, model: str, model_params: dict, path: str, strategy: str) -> None:
    """ConfigError naming ``path.dropout`` unless ``model`` declares a ``dropout`` param above 0 in
    ``model_params`` (or by default), or, for a model with several dropout params (``dropout_*``),
    one of them above 0: MC-dropout passes of a model without one are all identical. For the
    ``check_model`` hook of the MC-dropout strategies."""
    from albench.models.registry import dropout_params, model_entry

    declared = model_entry(model).params
    defaults = {f.name: f.default for f in dataclasses.fields(declared)} if declared is not None else {}
    several = {k: v for k, v in dropout_params(model, model_params).items() if k != "dropout"}
    if "dropout" not in defaults and several:
        from albench.strategies.mc_dropout import check_dropout_model

        check_dropout_model(strategy, model, model_params, path)
        return
    if "dropout" not in defaults:
        raise ConfigError(f"{path}.dropout", f"model {model!r} has no dropout param; {strategy}'s MC dropout needs one",
                          f"use small-cnn or resnet18-cifar with {path}.dropout: {SUGGESTED_DROPOUT}, "
                          f"or leave {strategy} out of strategies", None)
    p = model_params.get("dropout", defaults["dropout"])
    if not isinstance(p, (int, float)) or isinstance(p, bool) or p <= 0:
        raise ConfigError(f"{path}.dropout", f"is 0: {strategy}'s MC-dropout passes would all be identical (MI = 0)",
                          f"set {path}.dropout: {SUGGESTED_DROPOUT} (the same model then serves every "
                          f"strategy of the sweep), or leave {strategy} out of strategies", p)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """(b,) mutual information in nats from (b, T, C) posteriors of T stochastic passes:
    H[mean over passes] - mean over passes of H, with 0 log 0 = 0, computed in float64."""
    p = probs.double()
    mean = p.mean(dim=1)
    entropy_of_mean = -torch.special.xlogy(mean, mean).sum(dim=-1)
    mean_entropy = -torch.special.xlogy(p, p).sum(dim=-1).mean(dim=1)
    return entropy_of_mean - mean_entropy


def mutual_information_gal(probs: torch.Tensor) -> torch.Tensor:
    """(b,) the score as Gal et al.'s official Keras script computes it
    (Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803, Dropout_BALD_Q10_N1000.py):
    per pass ``-sum(p * np.log2(p))`` in float32, passes accumulated in float64 in pass order, minus
    from the entropy (``np.log2``) of the float64 mean; a zero probability gives NaN (ranked first
    by :meth:`Bald.select` under ``log_zero: nan-first``)."""
    p = probs.detach().float().cpu().numpy()
    total = np.zeros(p.shape[::2], dtype=np.float64)
    entropies = np.zeros(p.shape[0], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(p.shape[1]):
            total = total + p[:, d, :]
            entropies = entropies + np.sum(-np.multiply(p[:, d, :], np.log2(p[:, d, :])), axis=1)
        avg = np.divide(total, p.shape[1])
        g = np.sum(-np.multiply(avg, np.log2(avg)), axis=1)
    return torch.from_numpy(g - np.divide(entropies, p.shape[1]))


def mutual_information_official(probs: torch.Tensor) -> torch.Tensor:
    """(b,) the same score as ej0cl6/deep-active-learning eea3d2c computes it: float32, ``torch.log``
    without a guard, so a zero probability gives NaN (ranked last by :meth:`Bald.select`)."""
    p = probs.float()
    pb = p.mean(dim=1)
    entropy1 = (-pb * torch.log(pb)).sum(dim=1)
    entropy2 = (-p * torch.log(p)).sum(dim=2).mean(dim=1)
    return -(entropy2 - entropy1)


@dataclass(frozen=True)
class BaldParams:
    """``passes``: stochastic forward passes per candidate (T); ``batchnorm``: BatchNorm's mode during
    them (``eval``: running statistics, as baal; ``train``: batch statistics, the official quirk);
    ``log_zero``: ``zero`` (0 log 0 = 0), ``nan-last`` (ej0cl6's unguarded log, NaN ranked last) or
    ``nan-first`` (Gal et al.'s unguarded log2 and ``argsort()[-K:][::-1]``, NaN ranked first); ``subset``:
    score a random subset of this many unlabeled images (None: all of them)."""

    passes: Annotated[int, Bounds(ge=2)] = 20
    batchnorm: Literal["eval", "train"] = "eval"
    log_zero: Literal["zero", "nan-last", "nan-first"] = "zero"
    subset: Subset = None


@register_strategy
class Bald(Strategy):
    name = "bald"
    description = "the K highest mutual informations over T MC-dropout passes (params: passes, subset)"
    Params = BaldParams
    quirks = (
        Quirk("train-mode-passes",
              "the passes run in model.train(), so BatchNorm uses each batch's statistics "
              "(ej0cl6/deep-active-learning eea3d2c, nets.py Net.predict_prob_dropout_split)",
              params={"batchnorm": "train"}, source="ej0cl6/deep-active-learning@eea3d2c nets.py"),
        Quirk("ten-passes",
              "10 stochastic passes (ej0cl6/deep-active-learning eea3d2c, "
              "query_strategies/bayesian_active_learning_disagreement_dropout.py, n_drop=10)",
              params={"passes": 10},
              source="ej0cl6/deep-active-learning@eea3d2c query_strategies/bayesian_active_learning_disagreement_dropout.py"),
        Quirk("log-zero-nan",
              "entropies with an unguarded float32 log: a probability that underflows to 0 makes the score "
              "NaN, ranked last (ej0cl6/deep-active-learning eea3d2c, "
              "query_strategies/bayesian_active_learning_disagreement_dropout.py)",
              params={"log_zero": "nan-last"},
              source="ej0cl6/deep-active-learning@eea3d2c query_strategies/bayesian_active_learning_disagreement_dropout.py"),
        # Gal, Islam & Ghahramani 2017's Keras code: another official codebase, so off under protocol
        # official (which means ej0cl6's for BALD); list them under quirks to reproduce that code
        Quirk("gal-nan-first",
              "Gal et al.'s official score: entropies with an unguarded np.log2, and the query is "
              "argsort()[-K:][::-1], so a score made NaN by a probability that underflowed to 0 is queried first",
              params={"log_zero": "nan-first"}, official=False,
              source=f"{GAL_REPO} {GAL_SCRIPTS}/Dropout_BALD_Q10_N1000.py"),
        Quirk("gal-pool-subset-2000",
              "Gal et al.'s official acquisition scores a uniform random 2,000 of the unlabeled pool "
              "(pool_subset = 2000), not the whole pool the paper's text names",
              params={"subset": 2000}, official=False, source=f"{GAL_REPO} {GAL_SCRIPTS}/Dropout_BALD_Q10_N1000.py"),
    )

    def needs_for(self, task: str) -> frozenset:
        """T stochastic passes reduced to the mutual information per candidate; the engine seeds the
        dropout masks from the run's seed and cycle."""
        reduce = {"zero": mutual_information, "nan-last": mutual_information_official,
                  "nan-first": mutual_information_gal}[self.log_zero]
        return frozenset({StochasticPasses(passes=self.passes, batchnorm=self.batchnorm, reduce=reduce)})

    @classmethod
    def check_model(cls, params: dict, *, model: str, model_params: dict, path: str) -> None:
        """Refuse a model without an active dropout layer (``model.params.dropout`` 0 or absent; a model
        with several dropout params, ``dropout_*``, needs one above 0)."""
        require_dropout(model=model, model_params=model_params, path=path, strategy=cls.name)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        if c.stochastic is None:
            raise ValueError("bald: no stochastic-pass scores in the inputs (needs_for() declares the passes; "
                             "the engine computes them)")
        scores = c.stochastic.detach().double().cpu().numpy()
        if self.log_zero == "nan-last":  # the official quirk: a NaN from log(0) is a score, ranked last on purpose
            return c.indices[np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:budget]]
        if self.log_zero == "nan-first":  # Gal et al.'s argsort()[-K:][::-1]: NaN sorts last, so comes first
            return c.indices[scores.argsort()[-budget:][::-1]]
        return c.indices[top_k_highest(scores, budget)]  # refuses NaN: under 0 log 0 = 0 it means divergence
