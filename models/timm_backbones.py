"""timm backbones by name, ``timm:<name>`` (any of ``timm.list_models()``; the optional extra
``albench[timm]``), adapted to the harness's model interface.

Built with ``pretrained=False``: nothing is ever downloaded. ``weights``: a local state dict (.pth
or .safetensors) of the same timm architecture, passed through timm's own ``checkpoint_filter_fn``
where the model has one (a ViT's position embedding is resampled to the dataset's image size) and
checked key by key at config load; the classifier is loaded only when its class count is the
dataset's. ``in_chans`` is the dataset's channel count;
models that take ``img_size`` (ViTs and the like) are built for the dataset's image size.

Outputs: ``embedding`` = ``forward_head(..., pre_logits=True)`` (timm's pooled features before the
classifier, ``head_hidden_size`` or ``num_features`` wide); ``stages`` = timm's
``forward_intermediates`` (one NCHW map per ``feature_info`` entry); ``logits`` = the classifier
applied after ``dropout`` (p of a dropout layer before the final linear layer, 0: no layer; timm's
own ``drop_rate`` stays 0). Models whose classifier is not one linear layer, or that lack
``forward_intermediates``, are refused at config load.

``small_input`` applies to models with a ``conv1`` + ``maxpool`` stem (timm's ResNet family): the
first stem conv becomes 3x3 stride 1 and the max-pool is dropped, as resnet18-cifar.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import torch
from torch import nn

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.models.base import ModelOutput
from albench.models.registry import ModelEntry, ModelFamily, register_model_family
from albench.models.weights import read_state_dict, weights_to_load

PREFIX = "timm:"
EXTRA = "pip install 'albench[timm]'"


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


@dataclass(frozen=True)
class TimmParams:
    """``dropout``: p before the final linear layer (0: no layer); ``small_input``: CIFAR stem
    (conv1 + maxpool models only); ``weights``: a local state dict file, None: random."""

    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.0
    small_input: bool = False
    weights: str | None = None


def _stem_conv(net: nn.Module) -> tuple[str, nn.Conv2d] | None:
    conv1 = getattr(net, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        return "conv1", conv1
    if isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        return "conv1.0", conv1[0]
    return None


def make_net(arch: str, num_classes: int, in_channels: int, image_size, small_input: bool) -> nn.Module:
    """The timm network (random init from torch's global RNG), its stem swapped when asked."""
    timm = _timm()
    kwargs = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels}
    try:
        net = timm.create_model(arch, img_size=tuple(image_size), **kwargs)
    except TypeError as exc:  # a model without an img_size argument (CNNs take any size)
        if "img_size" not in str(exc):
            raise
        net = timm.create_model(arch, **kwargs)
    if small_input:
        stem = _stem_conv(net)
        if stem is None or not hasattr(net, "maxpool"):
            raise ConfigError("model.params.small_input", f"timm:{arch} has no conv1 + maxpool stem to swap",
                              "remove small_input (it applies to timm's ResNet family; models taking img_size "
                              "are built for the dataset's image size already)", True)
        where, conv = stem
        new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if where == "conv1":
            net.conv1 = new
        else:
            net.conv1[0] = new
        net.maxpool = nn.Identity()
    return net


def _classifier_name(net: nn.Module) -> str:
    head = net.get_classifier()
    return next(name for name, m in net.named_modules() if m is head)


def _check_structure(arch: str, net: nn.Module, path: str) -> None:
    if not isinstance(net.get_classifier(), nn.Linear):
        raise ConfigError("model.name", f"timm:{arch}'s classifier is {type(net.get_classifier()).__name__}, not one linear layer",
                          "pick a timm model with a linear classifier head", f"timm:{arch}")
    if not hasattr(net, "forward_intermediates") or not getattr(net, "feature_info", None):
        raise ConfigError("model.name", f"timm:{arch} exposes no stage outputs (forward_intermediates, feature_info)",
                          "pick another timm model (ResNets, ConvNeXts, ViTs have them)", f"timm:{arch}")


def _adapt(net: nn.Module, file_sd: dict) -> dict:
    """The file's tensors through timm's own ``checkpoint_filter_fn`` of the model's module, when it
    has one (e.g. a ViT's position embedding resampled to the dataset's image size, as timm does
    for pretrained weights)."""
    fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return file_sd
    try:
        return fn(dict(file_sd), net)
    except Exception:  # a file of another architecture: the key-by-key check reports it
        return file_sd


def _weight_keys(net: nn.Module, small_input: bool) -> dict:
    head = _classifier_name(net)
    stem = _stem_conv(net)
    first = (net.pretrained_cfg or {}).get("first_conv")
    first = f"{first if isinstance(first, str) else (first or [''])[0]}.weight"
    return {"head": {f"{head}.weight", f"{head}.bias"},
            "skip": {f"{stem[0]}.weight"} if small_input and stem else set(), "first_conv": first}


def check_params(arch: str, params: dict, path: str = "model.params", train=None) -> None:
    """ConfigError when the model cannot serve the harness, ``small_input`` does not apply, or the
    weights file is missing, unreadable or of another architecture (built on the meta device)."""
    small = bool(params.get("small_input", False))
    with torch.device("meta"):
        try:
            net = make_net(arch, 10, 3, (224, 224), small)
        except ConfigError as exc:
            raise ConfigError(f"{path}.small_input", exc.problem, exc.fix, True) from None
    _check_structure(arch, net, path)
    w = params.get("weights")
    if w is not None:
        file_sd = _adapt(net, read_state_dict(w, f"{path}.weights"))
        weights_to_load(net.state_dict(), file_sd, field=f"{path}.weights", model=f"timm {arch}", path=w,
                        **_weight_keys(net, small))


class TimmBackbone(nn.Module):
    def __init__(self, net: nn.Module, dropout: float) -> None:
        super().__init__()
        self.net = net
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.stage_channels = tuple(int(f["num_chs"]) for f in net.feature_info)
        self.embedding_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        final, stages = self.net.forward_intermediates(x)
        emb = self.net.forward_head(final, pre_logits=True)
        return ModelOutput(self.net.get_classifier()(self.dropout(emb)), emb, tuple(stages))


def build(arch: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int], dropout: float = 0.0,
          small_input: bool = False, weights: str | None = None) -> nn.Module:
    net = make_net(arch, num_classes, in_channels, image_size, small_input)
    _check_structure(arch, net, "model.params")
    if weights is not None:
        file_sd = _adapt(net, read_state_dict(weights, "model.params.weights"))
        load = weights_to_load(net.state_dict(), file_sd, field="model.params.weights", model=f"timm {arch}",
                               path=weights, **_weight_keys(net, small_input))
        net.load_state_dict(load, strict=False)
    return TimmBackbone(net, dropout)


def resolve(name: str) -> ModelEntry:
    """The entry of ``timm:<arch>``; ConfigError naming model.name when timm is absent or has no such model."""
    arch = name[len(PREFIX):]
    timm = _timm()
    if timm is None:
        raise ConfigError("model.name", f"{name!r} needs timm, which is not installed",
                          f"install the optional extra: {EXTRA}", name)
    if not arch or not timm.is_model(arch.split(".")[0]):
        close = difflib.get_close_matches(arch, timm.list_models(), n=1)
        hint = f"did you mean 'timm:{close[0]}'? " if close else ""
        raise ConfigError("model.name", f"timm {timm.__version__} has no model {arch!r}",
                          f"{hint}name one of timm.list_models()", name)
    return ModelEntry(name, partial(build, arch), f"timm {arch}", frozenset({"classification"}),
                      check=partial(check_params, arch), params=TimmParams)


register_model_family(ModelFamily(
    prefix=PREFIX, listing="timm:<name>", resolve=resolve, available=lambda: _timm() is not None,
    description="any timm model by name, one of timm.list_models() (e.g. timm:resnet18, timm:convnext_tiny, "
                "timm:vit_small_patch16_224); never downloads; params: dropout, small_input (conv1+maxpool stems), "
                "weights (local .pth/.safetensors)"))
