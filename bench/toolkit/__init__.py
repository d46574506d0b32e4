"""Low-level training tools shared by the engine and by strategies that train their own networks.

It sits below both: it imports neither ``bench.engine`` nor ``strategies``, so a strategy (VAAL, PAL,
the pretext tasks, a plugin) uses the same seeding, mixed precision, device placement, batching and
best-epoch selection as the engine instead of a copy of them.

- :mod:`bench.toolkit.seeding`: generators derived from (seed, purpose, ...), seeded initialisation;
- :mod:`bench.toolkit.amp`: the bf16 autocast context;
- :mod:`bench.toolkit.device`: which device holds the data, CPU copies of weights;
- :mod:`bench.toolkit.batches`: shuffled training batches and in-order evaluation batches;
- :mod:`bench.toolkit.fit`: an epoch loop that keeps the best-scoring epoch's weights.
"""

from bench.toolkit.amp import autocast
from bench.toolkit.batches import epoch_batches, eval_batches
from bench.toolkit.device import DEVICE_DATA_LIMIT, cpu_state, data_device, synchronize
from bench.toolkit.fit import BestEpoch, FitResult, fit_with_selection
from bench.toolkit.seeding import derive_seed, numpy_rng, seed_global, seeded_init, torch_generator

__all__ = [
    "BestEpoch", "DEVICE_DATA_LIMIT", "FitResult", "autocast", "cpu_state", "data_device", "derive_seed",
    "epoch_batches", "eval_batches", "fit_with_selection", "numpy_rng", "seed_global", "seeded_init",
    "synchronize", "torch_generator",
]
