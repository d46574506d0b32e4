"""The records schema reports read: run.json names the sweep's baseline, the timed phases and each
active quirk's documentation; reports read them from there (never from the strategy code), and run
folders recorded before these fields existed read with the old defaults."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from albench.cli import main
from albench.validate import load_config
from albench.plan import make_plan
from albench.records import (PHASES, default_baseline, pick_baseline, recorded_baseline, recorded_phases,
                           recorded_quirk_docs)
from albench.reports import figures as F
from albench.reports import tables as T
from albench.reports.data import load_sweep_runs
from albench.reports.provenance import provenance
from albench.reports.verify import load_reference, verify
from tests.conftest import REPO, write_yaml
from tests.report_synth import write_run

SECS = {"train": [1.0, 1.0], "evaluate": [0.5, 0.5]}  # 3 s per run


# ---------------------------------------------------------------------------------------------
# what a run writes


def test_a_run_records_baseline_phases_and_quirk_docs(tiny_raw, tmp_path, capsys):
    tiny_raw["strategies"] = ["entropy", {"name": "random", "label": "rand"}]
    tiny_raw["seeds"] = [0]
    tiny_raw["al"]["cycles"] = 2
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", tiny_raw)), "--quiet"]) == 0
    capsys.readouterr()
    for label in ("entropy", "rand"):
        ident = json.loads((tmp_path / "results" / "tiny" / "digits" / label / "seed-0" / "run.json").read_text())
        assert ident["baseline"] == "rand"  # no 'baseline' key: the strategy named random, whatever its label
        assert ident["phases"] == list(PHASES)
        assert ident["quirk_docs"] == {}


def test_quirk_docs_are_the_strategy_declared_docs_of_the_active_quirks():
    from albench.strategies.registry import get_strategy

    cfg = load_config(None, ["strategies=[pt4al]", "protocol=official"], check_data=False)
    rc = make_plan(cfg)[0]
    docs = rc.identity()["quirk_docs"]
    official = [q for q in get_strategy("pt4al").quirks if q.official]
    assert list(docs) == rc.quirks and len(docs) == len(official) > 0
    assert docs == {q.name: q.doc for q in official}
    cfg = load_config(None, ["strategies=[{name: pt4al, quirks: [warm_start]}]"], check_data=False)
    assert make_plan(cfg)[0].identity()["quirk_docs"] == {"warm_start": get_strategy("pt4al").quirk("warm_start").doc}


# ---------------------------------------------------------------------------------------------
# the baseline designation at config load


@pytest.mark.parametrize("overrides,expected", [
    ([], "random"),
    (["strategies=[entropy,{name: random, label: r2},{name: random, label: r1}]"], "r1"),
    (["strategies=[entropy,{name: random, label: r2},random]"], "random"),
    (["strategies=[entropy,margin]"], None),
    (["strategies=[entropy,random]", "baseline=entropy"], "entropy"),
])
def test_baseline_is_the_configured_label_else_the_random_strategy(overrides, expected):
    cfg = load_config(None, overrides, check_data=False)
    assert {rc.identity()["baseline"] for rc in make_plan(cfg)} == {expected}


def test_a_baseline_that_names_no_strategy_label_is_bad_input(capsys):
    assert main(["run", "--set", "strategies=[entropy,margin]", "--set", "baseline=random", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("albench: error: baseline: is not one of the sweep's strategy labels")
    assert "entropy, margin" in err[0]


# ---------------------------------------------------------------------------------------------
# reading: legacy defaults


def test_legacy_run_json_reads_with_the_old_defaults():
    legacy = {"sweep": "s", "strategy": "random", "quirks": ["q"], "flags": []}
    assert recorded_phases(legacy) == PHASES
    assert recorded_quirk_docs(legacy) == {}
    assert recorded_baseline(legacy) == (False, None)
    assert recorded_baseline({"baseline": None}) == (True, None)
    assert recorded_baseline({"baseline": "entropy"}) == (True, "entropy")
    assert recorded_phases({"phases": ["train", "evaluate"]}) == ("train", "evaluate")
    # no run designates one: the strategy named random, the label "random" first
    assert pick_baseline([("b", "random", False, None), ("random", "random", False, None),
                          ("random-x", "entropy", False, None)]) == "random"
    assert default_baseline([("b", "random"), ("a", "random"), ("random", "entropy")]) == "a"
    assert default_baseline([("random", "entropy")]) is None
    # designations decide; legacy runs of the same sweep do not vote; disagreement gives no baseline
    assert pick_baseline([("random", "random", False, None), ("entropy", "entropy", True, "entropy")]) == "entropy"
    assert pick_baseline([("a", "random", True, "a"), ("b", "random", True, "b")]) is None
    assert pick_baseline([("random", "random", True, None)]) is None


def test_legacy_sweep_wallclock_still_divides_by_random(tmp_path):
    for label, name in (("rand", "random"), ("entropy", "entropy")):
        write_run(tmp_path, strategy=label, strategy_name=name, values=[0.5, 0.6], seconds=SECS)
    df = load_sweep_runs(tmp_path / "synth").cycles()
    assert not df["baseline_designated"].any()
    data = T.wallclock_data(df)
    assert data.set_index("series")["baseline"].to_dict() == {"entropy": "rand", "rand": "rand"}
    assert T.wallclock_table(df, caption="", flagged=set(), name="wc").display.columns[-1] == "× Rand"
    assert list(T.run_seconds(df).columns[4:9]) == list(PHASES)


# ---------------------------------------------------------------------------------------------
# reading: designated baseline, recorded phases, recorded quirk docs


def _designated_sweep(root: Path, baseline) -> Path:
    ident = {"baseline": baseline, "phases": list(PHASES), "quirk_docs": {}}
    write_run(root, strategy="random", values=[0.5, 0.6], seconds=SECS, identity=ident)
    write_run(root, strategy="entropy", values=[0.5, 0.6], seconds={"train": [2.0, 2.0], "evaluate": [0.5, 0.5]},
              identity=ident)
    return root / "synth"


def test_designated_baseline_drives_the_wallclock_ratio_header_and_figure_style(tmp_path):
    df = load_sweep_runs(_designated_sweep(tmp_path, "entropy")).cycles()
    data = T.wallclock_data(df).set_index("series")
    assert data.loc["entropy", "ratio_to_random"] == pytest.approx(1.0)
    assert data.loc["random", "ratio_to_random"] == pytest.approx(3.0 / 5.0)
    t = T.wallclock_table(df, caption="", flagged=set(), name="wc")
    assert t.display.loc["random", "× Entropy"] == "0.60" and "× Random" not in t.display.columns
    assert "that of entropy in the same sweep" in t.notes[0]
    styles = F.style_map(["entropy", "random"], baselines={T.baseline_series(df, "synth")})
    assert styles["entropy"]["ls"] == "--" and styles["random"]["ls"] == "-"


def test_a_sweep_designating_no_baseline_has_no_ratio_even_with_random(tmp_path):
    df = load_sweep_runs(_designated_sweep(tmp_path, None)).cycles()
    data = T.wallclock_data(df)
    assert np.isnan(data["ratio_to_random"]).all() and data["baseline"].isna().all()
    assert T.wallclock_table(df, caption="", flagged=set(), name="wc").display.columns[-1] == "× baseline"


def test_verify_wallclock_ratio_divides_by_the_designated_baseline(tmp_path):
    from tests.test_verify import CIFAR_AL, PT4AL, REFERENCE, curve

    for seed in range(2):
        for label, name, params, secs in (("random", "random", None, {"train": [1.0] * 10}),
                                          ("half", "random", None, {"train": [0.5] * 10}),
                                          ("pt4al", "pt4al", PT4AL, {"train": [1.588] * 10})):
            write_run(tmp_path, strategy=label, strategy_name=name, protocol="official", params=params, seed=seed,
                      values=curve(0.5, 0.9), seconds=secs, identity={"baseline": "half"}, **CIFAR_AL)
    _, checks = load_reference(REFERENCE)
    check = next(c for c in checks if c.id == "table2-pt4al-ratio")
    [outcome] = verify(load_sweep_runs(tmp_path / "synth"), [check])
    assert outcome.ours == pytest.approx(2 * 1.588) and "ratio to baseline half" in outcome.message


def test_recorded_phases_set_the_wallclock_columns(tmp_path):
    ident = {"baseline": "random", "phases": ["train", "evaluate"], "quirk_docs": {}}
    write_run(tmp_path, strategy="random", values=[0.5, 0.6], seconds=SECS, identity=ident)
    df = load_sweep_runs(tmp_path / "synth").cycles()
    assert T.phases_of(df) == ["train", "evaluate"]
    data = T.wallclock_data(df)
    assert T.wallclock_phases(data) == ["train", "evaluate"] and data["train_s"].iloc[0] == pytest.approx(2.0)
    assert list(T.wallclock_table(df, caption="", flagged=set(), name="wc").display.columns) == \
        ["runs", "train", "evaluate", "total", "× Random"]


def test_flag_meaning_comes_from_the_recorded_quirk_doc(tmp_path):
    docs = {"peek": "chooses the epoch by peeking at the test set"}
    write_run(tmp_path, strategy="random", quirks=["peek"], flags=["peek"], seed=0,
              identity={"baseline": "random", "phases": list(PHASES), "quirk_docs": docs})
    write_run(tmp_path, sweep="old", strategy="random", quirks=["peek"], flags=["peek"], seed=0)
    new = load_sweep_runs(tmp_path / "synth").runs
    old = load_sweep_runs(tmp_path / "old").runs
    assert "peek (random): chooses the epoch by peeking at the test set" in provenance(new).flags
    assert "peek (random): a flagged protocol switch" in provenance(old).flags  # legacy: no doc recorded


def test_reports_import_nothing_from_strategies():
    for path in sorted((REPO / "bench" / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module or ''}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "albench.strategies" or n.startswith("albench.strategies.") for n in names), path.name
