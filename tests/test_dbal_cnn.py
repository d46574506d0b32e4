"""dbal-cnn: Gal et al. 2017's MNIST network, its Keras defaults and its declared stochastic split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albench.cli import main
from albench.engine.train import decay_groups, make_optimizer
from albench.config import OptimizerConfig
from albench.models.registry import build_model, dropout_params


def _net(**params):
    torch.manual_seed(0)
    return build_model("dbal-cnn", num_classes=10, in_channels=1, image_size=(28, 28), params=params)


def test_layers_and_parameter_count_are_the_papers():
    m = _net()
    # conv 1->32 (4x4), conv 32->32 (4x4), valid: 28 -> 25 -> 22, pool -> 11; dense 32*11*11 -> 128 -> 10
    assert m.conv1.weight.shape == (32, 1, 4, 4) and m.conv2.weight.shape == (32, 32, 4, 4)
    assert m.dense1.weight.shape == (128, 3872) and m.dense2.weight.shape == (10, 128)
    assert (m.dropout1.p, m.dropout2.p) == (0.25, 0.5)
    assert sum(p.numel() for p in m.parameters()) == (16 + 1) * 32 + (512 + 1) * 32 + (3872 + 1) * 128 + 129 * 10
    out = m(torch.zeros(3, 1, 28, 28))
    assert out.logits.shape == (3, 10) and out.embedding.shape == (3, 128) and m.embedding_dim == 128


def test_keras_init_is_glorot_uniform_with_zero_biases():
    m = _net()
    for layer in (m.conv1, m.conv2, m.dense1, m.dense2):
        assert torch.count_nonzero(layer.bias) == 0
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    torch_init = _net(init="torch")
    assert torch.count_nonzero(torch_init.dense1.bias) > 0  # PyTorch's default draws biases


def test_prefix_then_suffix_is_the_forward_pass():
    m = _net().eval()
    x = torch.rand(4, 1, 28, 28)
    h = m.forward_prefix(x)
    assert h.shape == (4, 32, 11, 11)
    assert torch.equal(m.forward_suffix(h).logits, m(x).logits)
    assert not any(isinstance(mod, nn.Dropout) for mod in (m.conv1, m.conv2, m.pool))


def test_weight_decay_applies_to_the_first_dense_layer_only_and_scales_per_label():
    m = _net()
    assert [p is m.dense1.weight for p in m.weight_decay_parameters()] == [True]
    cfg = OptimizerConfig(name="adam", lr=1e-3, weight_decay=5.0, weight_decay_scaling="per-label")
    opt = make_optimizer(decay_groups(m), cfg, n_labeled=20)
    decayed, rest = opt.param_groups
    assert decayed["weight_decay"] == pytest.approx(5.0 / 20) and decayed["params"] == [m.dense1.weight]
    assert rest["weight_decay"] == 0.0 and len(rest["params"]) == 7
    with pytest.raises(ValueError, match="per-label"):
        make_optimizer(decay_groups(m), cfg)
    # a model without weight_decay_parameters decays everything, with a constant coefficient
    small = build_model("small-cnn", num_classes=3, in_channels=1, image_size=(8, 8))
    opt = make_optimizer(decay_groups(small), OptimizerConfig(weight_decay=0.01))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.01


def test_one_decay_step_matches_keras_l2_on_the_dense_weights():
    # Keras adds c/n * sum(W^2) to the loss: gradient 2c/n * W, which PyTorch's coefficient 2c/n gives
    torch.manual_seed(0)
    m = _net()
    c, n = 2.5, 40
    w0 = m.dense1.weight.detach().clone()
    opt = torch.optim.SGD(decay_groups(m), lr=1.0, weight_decay=2 * c / n)
    opt.zero_grad()
    (m(torch.zeros(1, 1, 28, 28)).logits.sum() * 0).backward()  # zero data gradient
    opt.step()
    assert torch.allclose(m.dense1.weight, w0 - 2 * c / n * w0)
    assert torch.equal(m.conv1.weight.grad, torch.zeros_like(m.conv1.weight))


def test_dropout_params_and_small_images():
    assert dropout_params("dbal-cnn", {"dropout_dense": 0.3}) == {"dropout_conv": 0.25, "dropout_dense": 0.3}
    assert dropout_params("small-cnn", None) == {"dropout": 0.0}
    with pytest.raises(ValueError, match="too small"):
        build_model("dbal-cnn", num_classes=10, in_channels=1, image_size=(6, 6))  # 6 - 2 x 3 = 0
    m = build_model("dbal-cnn", num_classes=10, in_channels=3, image_size=(32, 32), params={"kernel": 3})
    assert m(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 10)


def test_list_models_shows_it(capsys):
    assert main(["list", "models"]) == 0
    assert any(line.startswith("dbal-cnn ") for line in capsys.readouterr().out.splitlines())
