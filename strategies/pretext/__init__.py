"""Self-supervised pretext tasks and their per-image losses (PT4AL's batch split).

``pretext_losses(spec, pool_images=..., ...)`` trains a pretext network on an unlabeled pool (or
reads its losses from the on-disk cache) and returns one loss per image. The tasks work on any
uint8 image pool and any backbone of the model registry; ``colorization`` scores pixels, so it
serves segmentation pools as well as classification ones. ``pretext_features(spec, ...)`` returns
the trained network's pooled backbone embedding of every pool image instead (TypiClust, ProbCover),
cached the same way.
"""

from albench.toolkit.seeding import derive_seed
from albench.strategies.pretext.cache import PretextCache, cache_key, tensor_fingerprint
from albench.strategies.pretext.features import FeaturesResult, extract_embeddings, pretext_features
from albench.strategies.pretext.losses import PretextResult, key_fields, pretext_losses
from albench.strategies.pretext.spec import PretextSpec
from albench.strategies.pretext.tasks import TASKS, PretextInputError, PretextTask, make_task
from albench.strategies.pretext.train import PretextFit, extract_losses, fit_pretext

__all__ = [
    "FeaturesResult", "PretextCache", "PretextFit", "PretextInputError", "PretextResult", "PretextSpec",
    "PretextTask", "TASKS", "cache_key", "derive_seed", "extract_embeddings", "extract_losses", "fit_pretext",
    "key_fields", "make_task", "pretext_features", "pretext_losses", "tensor_fingerprint",
]
