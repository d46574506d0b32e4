"""Active learning strategies behind one plugin interface (see :mod:`albench.strategies.base`)."""

from albench.strategies.base import Auxiliary, Inputs, ModelInfo, Need, Outputs, PoolState, PrepareContext, Quirk, Strategy
from albench.strategies.registry import get_strategy, make_strategy, register_strategy, strategy_names

__all__ = [
    "Auxiliary", "Inputs", "ModelInfo", "Need", "Outputs", "PoolState", "PrepareContext", "Quirk", "Strategy",
    "get_strategy", "make_strategy", "register_strategy", "strategy_names",
]
