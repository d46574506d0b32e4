"""Active learning strategies behind one plugin interface (see :mod:`strategies.base`)."""

from strategies.base import Auxiliary, Inputs, ModelInfo, Need, Outputs, PoolState, PrepareContext, Quirk, Strategy
from strategies.registry import get_strategy, make_strategy, register_strategy, strategy_names

__all__ = [
    "Auxiliary", "Inputs", "ModelInfo", "Need", "Outputs", "PoolState", "PrepareContext", "Quirk", "Strategy",
    "get_strategy", "make_strategy", "register_strategy", "strategy_names",
]
