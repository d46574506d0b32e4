"""Frozen features: a ``head`` model trained each cycle on features computed once per pool and cached.

End to end on digits: the strategies that need only model outputs (and TypiClust/ProbCover on the
same features) complete; a second sweep reuses the features entry and records it; a features file
whose rows or fingerprint do not match the dataset, Learning Loss on a head, and TypiClust's
``representation: features`` on an image model are refused at config load (exit 2)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from albench.cli import main
from albench.config import DatasetConfig
from albench.errors import ConfigError
from albench.validate import load_config
from tests.conftest import write_yaml

SIMCLR = {"name": "simclr", "params": {"model": "small-cnn", "width": 8, "epochs": 2, "batch_size": 256}}
HEAD_RAW = {
    "name": "frozen",
    "dataset": {"name": "digits"},
    "model": {"name": "head", "params": {"features": SIMCLR, "hidden": 0, "dropout": 0.5}},
    "train": {"epochs": 5, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
              "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 2},
    "strategies": ["random"],
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 32},
}
MODEL_OUTPUT_STRATEGIES = ["random", "entropy", "coreset", "badge", {"name": "bald", "params": {"passes": 5}},
                           {"name": "typiclust", "params": {"representation": "features"}},
                           {"name": "probcover", "params": {"representation": "features"}}]


@pytest.fixture
def head_raw(tmp_path) -> dict:
    raw = copy.deepcopy(HEAD_RAW)
    raw["output"] = str(tmp_path / "results")
    return raw


def _run_json(root, sweep, strategy, seed=0) -> dict:
    return json.loads((root / sweep / "digits" / strategy / f"seed-{seed}" / "run.json").read_text())


def _status(root, sweep, strategy, seed=0) -> str:
    return json.loads((root / sweep / "digits" / strategy / f"seed-{seed}" / "status.json").read_text())["state"]


# ------------------------------------------------------------------------------------------------
# the model


def test_albench_list_models_shows_head(capsys):
    assert main(["list", "models"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.split()[0] == "head"]
    assert len(lines) == 1 and "frozen features" in lines[0]


def test_a_linear_head_embeds_its_input_and_an_mlp_its_hidden_layer():
    from albench.models.registry import build_model

    x = torch.randn(5, 12)
    torch.manual_seed(0)
    linear = build_model("head", num_classes=3, in_channels=1, image_size=(8, 8), params={"features": "simclr"},
                         in_features=12)
    out = linear(x)
    assert out.logits.shape == (5, 3) and out.stages == ()
    assert torch.equal(out.embedding, x) and linear.embedding_dim == 12 and linear.embedding_source == "input"
    assert torch.allclose(out.logits, x @ linear.fc.weight.T + linear.fc.bias)
    assert not any(isinstance(m, torch.nn.Dropout) for m in linear.modules())  # dropout 0: no layer

    mlp = build_model("head", num_classes=3, in_channels=1, image_size=(8, 8),
                      params={"features": "simclr", "hidden": 7, "dropout": 0.5, "normalize": True}, in_features=12)
    mlp.eval()
    out = mlp(x)
    unit = x / x.norm(dim=1, keepdim=True)
    hidden = torch.relu(unit @ mlp.hidden[0].weight.T + mlp.hidden[0].bias)
    assert torch.allclose(out.embedding, hidden, atol=1e-6) and mlp.embedding_dim == 7
    assert mlp.embedding_source == "hidden"
    assert torch.allclose(out.logits, hidden @ mlp.fc.weight.T + mlp.fc.bias, atol=1e-6)
    mlp.train()  # the dropout layer sits before the final linear layer: MC dropout samples it
    assert [type(m).__name__ for m in mlp.modules() if isinstance(m, torch.nn.Dropout)] == ["Dropout"]
    assert mlp.dropout.p == 0.5


@pytest.mark.parametrize("features, field, words", [
    (None, "model.params.features", "required"),
    ({"name": "simclr", "params": {"epochs": 0}}, "model.params.features.params.epochs", ">= 1"),
    ({"name": "simclr", "params": {"model": "head"}}, "model.params.features.params.model", "reads features"),
    ({"name": "no-such-thing"}, "model.params.features.name", "neither"),
    ({"name": "tv:resnet18"}, "model.params.features.params.weights", "required"),
    ({"name": "small-cnn"}, "model.params.features.name", "no weights file"),
    ({"file": "x.npz", "name": "simclr"}, "model.params.features.name", "beside 'file'"),
])
def test_a_bad_features_source_is_refused_at_config_load(head_raw, tmp_path, features, field, words):
    head_raw["model"]["params"]["features"] = features
    cfg = write_yaml(tmp_path / "c.yaml", head_raw)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.field == field and words in str(e.value)


# ------------------------------------------------------------------------------------------------
# end to end


def test_digits_head_runs_every_model_output_strategy_and_a_second_sweep_reuses_the_features(head_raw, tmp_path):
    """Random, entropy, Core-Set, BADGE, BALD, TypiClust and ProbCover complete on a head; the SimCLR
    features are trained once (one miss, hits after) and a second sweep under the same output root
    reads the same entry, each run recording the entry and charged its compute time."""
    from albench.reports import tables as T
    from albench.reports.data import load_sweep_runs

    root = tmp_path / "results"
    head_raw["strategies"] = MODEL_OUTPUT_STRATEGIES
    assert main(["run", str(write_yaml(tmp_path / "a.yaml", head_raw)), "--quiet"]) == 0
    names = ["random", "entropy", "coreset", "badge", "bald", "typiclust", "probcover"]
    first = {n: _run_json(root, "frozen", n) for n in names}
    assert all(_status(root, "frozen", n) == "complete" for n in names)
    keys = {r["features"]["key"] for r in first.values()}
    assert len(keys) == 1
    key = keys.pop()
    statuses = [r["features"]["cache"] for r in first.values()]
    assert statuses.count("miss") == 1 and statuses.count("hit") == len(names) - 1
    secs = {r["features"]["compute_seconds"] for r in first.values()}
    assert len(secs) == 1 and secs.pop() > 0
    for r in first.values():
        f = r["features"]
        assert f["source"]["kind"] == "representation" and f["source"]["name"] == "simclr"
        assert f["embedding"] == "input" and f["embedding_dim"] == f["dim"] == 64  # small-cnn width 8: 8 x 8
        assert f["train_rows"] + f["test_rows"] == 1797
        assert [(u["artifact"], u["key"]) for u in r["cache_uses"]] == [("frozen-features", key)]
    # TypiClust and ProbCover selected from those very features
    assert first["typiclust"]["prepare"]["representation"] == "features"
    assert first["probcover"]["prepare"]["representation_key"] == key

    second = copy.deepcopy(head_raw)
    second["name"] = "frozen-again"
    second["strategies"] = ["random", "entropy"]
    second["seeds"] = [0, 1]
    assert main(["run", str(write_yaml(tmp_path / "b.yaml", second)), "--quiet"]) == 0
    compute = first["random"]["features"]["compute_seconds"]
    for n in ("random", "entropy"):
        for seed in (0, 1):
            r = _run_json(root, "frozen-again", n, seed)
            assert r["features"]["key"] == key and r["features"]["cache"] == "hit"
            (use,) = r["cache_uses"]
            assert use["status"] == "hit" and use["key"] == key and use["compute_seconds"] == compute
    # every run is charged the entry's compute time, computed or reused, and the caption says so
    sweep = load_sweep_runs(root / "frozen-again")
    table = T.wallclock_table(sweep.cycles("digits"), caption="", flagged=set(), name="w")
    assert all(t >= compute for t in table.data["total_s"]) and (table.data["incurred_s"] < compute).all()
    assert any("frozen-features" in n and "whether the run computed the entry or reused it" in n for n in table.notes)


def test_a_head_trains_and_scores_on_feature_rows_held_in_memory(head_raw, tmp_path):
    """The engine hands the head float32 feature rows: no image decoding, no augmentation."""
    from albench.cached import collect_uses
    from albench.engine.loop import RunContext
    from albench.features import FeatureTransform
    from albench.plan import make_plan

    cfg = load_config(write_yaml(tmp_path / "c.yaml", head_raw))
    (rc,) = make_plan(cfg)
    ctx = RunContext(rc, None)
    with collect_uses("pretext") as uses:
        info = ctx.load_features()
    assert [u.status for u in uses] == ["miss"] and info["cache"] == "miss"
    assert ctx.x.dtype == torch.float32 and tuple(ctx.x.shape) == (ctx.pool_images.shape[0], 64)
    assert ctx.x_test.dtype == torch.float32 and ctx.x_test.shape[0] == ctx.ds.x_test.shape[0]
    assert isinstance(ctx.transform, FeatureTransform) and not ctx.train_cfg.channels_last
    xb = ctx.x[:4]
    assert ctx.transform.train(xb, torch.Generator()) is xb and ctx.transform.test(xb) is xb
    model, aux = ctx.build(0, None)
    assert aux is None and model(ctx.x[:3]).logits.shape == (3, 10)


def test_a_head_validates_on_feature_rows_of_a_split_carved_from_train(head_raw, tmp_path):
    head_raw["train"].update({"selection": "best-on-validation", "validation": {"source": "train", "size": 100}})
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 0
    r = _run_json(tmp_path / "results", "frozen", "random")
    assert r["features"]["train_rows"] == 1500  # every train row; the pool is 1,400 of them


def test_typiclust_representation_simclr_and_a_head_over_simclr_share_one_entry(head_raw, tmp_path):
    """Equal values of TypiClust's pretext_* params and the head's representation params name one
    cached network, whichever run trains it (the entry keeps the test embeddings the head needs)."""
    root = tmp_path / "results"
    p = SIMCLR["params"]
    image = {"name": "image", "dataset": {"name": "digits"}, "model": {"name": "small-cnn", "params": {"width": 8}},
             "train": {"epochs": 1, "batch_size": 32}, "al": {"initial": 20, "budget": 20, "cycles": 1},
             "strategies": [{"name": "typiclust", "params": {
                 "representation": "simclr", "pretext_model": p["model"], "pretext_width": p["width"],
                 "pretext_epochs": p["epochs"], "pretext_batch_size": p["batch_size"]}}],
             "seeds": [0], "threads": 1, "output": str(root), "record": {"embeddings": 0}}
    assert main(["run", str(write_yaml(tmp_path / "a.yaml", image)), "--quiet"]) == 0
    typi = _run_json(root, "image", "typiclust")
    assert [u["status"] for u in typi["cache_uses"]] == ["miss"]
    assert main(["run", str(write_yaml(tmp_path / "b.yaml", head_raw)), "--quiet"]) == 0
    head = _run_json(root, "frozen", "random")
    assert head["features"]["cache"] == "hit" and head["features"]["key"] == typi["cache_uses"][0]["key"]


def test_strategies_that_need_images_keep_using_them_on_a_head(head_raw, tmp_path):
    """PT4AL's pretext trains on the images (its own cache entry, its own charge) while its in-batch
    sampler reads the head's posteriors; VAAL's VAE and PAL's scorer train on the images too."""
    head_raw["strategies"] = [
        "margin", {"name": "pt4al", "params": {"pretext_model": "small-cnn", "pretext_model_params": {"width": 8},
                                               "pretext_epochs": 1}},
        {"name": "vaal", "params": {"iterations": 2, "batch_size": 64, "width": 8}},
        {"name": "pal", "params": {"scorer_model": "small-cnn", "scorer_params": {"width": 8}, "epochs": 2,
                                   "batch_size": 32, "sub_query": 10, "finetune_epochs": 1}}]
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 0
    root = tmp_path / "results"
    assert all(_status(root, "frozen", n) == "complete" for n in ("margin", "pt4al", "vaal", "pal"))
    pt = _run_json(root, "frozen", "pt4al")
    assert [u["artifact"] for u in pt["cache_uses"]] == ["frozen-features", "pretext-losses"]
    assert pt["prepare"]["pretext_task"] == "rotation"
    assert (root / "frozen" / "digits" / "pt4al" / "seed-0" / "artifacts" / "pretext_loss_pool.npy").is_file()


# ------------------------------------------------------------------------------------------------
# features files


def _digits_features(rng, d=6) -> tuple[np.ndarray, np.ndarray]:
    from albench.data.registry import load_dataset

    ds = load_dataset(DatasetConfig(name="digits"))
    # a fixed random projection of the pixels: any features aligned to the images will do
    w = rng.normal(size=(64, d)).astype(np.float32)
    return (ds.x_train.reshape(len(ds.x_train), -1).float().numpy() / 16 @ w,
            ds.x_test.reshape(len(ds.x_test), -1).float().numpy() / 16 @ w)


def test_a_features_file_runs_and_its_runs_record_it(head_raw, tmp_path):
    from albench.features import save_features_file

    train, test = _digits_features(np.random.default_rng(0))
    path = save_features_file(tmp_path / "feats.npz", train=train, test=test, dataset={"name": "digits"},
                              compute_seconds=12.5, description="random projection")
    head_raw["model"]["params"]["features"] = {"file": str(path)}
    head_raw["strategies"] = ["random", "coreset"]
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 0
    for n in ("random", "coreset"):
        r = _run_json(tmp_path / "results", "frozen", n)
        f = r["features"]
        assert f["source"] == {"kind": "file", "file": str(path)} and f["cache"] == "file" and f["dim"] == 6
        assert f["compute_seconds"] == 12.5 and f["description"] == "random projection"
        (use,) = r["cache_uses"]
        assert use["artifact"] == "frozen-features" and use["status"] == "hit" and use["compute_seconds"] == 12.5
        assert use["key"] == f["sha256"][:32]


def test_a_features_file_with_the_wrong_row_count_exits_2_naming_the_file(head_raw, tmp_path, capsys):
    train, test = _digits_features(np.random.default_rng(0))
    from albench.features import dataset_fingerprints

    fp_train, fp_test = dataset_fingerprints(DatasetConfig(name="digits"))
    bad = tmp_path / "short.npz"
    np.savez(bad, train=train[:-1], test=test, train_fingerprint=np.array(fp_train))
    head_raw["model"]["params"]["features"] = {"file": str(bad)}
    cfg = write_yaml(tmp_path / "c.yaml", head_raw)
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'train' has 1499 rows" in err and "1500 train images" in err
    assert not (tmp_path / "results" / "frozen").exists()  # refused before any run was queued

    np.savez(bad, train=train, test=test[:5], train_fingerprint=np.array(fp_train))
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "'test' has 5 rows" in capsys.readouterr().err


def test_a_features_file_of_other_images_exits_2_naming_the_file(head_raw, tmp_path, capsys):
    train, test = _digits_features(np.random.default_rng(0))
    from albench.features import dataset_fingerprints

    fp_train, fp_test = dataset_fingerprints(DatasetConfig(name="digits"))
    other = tmp_path / "other.npz"
    # the same row count, made for another pool (a subsample of 1,500 others would read the same)
    np.savez(other, train=train, test=test, train_fingerprint=np.array("0" * 64))
    head_raw["model"]["params"]["features"] = {"file": str(other)}
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "train_fingerprint" in err
    # rows in another order: the fingerprint is that of the images, so a reordered pool differs too
    np.savez(other, train=train, test=test, train_fingerprint=np.array(fp_train), test_fingerprint=np.array(fp_train))
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 2
    assert "test_fingerprint" in capsys.readouterr().err
    # no fingerprint at all, or a missing file
    np.savez(other, train=train, test=test)
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 2
    assert "has no 'train_fingerprint'" in capsys.readouterr().err
    head_raw["model"]["params"]["features"] = {"file": str(tmp_path / "missing.npz")}
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 2
    assert "missing.npz" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# strategies that cannot run on a head, or need one


@pytest.mark.parametrize("name", ["learning-loss", "learning-loss-detached"])
def test_learning_loss_is_refused_on_a_head_at_config_load(head_raw, tmp_path, capsys, name):
    head_raw["strategies"] = ["random", name]
    cfg = write_yaml(tmp_path / "c.yaml", head_raw)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.field == "model.name" and f"strategy {name!r}" in e.value.problem
    assert "stage" in e.value.problem  # why: its module reads the backbone's stage outputs
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert name in capsys.readouterr().err


@pytest.mark.parametrize("strategy, field", [
    ({"name": "pt4al", "params": {"pretext_model": "head"}}, "strategies[0].params.pretext_model"),
    ({"name": "pal", "params": {"scorer_model": "head"}}, "strategies[0].params.scorer_model"),
    ({"name": "typiclust", "params": {"pretext_model": "head"}}, "strategies[0].params.pretext_model"),
])
def test_a_head_is_refused_as_a_strategy_owned_image_network(tiny_raw, tmp_path, strategy, field):
    tiny_raw["strategies"] = [strategy]
    with pytest.raises(ConfigError) as e:
        load_config(write_yaml(tmp_path / "c.yaml", tiny_raw))
    assert e.value.field == field and "frozen features" in e.value.problem


def test_representation_features_is_refused_on_a_model_over_images(tiny_raw, tmp_path):
    tiny_raw["strategies"] = [{"name": "probcover", "params": {"representation": "features"}}]
    with pytest.raises(ConfigError) as e:
        load_config(write_yaml(tmp_path / "c.yaml", tiny_raw))
    assert e.value.field == "model.name" and "probcover" in e.value.problem


# ------------------------------------------------------------------------------------------------
# a registered backbone with local weights


@pytest.mark.parametrize("arch, params", [("tv:resnet18", {"small_input": True}), ("timm:resnet18", {})])
def test_a_backbone_with_local_weights_embeds_the_pool_once_and_caches_it(head_raw, tmp_path, arch, params):
    from albench.models.registry import build_model

    if arch.startswith("timm:"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    net = build_model(arch, num_classes=1000, in_channels=3, image_size=(224, 224))
    weights = tmp_path / "resnet18.pth"
    torch.save(net.net.state_dict(), weights)  # the library's own key layout (3-channel stem: summed for digits)
    head_raw["model"]["params"]["features"] = {"name": arch, "params": {"weights": str(weights), **params}}
    head_raw["al"]["cycles"] = 1
    head_raw["seeds"] = [0, 1]
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 0
    runs = [_run_json(tmp_path / "results", "frozen", "random", s) for s in (0, 1)]
    assert sorted(r["features"]["cache"] for r in runs) == ["hit", "miss"]
    f = runs[0]["features"]
    assert f["artifact"] == "frozen-features" and f["dim"] == 512 and f["source"]["name"] == arch
    assert len(f["weights_sha256"]) == 64
    entry = tmp_path / "results" / ".cache" / "features" / f"{f['key']}.npz"
    assert entry.is_file()
    with np.load(entry) as z:
        assert z["train"].shape == (1500, 512) and z["test"].shape == (297, 512)


def test_a_resume_refuses_features_other_than_those_the_run_started_with(tmp_path):
    """A run resumed after its features file (or cache entry) changed would mix two inputs."""
    from types import SimpleNamespace

    from albench.engine.loop import _check_features
    from albench.engine.state import LoopState
    from albench.errors import AlbenchError

    (tmp_path / "run.json").write_text(json.dumps({"features": {"key": "aaaa", "source": {"kind": "file"}}}))
    ctx = SimpleNamespace(rc=SimpleNamespace(run_dir=tmp_path))
    _check_features(ctx, None, {"key": "bbbb"})  # a fresh start records whatever it reads
    _check_features(ctx, LoopState(), {"key": "aaaa"})  # the same entry: resumes
    with pytest.raises(AlbenchError, match="frozen features changed since this run started"):
        _check_features(ctx, LoopState(), {"key": "bbbb", "source": {"kind": "file"}})


def test_the_caption_states_where_the_features_came_from_and_what_was_charged():
    from albench.reports.data import features_summary

    rep = {"source": {"kind": "representation", "name": "simclr"}, "dim": 256, "key": "bc9dd933a0",
           "spec": {"model": "small-cnn", "model_params": {"width": 32}, "epochs": 30, "seed": 0}}
    assert features_summary(rep) == ("simclr (small-cnn width 32, 30 epochs on the train images, seed 0; 256-d; "
                                     "entry bc9dd933)")
    f = {"source": {"kind": "file", "file": "dino.npz"}, "dim": 768, "sha256": "0123456789", "compute_seconds": None}
    assert "records no compute time, so none is charged" in features_summary(f)
    assert "computed elsewhere in 12.5 s" in features_summary({**f, "compute_seconds": 12.5})


def test_a_head_over_pt4al_rotation_features_and_pt4al_share_one_pretext_training(head_raw, tmp_path):
    """A PT4AL pretext as the feature source: the head's features and PT4AL's per-image losses come
    from one rotation network (the features entry writes the loss entry alongside), charged once."""
    head_raw["model"]["params"]["features"] = {"name": "rotation", "params": {"model": "small-cnn", "width": 8,
                                                                              "epochs": 1}}
    head_raw["strategies"] = [{"name": "pt4al", "params": {"pretext_model": "small-cnn",
                                                           "pretext_model_params": {"width": 8}, "pretext_epochs": 1}}]
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", head_raw)), "--quiet"]) == 0
    r = _run_json(tmp_path / "results", "frozen", "pt4al")
    feats, losses = r["cache_uses"]
    assert (feats["artifact"], feats["status"]) == ("frozen-features", "miss")
    assert (losses["artifact"], losses["status"]) == ("pretext-losses", "hit") and losses["origin"] == feats["key"]
    assert r["features"]["dim"] == 64 and r["features"]["spec"]["task"] == "rotation"


@pytest.mark.parametrize("config", ["cifar10-frozen.yaml", "cifar10-frozen-probe.yaml"])
def test_the_packaged_cifar10_frozen_configs_load(config, monkeypatch, capsys):
    from tests.conftest import REPO, SHARED_DATA

    if not (SHARED_DATA / "cifar10.npz").exists():
        pytest.skip(f"no shared CIFAR-10 at {SHARED_DATA} (only present on the project's machines)")
    monkeypatch.chdir(REPO)  # the configs' root, ../shared/data, is relative to the repository
    assert main(["run", f"bench/configs/{config}", "--dry-run"]) == 0, capsys.readouterr().err
    cfg = load_config(REPO / "bench" / "configs" / config)
    assert cfg.model.name == "head" and cfg.model.params["features"]["name"] == "simclr"


def test_dry_run_estimates_the_cost_of_a_heads_representation(head_raw):
    """albench run --dry-run's CPU-reach estimate counts the representation a head trains, and knows
    a TypiClust run with the same pretext params shares it."""
    from albench.config import build_config
    from albench.cpu_reach import pretext_costs

    raw = copy.deepcopy(head_raw)
    raw["device"] = "cpu"
    p = SIMCLR["params"]
    raw["strategies"] = ["random", {"name": "typiclust", "params": {
        "pretext_model": p["model"], "pretext_width": p["width"], "pretext_epochs": p["epochs"],
        "pretext_batch_size": p["batch_size"]}}, {"name": "probcover", "params": {"representation": "features"}}]
    (cost,) = pretext_costs(build_config(raw))
    assert cost.strategies == ["model.params.features", "typiclust"] and cost.epochs == 2 and cost.task == "simclr"
    assert "the model's frozen features (model.params.features) and strategy 'typiclust'" in cost.warning()
