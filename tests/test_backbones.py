"""torchvision and timm backbones: the harness's model interface (logits, pooled embedding, stage
outputs, dropout before the final linear layer), the CIFAR stem, and weights from local files only.
CPU, tiny inputs (32x32, batch 2); the big networks are checked on the meta device (no memory)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from albench.cli import main
from albench.errors import ConfigError
from albench.models.registry import build_model, has_model, model_entry
from tests.conftest import write_yaml


def _x(n=2, c=3, side=32):
    return torch.randn(n, c, side, side, generator=torch.Generator().manual_seed(0))


def test_list_models_shows_the_torchvision_entries(capsys):
    assert main(["list", "models"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"tv:resnet18", "tv:resnet50", "tv:wide_resnet50_2", "tv:vgg16_bn"} <= names


def test_tv_resnet18_follows_the_model_interface(one_torch_thread):
    torch.manual_seed(0)
    m = build_model("tv:resnet18", num_classes=7, in_channels=3, image_size=(32, 32))
    out = m(_x())
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 512) == (2, m.embedding_dim)
    assert m.stage_channels == (64, 128, 256, 512)
    assert [tuple(s.shape[:2]) for s in out.stages] == [(2, c) for c in m.stage_channels]
    assert out.stages[0].shape[-1] == 8  # ImageNet stem: stride-2 conv and max-pool, 32 -> 8
    # the logits are the final linear layer applied to the returned embedding (dropout 0: no layer)
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())
    assert torch.allclose(out.logits, m.net.fc(out.embedding), atol=1e-6)


def test_small_input_swaps_the_stem_for_cifar_images(one_torch_thread):
    m = build_model("tv:resnet18", num_classes=10, in_channels=3, image_size=(32, 32), params={"small_input": True})
    assert m.net.conv1.kernel_size == (3, 3) and m.net.conv1.stride == (1, 1) and isinstance(m.net.maxpool, nn.Identity)
    out = m(_x())
    assert [s.shape[-1] for s in out.stages] == [32, 16, 8, 4]  # as resnet18-cifar


def test_dropout_sits_before_the_final_linear_layer(one_torch_thread):
    torch.manual_seed(0)
    m = build_model("tv:resnet18", num_classes=5, in_channels=3, image_size=(32, 32),
                    params={"dropout": 0.5, "small_input": True})
    assert isinstance(m.dropout, nn.Dropout) and m.dropout.p == 0.5
    x = _x()
    m.train()
    a, b = m(x), m(x)
    assert not torch.allclose(a.logits, b.logits)  # masks differ between passes
    m.eval()
    c = m(x)
    assert torch.allclose(c.logits, m.net.fc(c.embedding), atol=1e-6)  # eval: identity


def test_big_torchvision_backbones_on_the_meta_device():
    with torch.device("meta"):
        for name, stages, emb in (("tv:resnet50", (256, 512, 1024, 2048), 2048),
                                  ("tv:wide_resnet50_2", (256, 512, 1024, 2048), 2048),
                                  ("tv:vgg16_bn", (64, 128, 256, 512, 512), 4096)):
            m = build_model(name, num_classes=10, in_channels=1, image_size=(32, 32), params={"dropout": 0.2})
            out = m(torch.empty(2, 1, 32, 32))
            assert m.stage_channels == stages and m.embedding_dim == emb, name
            assert out.logits.shape == (2, 10) and out.embedding.shape == (2, emb), name
            assert [s.shape[1] for s in out.stages] == list(stages), name
        big = build_model("tv:resnet50", num_classes=10, in_channels=3, image_size=(32, 32),
                          params={"small_input": True})
        assert [s.shape[-1] for s in big(torch.empty(2, 3, 32, 32)).stages] == [32, 16, 8, 4]
        vgg = build_model("tv:vgg16_bn", num_classes=10, in_channels=3, image_size=(32, 32), params={"dropout": 0.3})
        assert vgg.net.classifier[5].p == 0.3 and vgg.net.classifier[2].p == 0.5  # torchvision's own stays


def _resnet18_file(tmp_path, num_classes=1000, name="r18.pth"):
    import torchvision

    torch.manual_seed(1)
    sd = torchvision.models.resnet18(weights=None, num_classes=num_classes).state_dict()
    torch.save(sd, tmp_path / name)
    return tmp_path / name, sd


def test_weights_come_from_a_local_file(tmp_path, one_torch_thread):
    path, sd = _resnet18_file(tmp_path)
    torch.manual_seed(0)
    m = build_model("tv:resnet18", num_classes=10, in_channels=3, image_size=(32, 32), params={"weights": str(path)})
    got = m.net.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], sd["layer3.1.conv2.weight"])
    assert torch.equal(got["conv1.weight"], sd["conv1.weight"])
    assert got["fc.weight"].shape == (10, 512)  # another class count: a fresh head
    same = build_model("tv:resnet18", num_classes=1000, in_channels=3, image_size=(32, 32),
                       params={"weights": str(path)})
    assert torch.equal(same.net.fc.weight, sd["fc.weight"])  # the same class count: the file's head
    small = build_model("tv:resnet18", num_classes=10, in_channels=3, image_size=(32, 32),
                        params={"weights": str(path), "small_input": True})
    assert small.net.conv1.weight.shape == (64, 3, 3, 3)  # the 7x7 stem of the file is not loaded
    assert torch.equal(small.net.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    gray = build_model("tv:resnet18", num_classes=10, in_channels=1, image_size=(32, 32), params={"weights": str(path)})
    assert torch.allclose(gray.net.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))


def _run_cli(tmp_path, tiny_raw, model, capsys, strategies=("random",)):
    tiny_raw["model"] = model
    tiny_raw["strategies"] = list(strategies)
    tiny_raw["train"]["epochs"] = 1
    tiny_raw["al"] = {"initial": 10, "budget": 10, "cycles": 2}
    tiny_raw["record"] = {"embeddings": 0}
    code = main(["run", str(write_yaml(tmp_path / "c.yaml", tiny_raw)), "--quiet"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("weights, problem", [("missing.pth", "is not a file"), ("junk.pth", "cannot be read"),
                                              ("bad.pth", "does not match torchvision resnet18")])
def test_missing_or_mismatched_weights_exit_2_at_config_load(tmp_path, tiny_raw, capsys, weights, problem):
    _, sd = _resnet18_file(tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    bad = dict(sd)
    del bad["layer4.1.bn2.weight"]
    bad["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "tv:resnet18", "params": {"weights": str(tmp_path / weights)}},
                         capsys)
    assert code == 2 and "model.params.weights" in err and problem in err, err
    if weights == "bad.pth":
        assert "layer4.1.bn2.weight" in err and "layer1.0.conv1.weight" in err
    assert not (tmp_path / "results" / "tiny").exists()


def test_small_input_on_vgg_is_refused_naming_the_field(tmp_path, tiny_raw, capsys):
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "tv:vgg16_bn", "params": {"small_input": True}}, capsys)
    assert code == 2 and "model.params.small_input" in err


def test_learning_loss_runs_on_a_torchvision_backbone(tmp_path, tiny_raw, capsys, one_torch_thread):
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "tv:resnet18", "params": {"small_input": True}}, capsys,
                         strategies=("learning-loss",))
    assert code == 0, err
    run_dir = tmp_path / "results" / "tiny" / "digits" / "learning-loss" / "seed-0"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"


# --------------------------------------------------------------------------- timm (optional extra)
def test_timm_names_without_timm_say_how_to_install(monkeypatch):
    import albench.models.timm_backbones as tb

    monkeypatch.setattr(tb, "_timm", lambda: None)
    monkeypatch.setattr("albench.models.registry._RESOLVED", {})
    assert has_model("timm:resnet10t")
    with pytest.raises(ConfigError, match=r"albench\[timm\]") as err:
        model_entry("timm:resnet10t")
    assert err.value.field == "model.name"


def _timm():
    return pytest.importorskip("timm", reason="timm is the optional extra albench[timm]: pip install 'albench[timm]'")


def test_list_models_names_the_timm_family(capsys):
    _timm()
    assert main(["list", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    timm_lines = [line for line in lines if line.startswith("timm:")]
    assert len(timm_lines) == 1 and timm_lines[0].split()[0] == "timm:<name>"


@pytest.mark.parametrize("name", ["timm:resnet10t", "timm:test_vit"])
def test_timm_models_follow_the_model_interface(name, one_torch_thread):
    _timm()
    torch.manual_seed(0)
    m = build_model(name, num_classes=6, in_channels=3, image_size=(32, 32))
    m.eval()
    x = _x()
    out = m(x)
    assert out.logits.shape == (2, 6) and out.embedding.shape == (2, m.embedding_dim)
    assert len(out.stages) == len(m.stage_channels) and [s.shape[1] for s in out.stages] == list(m.stage_channels)
    assert all(s.ndim == 4 for s in out.stages)
    assert torch.allclose(out.logits, m.net(x), atol=1e-5)  # the adapter computes timm's own logits
    d = build_model(name, num_classes=6, in_channels=3, image_size=(32, 32), params={"dropout": 0.4})
    assert d.dropout.p == 0.4


def test_timm_small_input_and_refusals(tmp_path, tiny_raw, capsys):
    _timm()
    m = build_model("timm:resnet10t", num_classes=3, in_channels=3, image_size=(32, 32), params={"small_input": True})
    assert isinstance(m.net.maxpool, nn.Identity) and m.net.conv1[0].stride == (1, 1)
    assert m(_x()).stages[1].shape[-1] == 32
    with pytest.raises(ConfigError, match="did you mean 'timm:resnet10t'") as err:
        model_entry("timm:resnet10tt")
    assert err.value.field == "model.name"
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "timm:test_vit", "params": {"small_input": True}}, capsys)
    assert code == 2 and "model.params.small_input" in err, err


def test_timm_weights_from_a_local_file(tmp_path, tiny_raw, capsys, one_torch_thread):
    timm = _timm()
    torch.manual_seed(3)
    sd = timm.create_model("test_resnet", pretrained=False, num_classes=1000).state_dict()
    torch.save(sd, tmp_path / "tr.pth")
    m = build_model("timm:test_resnet", num_classes=4, in_channels=3, image_size=(32, 32),
                    params={"weights": str(tmp_path / "tr.pth")})
    assert torch.equal(m.net.state_dict()["layer2.0.conv1.weight"], sd["layer2.0.conv1.weight"])
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), tmp_path / "vit.pth")
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "timm:test_resnet", "params": {"weights": str(tmp_path / "vit.pth")}},
                         capsys)
    assert code == 2 and "model.params.weights" in err and "does not match timm test_resnet" in err, err


def test_a_run_on_a_timm_backbone_completes(tmp_path, tiny_raw, capsys, one_torch_thread):
    _timm()
    code, err = _run_cli(tmp_path, tiny_raw, {"name": "timm:test_resnet", "params": {"small_input": True}}, capsys,
                         strategies=("entropy",))
    assert code == 0, err


def test_a_strategy_owned_network_may_be_a_backbone_and_bad_names_name_its_field():
    from albench.strategies.base import check_model_params

    check_model_params({"m": "tv:resnet18", "p": {"small_input": True}}, "m", "p", "strategies[0].params")
    with pytest.raises(ConfigError) as err:
        check_model_params({"m": "tv:resnet19", "p": None}, "m", "p", "strategies[0].params")
    assert err.value.field == "strategies[0].params.m"
    _timm()
    with pytest.raises(ConfigError, match="has no model") as err:
        check_model_params({"m": "timm:no_such_net", "p": None}, "m", "p", "strategies[0].params")
    assert err.value.field == "strategies[0].params.m"


def test_timm_vit_weights_at_another_image_size_are_resampled_as_timm_does(tmp_path, one_torch_thread):
    timm = _timm()
    torch.manual_seed(4)
    sd = timm.create_model("test_vit", pretrained=False).state_dict()  # 160x160: 100 patches + cls
    torch.save(sd, tmp_path / "vit.pth")
    from albench.models.timm_backbones import check_params

    check_params("test_vit", {"weights": str(tmp_path / "vit.pth")})
    m = build_model("timm:test_vit", num_classes=3, in_channels=3, image_size=(32, 32),
                    params={"weights": str(tmp_path / "vit.pth")})
    assert m.net.pos_embed.shape[1] == 5 and sd["pos_embed"].shape[1] == 101
    assert torch.equal(m.net.blocks[1].mlp.fc1.weight, sd["blocks.1.mlp.fc1.weight"])
    assert m(_x()).logits.shape == (2, 3)
