"""The segmentation networks: small-seg's output contract, and DeepLab-v3-ResNet-101 built without
downloads, one small forward pass, local weight files (full model or backbone) and frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albench.config import build_config
from albench.validate import validate_environment
from albench.errors import ConfigError
from albench.models.registry import build_model, model_entry


def test_small_seg_output_contract_at_odd_sizes():
    assert model_entry("small-seg").tasks == frozenset({"segmentation"})
    for size in ((24, 24), (5, 7)):
        m = build_model("small-seg", num_classes=4, in_channels=3, image_size=size, params={"width": 4})
        out = m(torch.randn(2, 3, *size))
        assert out.logits.shape == (2, 4, *size)  # at the input size
        assert out.embedding.shape == (2, m.embedding_dim) and m.embedding_dim == 32
        assert [s.shape[1] for s in out.stages] == list(m.stage_channels) == [4, 8, 16, 32]


@pytest.fixture(scope="module")
def deeplab():
    torch.manual_seed(0)
    return build_model("deeplabv3-resnet101", num_classes=3, in_channels=3, image_size=(32, 32))


@pytest.mark.slow
def test_deeplab_forward_at_a_small_size(deeplab):
    assert model_entry("deeplabv3-resnet101").tasks == frozenset({"segmentation"})
    deeplab.eval()
    with torch.no_grad():
        out = deeplab(torch.randn(1, 3, 32, 48))
    assert out.logits.shape == (1, 3, 32, 48)  # upsampled to the input
    assert out.embedding.shape == (1, 2048) and deeplab.embedding_dim == 2048
    assert [s.shape[1] for s in out.stages] == [256, 512, 1024, 2048] == list(deeplab.stage_channels)
    assert [s.shape[-1] for s in out.stages] == [12, 6, 6, 6]  # output stride 4, 8, 8, 8 (dilated)
    assert torch.allclose(out.embedding, out.stages[-1].mean(dim=(2, 3)))
    # BatchNorm is trained (no weights given): a single training image is refused, not a cryptic error
    assert deeplab.freeze_bn is False
    deeplab.train()
    with pytest.raises(ValueError, match="batch of one image"):
        deeplab(torch.randn(1, 3, 32, 32))
    deeplab.eval()


@pytest.mark.slow
def test_deeplab_loads_local_full_model_and_backbone_files(deeplab, tmp_path):
    from albench.models.deeplab import load_weights

    ref = {k: v.clone() for k, v in deeplab.state_dict().items()}
    # a torchvision DeepLab file of another class count (COCO: 21), with an aux head, wrapped
    full = {k: v + 1.0 if v.is_floating_point() else v for k, v in ref.items()}
    full["classifier.4.weight"] = torch.zeros(21, 256, 1, 1)
    full["classifier.4.bias"] = torch.zeros(21)
    full["aux_classifier.4.weight"] = torch.zeros(21, 256, 1, 1)
    torch.save({"model": {f"module.{k}": v for k, v in full.items()}}, tmp_path / "full.pth")
    info = load_weights(deeplab, tmp_path / "full.pth")
    assert info["kind"] == "deeplabv3"
    assert info["skipped"] == ["aux_classifier.4.weight", "classifier.4.bias", "classifier.4.weight"]
    sd = deeplab.state_dict()
    assert torch.equal(sd["backbone.layer4.2.conv3.weight"], ref["backbone.layer4.2.conv3.weight"] + 1)
    assert torch.equal(sd["classifier.0.project.0.weight"], ref["classifier.0.project.0.weight"] + 1)
    assert torch.equal(sd["classifier.4.weight"], ref["classifier.4.weight"])  # 3 classes: kept fresh

    # an ImageNet ResNet-101 file: conv1.*, layer*.*, fc.* (dropped); the head is untouched
    backbone = {k[len("backbone."):]: v - 2.0 if v.is_floating_point() else v
                for k, v in ref.items() if k.startswith("backbone.")}
    backbone["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(backbone, tmp_path / "resnet101.pth")
    info = load_weights(deeplab, tmp_path / "resnet101.pth")
    assert info["kind"] == "resnet101" and info["skipped"] == ["fc.weight"]
    sd = deeplab.state_dict()
    assert torch.equal(sd["backbone.conv1.weight"], ref["backbone.conv1.weight"] - 2)
    assert torch.equal(sd["classifier.0.project.0.weight"], ref["classifier.0.project.0.weight"] + 1)

    # a grey-input model (colorization pretext): the RGB stem filter is summed over its channels
    deeplab.backbone.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    load_weights(deeplab, tmp_path / "resnet101.pth")
    assert torch.allclose(deeplab.backbone.conv1.weight, (ref["backbone.conv1.weight"] - 2).sum(1, keepdim=True))

    # an incomplete file is refused, naming the field and what is missing
    del backbone["layer3.0.conv1.weight"]
    torch.save(backbone, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match="lacks 1 backbone weights") as err:
        load_weights(deeplab, tmp_path / "partial.pth")
    assert err.value.field == "model.params.weights"


@pytest.mark.slow
def test_frozen_batchnorm_keeps_its_statistics_in_training(deeplab):
    deeplab.freeze_bn = True
    try:
        deeplab.train()
        bns = [m for m in deeplab.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and not any(m.training for m in bns)
        assert deeplab.backbone.layer1[0].conv1.training  # everything else trains
    finally:
        deeplab.freeze_bn = False
        deeplab.eval()


def test_missing_weights_file_is_refused_at_config_load(tmp_path):
    raw = {"dataset": {"name": "digit-scenes"}, "model": {"name": "deeplabv3-resnet101",
                                                          "params": {"weights": str(tmp_path / "nope.pth")}},
           "strategies": ["random"], "al": {"initial": 10, "budget": 10, "cycles": 2}}
    cfg = build_config(raw)
    with pytest.raises(ConfigError) as err:
        validate_environment(cfg)
    assert err.value.field == "model.params.weights" and "not a file" in err.value.problem
