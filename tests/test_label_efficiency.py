"""Label efficiency: labels to reach a threshold by hand (both conventions, "> N" when never reached),
the mean-over-seeds curve, the report table, and the labels-to-reach check of ``albench verify``
against the committed Gal et al. 2017 reference (synthetic records with known curves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from albench.cli import main
from albench.reports.data import load_sweep_runs
from albench.reports.efficiency import efficiency_data, efficiency_table, labels_to_reach, mean_curve
from albench.reports.verify import FAIL, MISSING, PASS, load_reference, verify
from tests.conftest import REPO
from tests.report_synth import write_run

REFERENCE = REPO / "results" / "reference" / "gal2017-mnist.yaml"
COUNTS = [20, 30, 40, 50]


def test_labels_to_reach_by_hand():
    values = [80.0, 88.0, 92.0, 95.0]
    assert labels_to_reach(COUNTS, values, 90, "first").labels == 40
    assert labels_to_reach(COUNTS, values, 90, "interpolated").labels == pytest.approx(35.0)  # 30 + 2/4 x 10
    assert labels_to_reach(COUNTS, values, 95, "first").labels == 50  # at the threshold counts as reached
    assert labels_to_reach(COUNTS, values, 95, "interpolated").labels == pytest.approx(50.0)
    assert labels_to_reach(COUNTS, values, 70, "interpolated").labels == 20  # reached at the first count
    # the first crossing counts, even if the curve dips afterwards
    assert labels_to_reach(COUNTS, [80.0, 91.0, 89.0, 93.0], 90, "first").labels == 30
    never = labels_to_reach(COUNTS, values, 96, "interpolated")
    assert not never.reached and never.labels is None and never.text() == "> 50"
    assert never.minus(20).text() == "> 30"
    assert labels_to_reach(COUNTS, values, 90, "interpolated").minus(20).text(1) == "15.0"
    with pytest.raises(ValueError):
        labels_to_reach([20, 20], [1.0, 2.0], 1.5)
    with pytest.raises(ValueError):
        labels_to_reach(COUNTS, [80.0, float("nan"), 92.0, 95.0], 90)
    with pytest.raises(ValueError, match="convention"):
        labels_to_reach(COUNTS, values, 90, "nearest")


def test_mean_curve_stops_where_a_seed_stops():
    c, v = mean_curve([(np.array([20, 30, 40]), np.array([80.0, 90.0, 94.0])),
                       (np.array([20, 30]), np.array([82.0, 86.0]))])
    assert c.tolist() == [20, 30] and v.tolist() == [81.0, 88.0]


def _frame(curves: dict[str, list[list[float]]]) -> pd.DataFrame:
    rows = []
    for series, seeds in curves.items():
        for seed, vals in enumerate(seeds):
            for c, v in zip(COUNTS, vals):
                rows.append({"series": series, "seed": seed, "n_labeled": c, "value": v / 100})
    return pd.DataFrame(rows)


def test_the_report_table_shows_both_conventions_per_seed_and_on_the_mean_curve():
    df = _frame({"bald": [[80, 88, 92, 95], [84, 92, 94, 96]], "random": [[80, 85, 88, 89], [80, 86, 91, 92]]})
    data = efficiency_data(df, [90])
    mc = data[(data.series == "bald") & (data.scope == "mean-curve") & (data.convention == "interpolated")]
    assert mc["labels"].item() == pytest.approx(30 + (90 - 90) / (93 - 90) * 10)  # mean curve 82, 90, 93, 95.5
    t = efficiency_table(df, thresholds=[90], metric="accuracy", caption="c", flagged=set(), name="e")
    row = t.display.loc["bald"]
    assert row["90%, first: mean curve"] == "30"
    assert row["90%, first: per seed"] == "40 · 30 (mean 35)"
    assert row["90%, interpolated: per seed"] == "35.0 · 27.5 (mean 31.2)"
    rnd = t.display.loc["random"]
    assert rnd["90%, first: per seed"] == "> 50 · 40"  # one seed never reached: no mean
    assert rnd["90%, first: mean curve"] == "50"  # mean curve 80, 85.5, 89.5, 90.5: reached at 50
    assert rnd["90%, interpolated: mean curve"] == "45.0"  # 40 + 0.5 / 1 x 10
    assert "'> N': not reached" in t.full_caption()


def test_report_writes_the_table_for_reach_thresholds(tmp_path):
    root = tmp_path / "res"
    for seed, vals in enumerate([[0.8, 0.88, 0.92, 0.95], [0.84, 0.92, 0.94, 0.96]]):
        write_run(root, strategy="bald", seed=seed, values=vals, initial=20, budget=10)
    assert main(["report", str(root / "synth"), "--out", str(tmp_path / "rep"), "--quiet", "--reach", "90",
                 "--reach", "95"]) == 0
    md = (tmp_path / "rep" / "tables" / "label-efficiency-digits.md").read_text()
    assert "95%, first: mean curve" in md and "| bald |" in md
    assert (tmp_path / "rep" / "figures" / "error-curves-digits.png").stat().st_size > 1000
    assert main(["report", str(root / "synth"), "--out", str(tmp_path / "rep2"), "--quiet", "--reach", "120"]) == 2


MNIST_AL = dict(dataset="mnist", model="dbal-cnn", epochs=50, batch_size=128, initial=20, budget=10)


def _gal_runs(root: Path, strategy: str, curves: list[list[float]]) -> Path:
    for seed, vals in enumerate(curves):
        write_run(root, sweep="gal", strategy=strategy, seed=seed, values=vals, cycles=101, state="running",
                  **MNIST_AL)
    return root / "gal"


def _outcome(results: Path, check_id: str):
    _, checks = load_reference(REFERENCE)
    (check,) = [c for c in checks if c.id == check_id]
    (o,) = verify(load_sweep_runs(results), [check])
    return o


def test_reference_holds_table_1():
    _, checks = load_reference(REFERENCE)
    got = {c.id: (c.value, c.threshold) for c in checks}
    assert got["table1-bald-10pct"] == (145, 90) and got["table1-bald-5pct"] == (335, 95)
    assert got["table1-variation-ratios-10pct"] == (120, 90) and got["table1-mean-std-5pct"] == (695, 95)
    assert got["table1-random-10pct"] == (255, 90) and got["table1-random-5pct"] == (835, 95)
    assert len(checks) == 10
    assert all(c.count == "acquired" and c.convention == "interpolated" and c.curve == "mean" for c in checks)


def test_verify_labels_to_reach_pass_fail_and_undecided(tmp_path, capsys):
    # accuracy rises 2 points per acquisition from 70%: 90% at acquisition 10 (labels 120 = 100 acquired)
    rise = [min(0.99, 0.70 + 0.02 * c) for c in range(30)]
    results = _gal_runs(tmp_path / "a", "variation-ratios", [rise, rise])
    o = _outcome(results, "table1-variation-ratios-10pct")  # 120 +- 30
    assert o.status == PASS and o.ours == pytest.approx(100.0) and o.n == 2
    o = _outcome(results, "table1-variation-ratios-5pct")  # 95% at acquisition 12.5: 125 acquired vs 295 +- 73.75
    assert o.status == FAIL and o.ours == pytest.approx(125.0)
    # a curve that stays below 90% for 40 acquisitions: "> 390 acquired", already beyond 255 + 63.75
    flat = [0.85] * 41
    o = _outcome(_gal_runs(tmp_path / "b", "random", [flat, flat]), "table1-random-10pct")
    assert o.status == FAIL and o.ours is None and o.ours_text == "> 400"
    # below 90% for 20 acquisitions only: "> 190", not yet decidable against 255 +- 63.75
    o = _outcome(_gal_runs(tmp_path / "c", "random", [flat[:20], flat[:20]]), "table1-random-10pct")
    assert o.status == MISSING and o.ours_text == "> 190" and "not reached" in o.message
    assert main(["verify", str(tmp_path / "b" / "gal"), "--reference", str(REFERENCE), "--only",
                 "table1-random-10pct"]) == 1
    out = capsys.readouterr().out
    assert "> 400" in out and "FAIL" in out


def test_verify_refuses_another_scale(tmp_path):
    rise = [min(0.99, 0.70 + 0.02 * c) for c in range(30)]
    write_run(tmp_path, sweep="gal", strategy="bald", values=rise, **{**MNIST_AL, "epochs": 10})
    o = _outcome(tmp_path / "gal", "table1-bald-10pct")
    assert o.status == "refused" and "epochs 10" in o.message
