"""Low-level training tools shared by the engine and by strategies that train their own networks.

It sits below both: it imports neither ``albench.engine`` nor ``strategies``, so a strategy (VAAL, PAL,
the pretext tasks, a plugin) uses the same seeding, mixed precision, device placement, batching and
best-epoch selection as the engine instead of a copy of them.

- :mod:`albench.toolkit.seeding`: generators derived from (seed, purpose, ...), seeded initialisation;
- :mod:`albench.toolkit.amp`: the bf16 autocast context;
- :mod:`albench.toolkit.device`: which device holds the data, CPU copies of weights;
- :mod:`albench.toolkit.batches`: shuffled training batches and in-order evaluation batches;
- :mod:`albench.toolkit.fit`: an epoch loop that keeps the best-scoring epoch's weights.
"""

from albench.toolkit.amp import autocast
from albench.toolkit.batches import epoch_batches, eval_batches
from albench.toolkit.device import DEVICE_DATA_LIMIT, cpu_state, data_device, synchronize
from albench.toolkit.fit import BestEpoch, FitResult, fit_with_selection
from albench.toolkit.seeding import derive_seed, numpy_rng, seed_global, seeded_init, torch_generator

__all__ = [
    "BestEpoch", "DEVICE_DATA_LIMIT", "FitResult", "autocast", "cpu_state", "data_device", "derive_seed",
    "epoch_batches", "eval_batches", "fit_with_selection", "numpy_rng", "seed_global", "seeded_init",
    "synchronize", "torch_generator",
]
