"""Pool options (subsample, imbalance) on every classification dataset: counts, seeding, the
untouched test set, what run.json records, and refusal at config load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from albench.cli import main
from albench.config import DatasetConfig
from albench.data.pool import long_tail_counts, parse_pool_options, proportional_counts, target_counts
from albench.data.registry import get_dataset, load_dataset
from albench.errors import ConfigError
from tests.conftest import SHARED_DATA, write_yaml


def _digits_train_counts() -> list[int]:
    return load_dataset(DatasetConfig(name="digits")).class_counts()


def test_long_tail_profile_is_cifar10_lt():
    # CIFAR-10-LT, imbalance factor 100 (ratio 0.01): 12,406 images
    assert long_tail_counts(5000, 0.01, 10) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(long_tail_counts(5000, 0.01, 10)) == 12406
    assert long_tail_counts(100, 1.0, 4) == [100, 100, 100, 100]  # ratio 1: balanced
    assert long_tail_counts(100, 0.5, 3) == [100, 70, 50]  # 100 * 0.5 ** 0.5 = 70.7 -> 70


def test_proportional_total_uses_largest_remainders():
    assert proportional_counts([50, 30, 20], 10) == [5, 3, 2]
    assert proportional_counts([1, 1, 1], 2) == [1, 1, 0]  # ties go to the lower class id
    assert proportional_counts([10, 5], 4) == [3, 1]  # 2.67 and 1.33
    assert sum(proportional_counts([148, 150, 152, 149], 333)) == 333


@pytest.mark.parametrize("params, field", [
    ({"imbalance": 0}, "d.params.imbalance"),
    ({"imbalance": -0.5}, "d.params.imbalance"),
    ({"imbalance": 1.5}, "d.params.imbalance"),
    ({"imbalance": float("nan")}, "d.params.imbalance"),
    ({"imbalance": "steep"}, "d.params.imbalance"),
    ({"imbalance": {"ratio": 2}}, "d.params.imbalance.ratio"),
    ({"imbalance": {"n_max": 5}}, "d.params.imbalance"),
    ({"imbalance": {"ratio": 0.1, "n_max": 0}}, "d.params.imbalance.n_max"),
    ({"subsample": 0}, "d.params.subsample"),
    ({"subsample": 2.5}, "d.params.subsample"),
    ({"subsample": True}, "d.params.subsample"),
    ({"subsample": {}}, "d.params.subsample"),
    ({"subsample": {"per_class": 3, "total": 30}}, "d.params.subsample"),
    ({"subsample": {"per_class": -3}}, "d.params.subsample.per_class"),
    ({"subsample": {"total": 30, "seed": -1}}, "d.params.subsample.seed"),
    ({"subsample": 30, "imbalance": 0.1}, "d.params.subsample"),
])
def test_malformed_options_name_their_field(params, field):
    with pytest.raises(ConfigError) as err:
        parse_pool_options(params, "d")
    assert err.value.field == field


def test_options_that_the_classes_cannot_supply_are_refused():
    sizes = [10, 8, 12]
    with pytest.raises(ConfigError, match="larger than class 1, which has 8") as err:
        target_counts(parse_pool_options({"subsample": {"per_class": 9}}, "d"), sizes, "d")
    assert err.value.field == "d.params.subsample.per_class"
    with pytest.raises(ConfigError, match="pool has 30") as err:
        target_counts(parse_pool_options({"subsample": 31}, "d"), sizes, "d")
    assert err.value.field == "d.params.subsample"
    with pytest.raises(ConfigError, match="class 0 11 images but it has 10") as err:
        target_counts(parse_pool_options({"imbalance": {"ratio": 0.5, "n_max": 11}}, "d"), sizes, "d")
    assert err.value.field == "d.params.imbalance.n_max"
    with pytest.raises(ConfigError, match="last class no image") as err:
        target_counts(parse_pool_options({"imbalance": 0.05}, "d"), sizes, "d")  # 8 * 0.05 < 1
    assert err.value.field == "d.params.imbalance.ratio"
    # n_max defaults to the smallest class: 8, 8 * 0.5 ** 0.5 = 5.66 -> 5, 4
    assert target_counts(parse_pool_options({"imbalance": 0.5}, "d"), sizes, "d") == [8, 5, 4]


def test_subsample_is_seeded_per_class_and_leaves_the_test_set_alone():
    full = load_dataset(DatasetConfig(name="digits"))
    a = load_dataset(DatasetConfig(name="digits", params={"subsample": {"per_class": 7}}))
    b = load_dataset(DatasetConfig(name="digits", params={"subsample": {"per_class": 7}}))
    c = load_dataset(DatasetConfig(name="digits", params={"subsample": {"per_class": 7, "seed": 1}}))
    assert a.class_counts() == [7] * 10 and a.x_train.shape[0] == 70
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, full.x_test) and torch.equal(a.y_test, full.y_test)
    # every kept image is an image of the full pool, with its own label, in pool order
    fx, ax = full.x_train.flatten(1).numpy(), a.x_train.flatten(1).numpy()
    rows = {fx[i].tobytes(): int(full.y_train[i]) for i in range(len(fx))}
    assert all(rows[ax[i].tobytes()] == int(a.y_train[i]) for i in range(len(ax)))
    pool = a.info["pool"]
    assert pool["size"] == 70 and pool["source_size"] == 1500 and pool["class_counts"] == [7] * 10
    assert pool["source_class_counts"] == full.class_counts()


def test_pool_options_are_refused_on_a_segmentation_dataset():
    with pytest.raises(ConfigError, match="classification datasets only") as err:
        get_dataset("digit-scenes").check(DatasetConfig(name="digit-scenes", params={"subsample": 10}), "datasets[0]")
    assert err.value.field == "datasets[0].params.subsample"


# --------------------------------------------------------------------------- through the CLI, into run.json
def _run(tmp_path, raw, sets, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", raw)
    args = ["run", str(cfg), "--quiet"]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    return code, capsys.readouterr()


def _run_json(tmp_path, dataset):
    return json.loads((tmp_path / "results" / "tiny" / dataset / "random" / "seed-0" / "run.json").read_text())


def test_set_subsample_on_digits_is_recorded_in_run_json(tmp_path, tiny_raw, one_torch_thread, capsys):
    tiny_raw["al"]["cycles"] = 2
    code, out = _run(tmp_path, tiny_raw, ["dataset.params.subsample=333"], capsys)
    assert code == 0, out.err
    pool = _run_json(tmp_path, "digits")["dataset_info"]["pool"]
    want = proportional_counts(_digits_train_counts(), 333)
    assert pool["subsample"] == {"total": 333, "seed": 0} and pool["imbalance"] is None
    assert pool["class_counts"] == want and pool["size"] == 333 == sum(want)


def test_set_imbalance_on_digits_is_recorded_in_run_json(tmp_path, tiny_raw, one_torch_thread, capsys):
    tiny_raw["al"]["cycles"] = 2
    code, out = _run(tmp_path, tiny_raw, ["dataset.params.imbalance={ratio: 0.1, seed: 3}"], capsys)
    assert code == 0, out.err
    run = _run_json(tmp_path, "digits")
    pool = run["dataset_info"]["pool"]
    n_max = min(_digits_train_counts())
    want = [int(n_max * 0.1 ** (c / 9)) for c in range(10)]
    assert pool["class_counts"] == want and want[0] == n_max and want[-1] == int(n_max * 0.1)
    assert pool["imbalance"] == {"ratio": 0.1, "n_max": n_max, "seed": 3}
    assert run["dataset_info"]["pool"]["size"] == sum(want)


@pytest.mark.parametrize("setting, field", [
    ("dataset.params.subsample={per_class: 1000}", "dataset.params.subsample.per_class"),
    ("dataset.params.subsample=5000", "dataset.params.subsample"),
    ("dataset.params.imbalance=0", "dataset.params.imbalance"),
    ("dataset.params.imbalance=1.01", "dataset.params.imbalance"),
    ("dataset.params.subsample={per_class: 3}", "al"),  # 30 images cannot hold the 60-label schedule
])
def test_bad_pool_options_exit_2_naming_the_field_before_any_run(tmp_path, tiny_raw, capsys, setting, field):
    code, out = _run(tmp_path, tiny_raw, [setting], capsys)
    assert code == 2
    assert out.err.strip().startswith(f"{field}:") or f" {field}:" in out.err, out.err
    assert not (tmp_path / "results" / "tiny").exists()


def _need_cifar10():
    if not (SHARED_DATA / "cifar10.npz").exists():
        pytest.skip(f"no shared CIFAR-10 at {SHARED_DATA} (only present on the project's machines)")


def _cifar_raw(tiny_raw):
    tiny_raw["dataset"] = {"name": "cifar10", "root": str(SHARED_DATA)}
    tiny_raw["train"]["epochs"] = 1
    tiny_raw["al"] = {"initial": 10, "budget": 10, "cycles": 2}
    tiny_raw["record"] = {"embeddings": 0}
    return tiny_raw


def test_cifar10_lt_from_the_real_cifar10(tmp_path, tiny_raw, one_torch_thread, capsys):
    _need_cifar10()
    code, out = _run(tmp_path, _cifar_raw(tiny_raw), ["dataset.params.imbalance=0.01"], capsys)
    assert code == 0, out.err
    pool = _run_json(tmp_path, "cifar10")["dataset_info"]["pool"]
    assert pool["class_counts"] == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert pool["size"] == 12406 and pool["source_size"] == 50000 and pool["source_class_counts"] == [5000] * 10


def test_cifar10_subsample_per_class_from_the_real_cifar10(tmp_path, tiny_raw, one_torch_thread, capsys):
    _need_cifar10()
    code, out = _run(tmp_path, _cifar_raw(tiny_raw), ["dataset.params.subsample={per_class: 100, seed: 2}"], capsys)
    assert code == 0, out.err
    pool = _run_json(tmp_path, "cifar10")["dataset_info"]["pool"]
    assert pool["class_counts"] == [100] * 10 and pool["size"] == 1000
    assert pool["subsample"] == {"per_class": 100, "seed": 2}
    # and one more than a class holds is refused at config load, naming the field
    code, out = _run(tmp_path, _cifar_raw(tiny_raw), ["dataset.params.subsample={per_class: 5001}"], capsys)
    assert code == 2 and "dataset.params.subsample.per_class" in out.err and "5000" in out.err


def test_large_datasets_check_pool_options_from_their_file_lists(tmp_path, monkeypatch):
    import albench.data.decoded as decoded
    from albench.data.pool import pool_size
    from tests.test_large_datasets import _cfg, write_caltech, write_imagenet

    root = write_imagenet(tmp_path / "imagenet")
    write_caltech(tmp_path / "caltech101" / "101_ObjectCategories")
    caltech = _cfg("caltech101", tmp_path, image_size=[16, 16], workers=1)
    expected = get_dataset("caltech101").load(caltech).y_train.tolist()
    monkeypatch.setattr(decoded, "decode_into", lambda *a, **k: pytest.fail("decoded at config load"))
    assert get_dataset("caltech101").train_labels(caltech).tolist() == expected
    cfg = _cfg("imagenet67", root, mapping="map.csv", image_size=[8, 8], workers=1, subsample={"per_class": 3})
    assert get_dataset("imagenet67").train_labels(cfg).tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert pool_size(get_dataset("imagenet67"), cfg, "datasets[0]") == 6
    cfg.params["subsample"] = {"per_class": 4}  # the 'bird' superclass has 3 images
    with pytest.raises(ConfigError, match="class 0, which has 3"):
        pool_size(get_dataset("imagenet67"), cfg, "datasets[0]")
