"""What determines a pretext model: the task, its options, the optimiser, the backbone, the seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from albench.toolkit.seeding import derive_seed  # noqa: F401  (re-exported: pretext code derived its seeds here)


@dataclass
class PretextSpec:
    """Pretext training hyperparameters. Defaults are the official PT4AL values (rotation.py and the
    README's 15 epochs): batch 256, SGD lr 0.1 / momentum 0.9 / weight decay 5e-4, constant lr (the
    official milestones never trigger), CIFAR ResNet-18, and the epoch with the best pretext score on
    the pool itself is kept (``selection: best``; ``final`` keeps the last epoch)."""

    task: str = "rotation"
    options: dict = field(default_factory=dict)  # task-specific, full and typed (see tasks.py)
    epochs: int = 15
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    model: str = "resnet18-cifar"
    model_params: dict = field(default_factory=dict)
    selection: str = "best"  # best | final
    seed: int = 0
    # NHWC weights, as the main-task fast path: faster convolutions, and float sums in another order,
    # so it is part of the cache key
    channels_last: bool = True

    def fields(self) -> dict:
        """Plain-data copy (a cache-key part and a record of what was trained)."""
        return asdict(self)

