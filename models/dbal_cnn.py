"""The Bayesian CNN of Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data"
(ICML 2017), Sec. 5.1: the Keras MNIST example's network,

    conv(32, 4x4)-relu-conv(32, 4x4)-relu-maxpool(2)-dropout(0.25)-dense(128)-relu-dropout(0.5)-dense(10)

with 'valid' convolutions (28 -> 25 -> 22 -> 11 on MNIST) and a softmax on the logits.

Where the paper is silent the official Keras scripts decide
(Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803,
``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_BALD_Q10_N1000.py``):

- ``init: keras``: Keras 1's defaults, Glorot-uniform weights and zero biases (``torch``: PyTorch's);
- weight decay applies to the first dense layer's weights only (``Dense(128, W_regularizer=l2(...))``):
  :meth:`DbalCNN.weight_decay_parameters` says so to the trainer.

The stochastic part starts at the first dropout: :meth:`forward_prefix` (the two convolutions and
the pooling, about 94% of a pass's FLOPs) has no randomness, :meth:`forward_suffix` holds both
dropout layers. The engine's MC-dropout passes compute the prefix once per batch and run the
suffix T times (see :func:`albench.engine.inference.stochastic_posteriors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from albench.models.base import ModelOutput
from albench.models.registry import register_model
from albench.typed import Bounds


class DbalCNN(nn.Module):
    """Gal et al. 2017's MNIST network; ``embedding`` is the 128-d activation after the first dense
    layer's ReLU (the penultimate features)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int], *, filters: int = 32,
                 kernel: int = 4, hidden: int = 128, dropout_conv: float = 0.25, dropout_dense: float = 0.5,
                 init: str = "keras") -> None:
        super().__init__()
        h, w = image_size
        for side in (h, w):
            if (side - 2 * (kernel - 1)) // 2 < 1:
                raise ValueError(f"dbal-cnn: images of {h}x{w} are too small for two {kernel}x{kernel} valid "
                                 "convolutions and a 2x2 pooling")
        self.conv1 = nn.Conv2d(in_channels, filters, kernel)
        self.conv2 = nn.Conv2d(filters, filters, kernel)
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(dropout_conv)
        flat = filters * ((h - 2 * (kernel - 1)) // 2) * ((w - 2 * (kernel - 1)) // 2)
        self.dense1 = nn.Linear(flat, hidden)
        self.dropout2 = nn.Dropout(dropout_dense)
        self.dense2 = nn.Linear(hidden, num_classes)
        self.stage_channels = (filters, filters)
        self.embedding_dim = hidden
        if init == "keras":
            for m in (self.conv1, self.conv2, self.dense1, self.dense2):
                nn.init.xavier_uniform_(m.weight)  # Keras 1 glorot_uniform: the same fans for conv kernels
                nn.init.zeros_(m.bias)

    def forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic part: conv-relu-conv-relu-maxpool, (B, filters, h', w')."""
        return self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x)))))

    def forward_suffix(self, h: torch.Tensor) -> ModelOutput:
        """The stochastic part, from the first dropout on, applied to :meth:`forward_prefix`'s output.
        ``stages`` holds the pooled map only (the conv activations belong to the prefix)."""
        emb = torch.relu(self.dense1(torch.flatten(self.dropout1(h), 1)))
        return ModelOutput(self.dense2(self.dropout2(emb)), emb, (h,))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.forward_suffix(self.forward_prefix(x))

    def weight_decay_parameters(self) -> list[nn.Parameter]:
        """The parameters weight decay applies to: the first dense layer's weights, as the official
        Keras code's ``W_regularizer`` (biases and the other layers are not decayed)."""
        return [self.dense1.weight]


@dataclass(frozen=True)
class DbalCNNParams:
    """``filters``: channels of both convolutions; ``kernel``: their size (4 in the paper; the official
    Random script uses 3); ``hidden``: units of the first dense layer; ``dropout_conv`` / ``dropout_dense``:
    p after the pooling / after the first dense layer; ``init``: ``keras`` (Glorot-uniform weights, zero
    biases: the official code's framework defaults) or ``torch`` (PyTorch's defaults)."""

    filters: Annotated[int, Bounds(ge=1)] = 32
    kernel: Annotated[int, Bounds(ge=1)] = 4
    hidden: Annotated[int, Bounds(ge=1)] = 128
    dropout_conv: Annotated[float, Bounds(ge=0, lt=1)] = 0.25
    dropout_dense: Annotated[float, Bounds(ge=0, lt=1)] = 0.5
    init: Literal["keras", "torch"] = "keras"


@register_model("dbal-cnn", "Gal et al. 2017's MNIST Bayesian CNN: conv32-conv32 (4x4)-pool-dropout-dense128-dropout "
                "(MC-dropout passes re-run only the dense part)", params=DbalCNNParams)
def dbal_cnn(*, num_classes: int, in_channels: int, image_size: tuple[int, int], filters: int = 32, kernel: int = 4,
             hidden: int = 128, dropout_conv: float = 0.25, dropout_dense: float = 0.5,
             init: str = "keras") -> nn.Module:
    return DbalCNN(num_classes, in_channels, image_size, filters=filters, kernel=kernel, hidden=hidden,
                   dropout_conv=dropout_conv, dropout_dense=dropout_dense, init=init)
