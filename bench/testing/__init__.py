"""The strategy contract suite: what every registered strategy, built-in or plugin, must do.

Run it on every registered strategy (plugins installed through the ``albench.strategies`` entry
points included)::

    python -m pytest --pyargs albench.testing

or on some of them, named in ``ALBENCH_STRATEGY`` (comma-separated)::

    ALBENCH_STRATEGY=my-strategy python -m pytest --pyargs albench.testing

Each strategy is checked (:mod:`albench.testing.checks`) for: the same ``rng`` giving the same
query; torch's global generator (CPU, and CUDA when present), NumPy's and Python's left untouched
by ``prepare`` / ``initial`` / ``candidates`` / ``select``; queries of exactly ``budget``
(``initial``: ``size``) distinct, unlabeled, in-pool int64 indices; a ``state_dict`` that survives
the engine's checkpoint codec and a resumed strategy picking what an uninterrupted one picks; an
unknown param refused with a ConfigError naming it; a tiny end-to-end run on digits completing.

The hooks run on a small synthetic pool driven like the engine's cycle loop
(:class:`albench.testing.harness.SyntheticRun`), with small "fast" params so that the whole
suite takes seconds. A strategy declares its own as a class attribute::

    class MyStrategy(Strategy):
        name = "my-strategy"
        test_params = {"epochs": 1, "width": 4}  # used by the contract suite only

(:func:`fast_params` falls back to :data:`BUILTIN_TEST_PARAMS`, then to no params at all). The
device strategies get is ``$ALBENCH_CONTRACT_DEVICE`` (``cpu`` by default; ``cuda`` or ``auto``).
"""

from __future__ import annotations

import os

from albench.testing.harness import ContractError, GlobalRNGTouched, Schedule, SyntheticRun, needs_of

#: the environment variable restricting the suite to some strategies (comma-separated names)
STRATEGY_ENV = "ALBENCH_STRATEGY"

_PRETEXT = {"pretext_model": "small-cnn", "pretext_model_params": {"width": 4}, "pretext_epochs": 1,
            "pretext_batch_size": 64, "pretext_selection": "final"}

#: fast params of the built-in strategies (a strategy's own ``test_params`` attribute takes precedence)
BUILTIN_TEST_PARAMS: dict[str, dict] = {
    "random": {},
    "least-confidence": {"subset": 40},
    "entropy": {"subset": 40},
    "margin": {"subset": 40},
    "coreset": {"subset": 40},
    "learning-loss": {"hidden": 8, "subset": 40},
    "learning-loss-detached": {"hidden": 8, "subset": 40},
    "coregcn": {"steps": 10, "hidden": 16, "subset": 40},
    "uncertaingcn": {"steps": 10, "hidden": 16, "subset": 40},
    "vaal": {"iterations": 3, "batch_size": 8, "width": 4, "latent_dim": 4, "subset": 40},
    "pal": {"scorer_model": "small-cnn", "scorer_params": {"width": 4}, "epochs": 1, "batch_size": 8,
            "sub_query": 3, "finetune_epochs": 1, "crop_padding": 1, "hflip": False},
    "pt4al": dict(_PRETEXT),
    "pt4al-pretext-only": dict(_PRETEXT),
    "pt4al-sampling-only": {},
    "badge": {"subset": 40},
    "bald": {"passes": 4, "subset": 40},
    "variation-ratios": {"passes": 4, "subset": 40},
    "mc-entropy": {"passes": 4, "subset": 40},
    "mean-std": {"passes": 4, "subset": 40},
    "batchbald": {"passes": 4, "samples": 16, "subset": 40},
    "typiclust": {"pretext_model": "small-cnn", "pretext_width": 4, "pretext_epochs": 1, "pretext_batch_size": 32,
                  "max_clusters": 10},
    "probcover": {"pretext_model": "small-cnn", "pretext_width": 4, "pretext_epochs": 1, "pretext_batch_size": 32,
                  "delta": 0.5},
}


def fast_params(name: str) -> dict:
    """The params the suite runs strategy ``name`` with: its class's ``test_params`` mapping if it declares
    one, else :data:`BUILTIN_TEST_PARAMS` [name], else ``{}`` (a copy; validated by ``make_strategy``)."""
    import copy

    from albench.strategies.registry import get_strategy

    declared = getattr(get_strategy(name), "test_params", None)
    if declared is not None:
        return copy.deepcopy(dict(declared))
    return copy.deepcopy(BUILTIN_TEST_PARAMS.get(name, {}))


def selected_strategies() -> list[str]:
    """The strategies to check: those named in ``$ALBENCH_STRATEGY`` (comma-separated), else every
    registered one. An unknown name raises ValueError listing the known ones."""
    from albench.strategies.registry import strategy_names

    known = strategy_names()
    wanted = [n.strip() for n in os.environ.get(STRATEGY_ENV, "").split(",") if n.strip()]
    if not wanted:
        return known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"{STRATEGY_ENV} names unknown strategies {unknown}; registered: {', '.join(known)} "
                         "(is the plugin package installed, with its albench.strategies entry point?)")
    return wanted


__all__ = ["BUILTIN_TEST_PARAMS", "ContractError", "GlobalRNGTouched", "STRATEGY_ENV", "Schedule", "SyntheticRun",
           "fast_params", "needs_of", "selected_strategies"]
