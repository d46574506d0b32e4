"""Models keep the output contract; batched augmentation matches its definition."""

from __future__ import annotations

import pytest
import torch

from albench.data.augment import BatchTransform
from albench.models.registry import build_model


@pytest.mark.parametrize("name,size,channels", [("small-cnn", (8, 8), 1), ("small-cnn", (32, 32), 3),
                                                ("resnet18-cifar", (32, 32), 3)])
def test_model_outputs(name, size, channels):
    model = build_model(name, num_classes=10, in_channels=channels, image_size=size)
    out = model(torch.randn(2, channels, *size))
    assert out.logits.shape == (2, 10)
    assert out.embedding.shape == (2, model.embedding_dim)
    assert len(out.stages) == 4 == len(model.stage_channels)
    assert [s.shape[1] for s in out.stages] == list(model.stage_channels)


def test_resnet18_cifar_shape_facts():
    model = build_model("resnet18-cifar", num_classes=10, in_channels=3, image_size=(32, 32))
    out = model(torch.randn(1, 3, 32, 32))
    assert model.embedding_dim == 512
    assert [tuple(s.shape[1:]) for s in out.stages] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)  # CIFAR stem, no max-pool
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 11_300_000


def test_small_cnn_pooling_before_relu_is_conv_bn_relu_pool():
    """small-cnn applies each stage's ReLU after its max-pool; the stage is still conv-BN-ReLU-pool:
    outputs and parameter gradients equal those of that order exactly."""
    torch.manual_seed(0)
    model = build_model("small-cnn", num_classes=10, in_channels=3, image_size=(32, 32), params={"width": 8})
    x = torch.randn(5, 3, 32, 32)

    def reference(inp):
        for stage in model.stages:
            layers = list(stage)
            conv, bn = layers[0], layers[1]
            inp = torch.relu(bn(conv(inp)))
            if any(isinstance(m, torch.nn.MaxPool2d) for m in layers):
                inp = torch.nn.functional.max_pool2d(inp, 2)
        return model.fc(inp.mean(dim=(2, 3)))

    grads = []
    for forward in (lambda inp: model(inp).logits, reference):
        model.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))


def test_crop_is_a_shift_with_zero_fill():
    t = BatchTransform((0.0,), (1.0,), crop_padding=2, hflip=False, normalize=False)
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = t.random_crop(x, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x[0, 0], (2, 2, 2, 2))
    windows = {tuple(padded[i:i + 4, j:j + 4].flatten().tolist()) for i in range(5) for j in range(5)}
    seen = {tuple(o[0].flatten().tolist()) for o in out}
    assert seen <= windows  # every output is one of the 25 padded windows
    assert len(seen) > 10  # and offsets vary per image


def test_flip_and_normalise():
    t = BatchTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_padding=0, hflip=True)
    x = torch.randint(0, 256, (200, 3, 4, 5), dtype=torch.uint8)
    out = t.train(x, torch.Generator().manual_seed(1))
    ref = (x.float() / 255 - 0.5) / 0.25
    same = torch.isclose(out, ref, atol=1e-5).flatten(1).all(1)
    flipped = torch.isclose(out, ref.flip(3), atol=1e-5).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 60 < int(flipped.sum()) < 140
    assert torch.allclose(t.test(x), ref, atol=1e-5)


def test_augmentation_is_seeded():
    t = BatchTransform((0.0,), (1.0,), crop_padding=4, hflip=True)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    a = t.train(x, torch.Generator().manual_seed(7))
    b = t.train(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
