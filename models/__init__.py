"""Networks. Every model returns a :class:`ModelOutput` (logits, pooled embedding, stage outputs)."""

from albench.models.base import ModelOutput
from albench.models.registry import build_model, model_names, register_model

__all__ = ["ModelOutput", "build_model", "model_names", "register_model"]
