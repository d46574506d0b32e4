"""DeepLab-v3 with a ResNet-101 backbone (torchvision), the paper's segmentation network (section 5.2).

Built with ``weights=None, weights_backbone=None``: nothing is ever downloaded. Pretrained weights
come from a local file (``params.weights``), read with ``torch.load(weights_only=True)``. Accepted:

- a torchvision ``deeplabv3_resnet101`` state dict (keys ``backbone.*``, ``classifier.*``; e.g. the
  COCO file ``deeplabv3_resnet101_coco-586e9e4e.pth``): the backbone and the ASPP head are loaded;
  the final 1x1 classifier only when its class count equals the dataset's (otherwise it keeps its
  fresh initialisation), and the auxiliary FCN head (``aux_classifier.*``) is ignored;
- a torchvision ImageNet ResNet-101 state dict (keys ``conv1.*``, ``layer1.*`` ... ``fc.*``; e.g.
  ``resnet101-63fe2227.pth``, the paper's ImageNet initialisation): the backbone only; ``fc`` is
  dropped and the head stays freshly initialised.

Either may be wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` and carry DataParallel's
``module.`` prefix. Every backbone weight must be present in the file (``num_batches_tracked``
counters excepted), else the build fails naming the missing keys.

BatchNorm: the paper trains with batch size 1, where batch statistics are undefined for the ASPP
image-pooling branch and meaningless elsewhere. ``freeze_bn`` keeps every BatchNorm layer in eval
mode during training (running statistics fixed; the affine scale and shift still learn); the
default, ``null``, freezes them when ``weights`` is given (statistics from the pretrained file) and
trains them otherwise. Training on single images with unfrozen BatchNorm is refused.

Outputs: logits upsampled (bilinear) to the input size; ``embedding`` = global average of the
last backbone stage (2,048-d); ``stages`` = the outputs of layer1..layer4 (256, 512, 1,024, 2,048
channels; output stride 4, 8, 8, 8 with torchvision's dilated layer3/layer4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from albench.errors import ConfigError
from albench.models.base import ModelOutput, resnet_stages
from albench.models.registry import register_model

STAGE_CHANNELS = (256, 512, 1024, 2048)
FIELD = "model.params.weights"


class DeepLabV3ResNet101(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, freeze_bn: bool = False) -> None:
        super().__init__()
        from torchvision.models.segmentation import deeplabv3_resnet101

        net = deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        self.backbone = net.backbone  # conv1, bn1, relu, maxpool, layer1..layer4 (torchvision's key names)
        self.classifier = net.classifier
        if in_channels != 3:
            self.backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.num_classes = num_classes
        self.freeze_bn = bool(freeze_bn)
        self.stage_channels = STAGE_CHANNELS
        self.embedding_dim = STAGE_CHANNELS[-1]

    def train(self, mode: bool = True) -> "DeepLabV3ResNet101":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits (B, num_classes, H, W) at the input size, embedding (B, 2048), four stage maps."""
        if self.training and not self.freeze_bn and x.shape[0] < 2:
            raise ValueError("deeplabv3-resnet101: BatchNorm cannot train on a batch of one image; set "
                             "model.params.freeze_bn: true (or give pretrained weights), or train.batch_size >= 2")
        size = x.shape[-2:]
        h, stages = resnet_stages(self.backbone, x)
        logits = F.interpolate(self.classifier(h), size=size, mode="bilinear", align_corners=False)
        return ModelOutput(logits, h.mean(dim=(2, 3)), stages)


def _unwrap(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key])
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(FIELD, "is not a state dict (a mapping of parameter names to tensors)",
                          "save the weights with torch.save(model.state_dict(), path)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_weights(model: DeepLabV3ResNet101, path: str | Path) -> dict:
    """Load a local weights file into ``model`` (see the module docstring for the accepted kinds).

    Returns ``{'kind': 'deeplabv3' | 'resnet101', 'loaded': n tensors, 'skipped': [file keys not loaded]}``.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the same user error)
        raise ConfigError(FIELD, f"cannot be read as a torch weights file ({type(exc).__name__})",
                          "point it at a .pth state dict saved with torch.save", str(path)) from None
    sd = _unwrap(raw)
    if any(k.startswith("backbone.") for k in sd):
        kind, prefix = "deeplabv3", ""
    elif "layer1.0.conv1.weight" in sd:
        kind, prefix = "resnet101", "backbone."
    else:
        raise ConfigError(FIELD, "holds neither a torchvision DeepLab-v3 nor a ResNet-101 state dict",
                          "use torchvision's deeplabv3_resnet101 or resnet101 weights file", str(path))
    own = model.state_dict()
    src, skipped = {}, []
    for key, value in sd.items():
        target = prefix + key
        if target not in own:  # aux_classifier.*, a ResNet's fc.*
            skipped.append(key)
            continue
        want = own[target].shape
        if target == "backbone.conv1.weight" and value.shape != want and value.shape[1] == 3 and want[1] == 1:
            # a grey image is R = G = B, so the summed RGB filter responds to it as the colour one did
            value = value.sum(dim=1, keepdim=True)
        if value.shape != want:
            if target.startswith("classifier."):  # another class count: keep the fresh final layer
                skipped.append(key)
                continue
            raise ConfigError(FIELD, f"{key} has shape {tuple(value.shape)}, the model needs {tuple(want)}",
                              "use ResNet-101 / DeepLab-v3-ResNet-101 weights", str(path))
        src[target] = value
    missing = [k for k in own if k.startswith("backbone.") and k not in src and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(FIELD, f"lacks {len(missing)} backbone weights (e.g. {', '.join(missing[:3])})",
                          "use a complete ResNet-101 or DeepLab-v3-ResNet-101 state dict", str(path))
    model.load_state_dict(src, strict=False)
    return {"kind": kind, "loaded": len(src), "skipped": sorted(skipped)}


def check_params(params: dict, path: str = "model.params", train=None) -> None:
    """ConfigError for a weights path that is not a file, a freeze_bn that is not a bool/null, or
    (given the ``train`` config) BatchNorm left to learn from batches of one image."""
    w = params.get("weights")
    if w is not None and (not isinstance(w, str) or not Path(w).expanduser().is_file()):
        raise ConfigError(f"{path}.weights", "is not a file", "give the path of a local .pth state dict "
                          "(torchvision deeplabv3_resnet101 or resnet101), or null for random initialisation", w)
    fb = params.get("freeze_bn")
    frozen = w is not None if fb is None else fb
    if train is not None and train.batch_size < 2 and not frozen:
        raise ConfigError(f"{path}.freeze_bn", "BatchNorm cannot learn from batches of one image "
                          "(train.batch_size: 1) and no pretrained weights freeze it",
                          f"set {path}.weights to a local pretrained file (BatchNorm then keeps its statistics), "
                          f"or {path}.freeze_bn: true, or train.batch_size >= 2", fb)


@dataclass(frozen=True)
class DeepLabParams:
    """``weights``: a local .pth state dict (torchvision deeplabv3_resnet101 or resnet101), None:
    random initialisation; ``freeze_bn``: keep BatchNorm statistics fixed (None: when weights are
    given)."""

    weights: str | None = None
    freeze_bn: bool | None = None


@register_model("deeplabv3-resnet101",
                "DeepLab-v3, ResNet-101 backbone (torchvision; never downloads); params: weights (local "
                ".pth), freeze_bn", tasks=("segmentation",), check=check_params,
                params=DeepLabParams)
def deeplabv3_resnet101(*, num_classes: int, in_channels: int, image_size: tuple[int, int],
                        weights: str | None = None, freeze_bn: bool | None = None) -> nn.Module:
    check_params({"weights": weights, "freeze_bn": freeze_bn})
    model = DeepLabV3ResNet101(num_classes, in_channels, freeze_bn=weights is not None if freeze_bn is None
                               else freeze_bn)
    if weights is not None:
        model.weights_info = load_weights(model, Path(weights).expanduser())
    return model
