"""Every official-code quirk names its source; `albench list quirks` and the quirk table of
docs/strategies.md list them all; the run's normalisation knobs (train.augment.mean / std /
channel_order) are validated and applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albench.cli import main, quirk_rows
from albench.config import AugmentConfig, StrategyConfig, TrainConfig, build_config
from albench.data.augment import BatchTransform
from albench.errors import ConfigError
from albench.plan import FLAG_BEST_ON_TEST, make_plan, resolve_strategy
from albench.typed import from_dict
from albench.strategies.base import QUIRK_SOURCE
from albench.strategies.registry import get_strategy, strategy_names

STRATEGIES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "strategies.md"


def _all_quirks():
    return [(n, q) for n in strategy_names() for q in get_strategy(n).quirks]


def _builtin(name: str) -> bool:
    """A strategy shipped with albench (not a plugin, nor a test double of albench.testing)."""
    module = get_strategy(name).__module__
    return module.startswith("albench.strategies.") and not module.startswith("albench.testing")


def test_every_registered_quirk_has_an_owner_repo_at_commit_source():
    missing = [f"{n}:{q.name} ({q.source!r})" for n, q in _all_quirks()
               if _builtin(n) and not QUIRK_SOURCE.match(q.source)]
    assert not missing, "quirks without an 'owner/repo@commit path' source: " + ", ".join(missing)


def test_source_pattern_refuses_what_is_not_a_source():
    assert QUIRK_SOURCE.match("johnsk95/PT4AL@9a0da4a make_batches.py")
    for bad in ("", "johnsk95/PT4AL make_batches.py", "PT4AL@9a0da4a main.py", "a/b@main x.py", "a/b@9a0da4a"):
        assert not QUIRK_SOURCE.match(bad)


def test_list_quirks_prints_one_line_per_quirk(capsys):
    assert main(["list", "quirks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    quirks = _all_quirks()
    assert len(lines) == 1 + len(quirks)  # a header, then one line each
    for line, (n, q) in zip(lines[1:], quirks):
        assert line.split()[:4] == [n, q.name, "on" if q.official else "off", q.source.split()[0]]
        assert line.rstrip().endswith(q.summary)


def test_docs_quirk_table_lists_every_quirk_with_its_source():
    text = STRATEGIES_PAGE.read_text()
    for st, name, on, src, _ in quirk_rows():
        assert f"| {st} | `{name}` | {on} | `{src}` |" in text, f"docs/strategies.md lacks {st}:{name}"


def test_official_switches_on_every_quirk_but_superseded_ones():
    for n, q in _all_quirks():
        _, _, active, _ = resolve_strategy(StrategyConfig(n), "official", TrainConfig(), "s")
        assert (q.name in active) == q.official, (n, q.name)
    assert not get_strategy("coregcn").quirk("kcenter-on-input-features-d8993bc").official


def test_a_flag_is_recorded_once_in_one_spelling():
    for name in ("pt4al", "pt4al-pretext-only", "pt4al-sampling-only"):
        _, _, _, flags = resolve_strategy(StrategyConfig(name), "official", TrainConfig(), "s")
        assert flags == [FLAG_BEST_ON_TEST]
    _, _, _, flags = resolve_strategy(StrategyConfig("pt4al", quirks=["best_on_test"]), "paper", TrainConfig(), "s")
    assert flags == [FLAG_BEST_ON_TEST]


@pytest.mark.parametrize("augment, field", [
    ({"mean": [0.5, 0.5, 0.5]}, "mean"),  # without std
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}, "mean"),  # lengths differ
    ({"mean": [0.5], "std": [0.0]}, "std"),
    ({"mean": [], "std": []}, "mean"),
    ({"channel_order": "gbr"}, "channel_order"),
])
def test_bad_normalisation_knobs_are_refused_naming_the_field(tiny_raw, augment, field):
    raw = dict(tiny_raw, train={**tiny_raw.get("train", {}), "augment": augment})
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert field in err.value.field


def test_normalisation_knobs_resolve_against_the_dataset():
    aug = from_dict(AugmentConfig, {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]})
    assert aug.resolve((0.4, 0.4, 0.4), (0.2, 0.2, 0.2), 3) == ((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    assert AugmentConfig().resolve((0.4,), (0.2,), 1) == ((0.4,), (0.2,))  # null: the dataset's own
    with pytest.raises(ConfigError) as err:
        aug.resolve((0.4,), (0.2,), 1)
    assert err.value.field == "train.augment.mean"


def test_bgr_transform_reverses_channels_before_normalising():
    x = torch.tensor([[[[10]], [[20]], [[30]]]], dtype=torch.uint8)
    tf = BatchTransform((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), bgr=True)
    assert tf.test(x).flatten().tolist() == pytest.approx([30.0, 20.0, 10.0])


def test_a_quirks_normalisation_reaches_the_run_config(tiny_raw):
    raw = dict(tiny_raw, protocol="official", strategies=["learning-loss"])
    (rc,) = make_plan(build_config(raw))
    assert "official-std" in rc.quirks and rc.train.augment.std == [0.2023, 0.1994, 0.2010]
    (paper,) = make_plan(build_config(dict(tiny_raw, strategies=["learning-loss"])))
    assert paper.train.augment.mean is None and paper.train.augment.std is None


def _npz(tmp_path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "tiny3.npz"
    np.savez(path, x_train=rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8), y_train=rng.integers(0, 3, 120),
             x_test=rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), y_test=rng.integers(0, 3, 30))
    return path


PRETEXT = {"pretext_model": "small-cnn", "pretext_model_params": {"width": 4}, "pretext_epochs": 1,
           "pretext_batch_size": 64, "pretext_selection": "final"}


@pytest.mark.usefixtures("one_torch_thread")
def test_official_pt4al_run_records_bgr_and_the_official_constants(tiny_raw, tmp_path):
    import json

    from albench.engine.loop import execute_run

    raw = dict(tiny_raw, protocol="official", dataset={"name": "npz", "root": str(_npz(tmp_path))},
               al={"initial": 10, "budget": 10, "cycles": 2}, train={**tiny_raw["train"], "epochs": 1},
               strategies=[{"name": "pt4al", "params": PRETEXT}])
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    ident = json.loads((rc.run_dir / "run.json").read_text())
    assert "bgr_normalization" in ident["quirks"] and ident["flags"] == [FLAG_BEST_ON_TEST]
    assert ident["augment"]["channel_order"] == "bgr"
    assert ident["augment"]["mean"] == [0.4914, 0.4822, 0.4465]
    assert ident["augment"]["std"] == [0.2023, 0.1994, 0.2010]


@pytest.mark.usefixtures("one_torch_thread")
def test_official_constants_on_one_channel_digits_fail_the_run_naming_the_fix(tiny_raw):
    from albench.engine.loop import execute_run

    raw = dict(tiny_raw, protocol="official", strategies=["learning-loss"])
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    assert outcome.state == "failed"
    status = (rc.run_dir / "status.json").read_text()
    assert "train.augment.mean" in status and "quirks" in status


def test_official_constants_on_one_channel_digits_are_refused_at_config_load(tiny_raw):
    from albench.validate import validate_environment

    raw = dict(tiny_raw, protocol="official", strategies=["learning-loss"])
    with pytest.raises(ConfigError) as err:
        validate_environment(build_config(raw))
    assert err.value.field == "train.augment.mean" and "learning-loss" in str(err.value)
    assert "strategies[i].quirks" in str(err.value)
    # listing the other quirks is the fix
    raw["strategies"] = [{"name": "learning-loss", "quirks": ["warm-start"]}]
    validate_environment(build_config(raw))
