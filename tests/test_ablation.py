"""``ablate: quirks``: a strategy entry expands into official, official minus each quirk unit, and
paper (N + 2 runs per seed for N units), each labelled and recorded with its exact quirk set; quirks
declared in one group are listed and removed together; a flagged quirk flags every run that has it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from albench.ablation import expand_strategies
from albench.cli import main
from albench.config import build_config
from albench.errors import ConfigError
from albench.plan import FLAG_BEST_ON_TEST, make_plan
from albench.strategies import registry
from albench.strategies.base import Quirk, Strategy, quirk_units
from albench.strategies.registry import get_strategy, register_strategy, strategy_names
from tests.conftest import write_yaml

SRC = "someone/toy-al@abcdef0 select.py"


@dataclass(frozen=True)
class ToyParams:
    alone: bool = False
    half_a: bool = False
    half_b: bool = False
    old: bool = False


class Toy(Strategy):
    """Uniform random queries; its params change nothing but are what the quirks switch."""

    name = "toy-grouped"
    Params = ToyParams
    quirks = (
        Quirk("alone", "a quirk of its own", params={"alone": True}, source=SRC),
        Quirk("half-a", "one half of a behaviour", params={"half_a": True}, source=SRC, group="pair"),
        Quirk("test-pick", "select on the test set", train={"selection": "best-on-test"}, flag=True, source=SRC),
        Quirk("half-b", "the other half", params={"half_b": True}, source=SRC, group="pair"),
        Quirk("old", "superseded", params={"old": True}, source=SRC, official=False),
    )

    def select(self, *, cycle, budget, pool, inputs, rng):
        return np.sort(rng.choice(pool.unlabeled, size=budget, replace=False))


@pytest.fixture
def toy(monkeypatch):
    strategy_names()  # load the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_strategy(Toy)
    return Toy


def _plan(tiny_raw, entry, **kw):
    return make_plan(build_config(dict(tiny_raw, strategies=["random", entry], seeds=[0, 1], **kw)))


def test_units_follow_declaration_order_and_groups(toy):
    assert quirk_units(q for q in toy.quirks if q.official) == [
        ("alone", ("alone",)), ("pair", ("half-a", "half-b")), ("test-pick", ("test-pick",))]


def test_toy_expands_into_units_plus_two_runs_per_seed(toy, tiny_raw):
    plan = _plan(tiny_raw, {"name": "toy-grouped", "ablate": "quirks"})
    mine = [rc for rc in plan if rc.strategy.name == "toy-grouped"]
    assert len(mine) == (3 + 2) * 2
    by_label = {}
    for rc in mine:
        by_label.setdefault(rc.strategy.key, []).append(rc)
    assert list(by_label) == ["toy-grouped@official", "toy-grouped@no-alone", "toy-grouped@no-pair",
                              "toy-grouped@no-test-pick", "toy-grouped@paper"]
    want = {"toy-grouped@official": ["alone", "half-a", "test-pick", "half-b"],
            "toy-grouped@no-alone": ["half-a", "test-pick", "half-b"],
            "toy-grouped@no-pair": ["alone", "test-pick"],  # both halves go together
            "toy-grouped@no-test-pick": ["alone", "half-a", "half-b"],
            "toy-grouped@paper": []}
    for label, rcs in by_label.items():
        assert [rc.seed for rc in rcs] == [0, 1]
        for rc in rcs:
            assert rc.quirks == want[label] and rc.strategy.quirks == want[label]
            assert rc.protocol == ("paper" if label.endswith("@paper") else "official")
            # the flagged quirk flags exactly the runs that have it
            assert (FLAG_BEST_ON_TEST in rc.flags) == ("test-pick" in rc.quirks)
            assert rc.train.selection == ("best-on-test" if "test-pick" in rc.quirks else "final")
            p = rc.strategy.params
            assert (p["alone"], p["half_a"], p["half_b"], p["old"]) == (
                "alone" in rc.quirks, "half-a" in rc.quirks, "half-b" in rc.quirks, False)
            assert rc.ablation["of"] == "toy-grouped" and rc.ablation["units"] == {
                "alone": ["alone"], "pair": ["half-a", "half-b"], "test-pick": ["test-pick"]}
            assert rc.identity()["ablation"] == rc.ablation
    no_pair = by_label["toy-grouped@no-pair"][0].ablation
    assert (no_pair["variant"], no_pair["unit"], no_pair["removed"]) == ("without", "pair", ["half-a", "half-b"])
    # the other entry is untouched: no ablation record, the sweep's protocol
    rnd = [rc for rc in plan if rc.strategy.name == "random"]
    assert [rc.strategy.key for rc in rnd] == ["random", "random"] and all(rc.ablation is None for rc in rnd)
    assert "ablation" not in rnd[0].identity()


def test_a_partial_group_is_refused_with_the_fix(toy, tiny_raw):
    with pytest.raises(ConfigError, match=r"strategies\[1\]\.quirks: .*only make sense together.*half-b is not "
                                          r"listed.*list all of half-a, half-b"):
        _plan(tiny_raw, {"name": "toy-grouped", "quirks": ["half-a", "alone"]})
    _plan(tiny_raw, {"name": "toy-grouped", "quirks": ["half-a", "half-b"]})  # both: fine


def test_group_declarations_are_checked_at_registration(monkeypatch):
    strategy_names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Mixed(Toy):
        name = "toy-mixed"
        quirks = (Quirk("x", "x", source=SRC, group="g"), Quirk("y", "y", source=SRC, group="g", official=False))

    with pytest.raises(ValueError, match="group 'g'.*all of them on or none"):
        register_strategy(Mixed)

    class Twice(Toy):
        name = "toy-twice"
        quirks = (Quirk("x", "x", source=SRC), Quirk("x", "again", source=SRC))

    with pytest.raises(ValueError, match="declares quirk 'x' twice"):
        register_strategy(Twice)


def test_every_builtin_strategy_with_quirks_plans_n_plus_two_runs_per_seed(tiny_raw):
    """From the declared quirk lists only: whatever quirks a strategy declares now or later."""
    for name in strategy_names():
        cls = get_strategy(name)
        units = quirk_units(q for q in cls.quirks if q.official)
        if not units or "classification" not in cls.tasks:
            continue
        plan = [rc for rc in _plan(tiny_raw, {"name": name, "ablate": "quirks"}) if rc.strategy.name == name]
        assert len(plan) == (len(units) + 2) * 2, name
        official = [q.name for q in cls.quirks if q.official]
        flagged = {q.name for q in cls.quirks if q.flag}
        for rc in plan:
            removed = set(rc.ablation["removed"])
            assert rc.quirks == [q for q in official if q not in removed], (name, rc.strategy.key)
            assert bool(set(rc.quirks) & flagged) == bool(rc.flags), (name, rc.strategy.key, rc.flags)


def test_pt4al_expansion_keeps_best_on_test_flagged(tiny_raw):
    plan = _plan(tiny_raw, {"name": "pt4al", "ablate": "quirks"})
    flags = {rc.strategy.key: rc.flags for rc in plan if rc.seed == 0 and rc.strategy.name == "pt4al"}
    assert flags == {"pt4al@official": [FLAG_BEST_ON_TEST], "pt4al@no-string_sort": [FLAG_BEST_ON_TEST],
                     "pt4al@no-normalized_softmax": [FLAG_BEST_ON_TEST], "pt4al@no-warm_start": [FLAG_BEST_ON_TEST],
                     "pt4al@no-best_on_test": [], "pt4al@no-bgr_normalization": [FLAG_BEST_ON_TEST],
                     "pt4al@paper": []}


def test_listed_quirks_are_the_base_of_the_ablation(tiny_raw):
    plan = _plan(tiny_raw, {"name": "pt4al", "label": "pt", "ablate": "quirks",
                            "quirks": ["warm_start", "string_sort"]})
    got = {rc.strategy.key: rc.quirks for rc in plan if rc.seed == 0 and rc.strategy.name == "pt4al"}
    assert got == {"pt@base": ["string_sort", "warm_start"], "pt@no-string_sort": ["warm_start"],
                   "pt@no-warm_start": ["string_sort"], "pt@paper": []}


@pytest.mark.parametrize("entry, extra, match", [
    ({"name": "coreset", "ablate": "quirks"}, {}, r"strategies\[1\]\.ablate: .*'coreset' declares no quirk"),
    ({"name": "pt4al", "ablate": "quirks", "quirks": []}, {}, r"strategies\[1\]\.ablate: .*empty 'quirks' list"),
    ({"name": "pt4al", "ablate": "everything"}, {}, r"strategies\[1\]\.ablate"),
    ({"name": "pt4al", "ablate": "quirks"}, {"baseline": "pt4al"}, r"baseline: names 'pt4al', an entry with"),
])
def test_bad_ablations_are_refused(tiny_raw, entry, extra, match):
    with pytest.raises(ConfigError, match=match):
        _plan(tiny_raw, entry, **extra)


def test_an_expanded_label_that_collides_is_refused(tiny_raw):
    raw = dict(tiny_raw, strategies=[{"name": "pt4al", "ablate": "quirks"},
                                     {"name": "pt4al", "label": "pt4al@paper"}])
    with pytest.raises(ConfigError, match=r"label 'pt4al@paper' of strategies\[1\] is also a label of strategies\[0\]"):
        expand_strategies(build_config(raw))


def test_dry_run_lists_the_expansion(tiny_raw, tmp_path, capsys):
    raw = dict(tiny_raw, strategies=["random", {"name": "typiclust", "ablate": "quirks"}], seeds=[0, 1])
    cfg = write_yaml(tmp_path / "abl.yaml", raw)
    assert main(["run", str(cfg), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    n = len(quirk_units(q for q in get_strategy("typiclust").quirks if q.official))
    assert f"x {1 + n + 2} strategies x 2 seeds; 1 entry expanded by 'ablate: quirks')" in err
    assert f"ablation of strategies[1] 'typiclust': {n} quirk units -> {n + 2} runs per seed, {2 * (n + 2)} in all" \
        in out
    assert "  typiclust@paper\tprotocol=paper\tquirks=(none)" in out
    lines = [line for line in out.splitlines() if line.startswith("digits/typiclust@")]
    assert len(lines) == 2 * (n + 2)
    assert "digits/typiclust@no-squared_distances/seed-1\tto run quirks=" in out


@pytest.mark.usefixtures("one_torch_thread")
def test_ablated_runs_record_their_quirks_and_report_the_quirk_impact(toy, tiny_raw, tmp_path):
    from albench.engine.loop import execute_run
    from albench.reports.report import build_report

    raw = dict(tiny_raw, strategies=[{"name": "toy-grouped", "ablate": "quirks"}], seeds=[0, 1],
               al={"initial": 10, "budget": 10, "cycles": 2}, train={**tiny_raw["train"], "epochs": 1},
               record={"embeddings": 0})
    plan = make_plan(build_config(raw))
    for rc in plan:
        assert execute_run(rc).state == "complete"
    for rc in plan:
        ident = json.loads((rc.run_dir / "run.json").read_text())
        assert ident["quirks"] == rc.quirks and ident["flags"] == rc.flags
        assert ident["protocol"] == rc.protocol and ident["ablation"]["name"] == rc.strategy.key.split("@")[1]
        assert set(ident["quirk_docs"]) == set(rc.quirks)
    index = build_report(plan[0].run_dir.parents[2], tmp_path / "report", tsne_max=50)
    names = {a.name for a in index.artefacts}
    assert "quirk-impact-digits-toy-grouped" in names
    md = (tmp_path / "report" / "tables" / "quirk-impact-digits-toy-grouped.md").read_text()
    assert "− pair (half-a, half-b)" in md and "− all (paper)" in md and "Δ at 20" in md
