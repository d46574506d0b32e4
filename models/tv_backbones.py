"""torchvision backbones by name (``tv:resnet18``, ``tv:resnet50``, ``tv:wide_resnet50_2``,
``tv:vgg16_bn``), adapted to the harness's model interface.

Built with ``weights=None``: nothing is ever downloaded. ``weights``: a local state dict of the same
torchvision architecture (e.g. ``resnet18-f37072fd.pth``), checked key by key at config load; the
final linear layer is loaded only when its class count is the dataset's (else freshly
initialised). ``dropout``: p of a dropout layer on the pooled embedding before the final linear
layer (0: no layer), as small-cnn and resnet18-cifar. ``small_input`` (ResNets only): the stem
becomes a 3x3 stride-1 conv without max-pool, as resnet18-cifar, for 32x32 images; with
``weights`` the file's 7x7 stem is then not loaded (the new stem starts fresh). A dataset with
another channel count gets a stem of that many input channels (a grayscale stem sums the file's
RGB kernel).

Outputs: ResNets: embedding = global average of layer4 (512 or 2,048-d), stages = layer1..layer4.
VGG16-BN: stages = the five conv blocks (after each max-pool: 64, 128, 256, 512, 512 channels);
embedding = the 4,096-d output of the second hidden fully connected layer (after its ReLU);
torchvision's first classifier dropout (p 0.5, between the hidden layers) is part of the
architecture and stays, the second one (before the final linear layer) is ``dropout``.
VGG has no strided stem to swap, so ``small_input`` is refused for it; at 32x32 its features end
at 1x1 and torchvision's 7x7 adaptive pool repeats them (the classifier keeps its 25,088 inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated

import torch
from torch import nn

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.models.base import ModelOutput, resnet_stages
from albench.models.registry import register_model
from albench.models.weights import read_state_dict, weights_to_load

RESNETS = ("resnet18", "resnet50", "wide_resnet50_2")
ARCHS = {"resnet18": "ResNet-18 (512-d)", "resnet50": "ResNet-50 (2,048-d)",
         "wide_resnet50_2": "Wide ResNet-50-2 (2,048-d)", "vgg16_bn": "VGG16 with BatchNorm (4,096-d; VAAL's network)"}


@dataclass(frozen=True)
class TorchvisionParams:
    """``dropout``: p before the final linear layer (0: no layer); ``small_input``: CIFAR stem (3x3
    stride-1 conv, no max-pool; ResNets only); ``weights``: a local state dict file, None: random."""

    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.0
    small_input: bool = False
    weights: str | None = None


def _conv_init(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's own init
    return conv


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def make_net(arch: str, num_classes: int, in_channels: int, small_input: bool, dropout: float) -> nn.Module:
    """The torchvision network, its stem adapted; random initialisation (torch's global RNG)."""
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if arch in RESNETS:
        if small_input:
            net.conv1 = _conv_init(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False))
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = _conv_init(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False))
    else:
        if in_channels != 3:
            net.features[0] = _conv_init(nn.Conv2d(in_channels, 64, 3, padding=1))
        net.classifier[5] = _dropout(dropout)  # torchvision's Dropout before the final linear layer
    return net


def _weight_keys(arch: str, small_input: bool) -> dict:
    if arch in RESNETS:
        return {"head": {"fc.weight", "fc.bias"}, "skip": {"conv1.weight"} if small_input else set(),
                "first_conv": "conv1.weight"}
    return {"head": {"classifier.6.weight", "classifier.6.bias"}, "skip": set(), "first_conv": "features.0.weight"}


def check_params(arch: str, params: dict, path: str = "model.params", train=None) -> None:
    """ConfigError when ``small_input`` does not apply, or the weights file is missing, unreadable or
    not a state dict of this architecture (checked on a network built on the meta device: no memory)."""
    small = bool(params.get("small_input", False))
    if small and arch not in RESNETS:
        raise ConfigError(f"{path}.small_input", f"tv:{arch} has no strided stem or stem max-pool to swap "
                          "(its first conv is already 3x3 stride 1)", "remove small_input (it applies to the "
                          "tv: ResNets)", small)
    w = params.get("weights")
    if w is None:
        return
    file_sd = read_state_dict(w, f"{path}.weights")
    with torch.device("meta"):
        net = make_net(arch, 1000, 3, small, float(params.get("dropout", 0.0)))
    weights_to_load(net.state_dict(), file_sd, field=f"{path}.weights", model=f"torchvision {arch}", path=w,
                    **_weight_keys(arch, small))


class TorchvisionResNet(nn.Module):
    def __init__(self, net: nn.Module, dropout: float) -> None:
        super().__init__()
        self.net = net
        self.dropout = _dropout(dropout)
        last = [layer[-1] for layer in (net.layer1, net.layer2, net.layer3, net.layer4)]
        self.stage_channels = tuple((b.conv3 if hasattr(b, "conv3") else b.conv2).out_channels for b in last)
        self.embedding_dim = net.fc.in_features

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x, stages = resnet_stages(self.net, x)
        emb = torch.flatten(self.net.avgpool(x), 1)
        return ModelOutput(self.net.fc(self.dropout(emb)), emb, stages)


class TorchvisionVGG(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        self._pools = set(pools)
        self.stage_channels = tuple(
            [m for m in list(net.features)[:i] if isinstance(m, nn.Conv2d)][-1].out_channels for i in pools)
        self.embedding_dim = net.classifier[6].in_features

    def forward(self, x: torch.Tensor) -> ModelOutput:
        n, outs = self.net, []
        for i, m in enumerate(n.features):
            x = m(x)
            if i in self._pools:
                outs.append(x)
        h = torch.flatten(n.avgpool(x), 1)
        for m in list(n.classifier)[:5]:  # Linear, ReLU, Dropout(0.5), Linear, ReLU
            h = m(h)
        return ModelOutput(n.classifier[6](n.classifier[5](h)), h, tuple(outs))


def build(arch: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int], dropout: float = 0.0,
          small_input: bool = False, weights: str | None = None) -> nn.Module:
    check_params(arch, {"small_input": small_input, "weights": None})
    net = make_net(arch, num_classes, in_channels, small_input, dropout)
    if weights is not None:
        file_sd = read_state_dict(weights, "model.params.weights")
        load = weights_to_load(net.state_dict(), file_sd, field="model.params.weights",
                               model=f"torchvision {arch}", path=weights, **_weight_keys(arch, small_input))
        net.load_state_dict(load, strict=False)
    return TorchvisionResNet(net, dropout) if arch in RESNETS else TorchvisionVGG(net)


for _arch, _what in ARCHS.items():
    register_model(f"tv:{_arch}", f"torchvision {_what}, never downloads; params: dropout, "
                   f"{'small_input (CIFAR stem), ' if _arch in RESNETS else ''}weights (local .pth)",
                   check=partial(check_params, _arch), params=TorchvisionParams)(partial(build, _arch))
