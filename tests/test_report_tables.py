"""Every report table value against a hand computation, on synthetic records with known numbers.

The sweep (initial 10, budget 10, 3 cycles -> labeled 10, 20, 30):

- random (paper protocol, CPU): seed 0 values 0.50 0.70 0.80, seed 1 0.40 0.60 0.90; per cycle
  1 s train + 0.5 s evaluate (4.5 s per run); queried labels [0,0,1,1,2,2] and [0,1,1,1,2,2].
- pt4al (official, quirks string_sort + best_on_test, flagged, GPU): seed 0 0.60 0.80 0.90, seed 1
  0.62 0.78 0.94; pretext 2 s at cycle 0, 1 s train per cycle, 0.5 s inference and 0.25 s select
  at cycles 1-2 (6.5 s recorded per run). Seed 0's pretext losses came from the cache (training
  cost 100 s), seed 1 trained them (miss).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from albench.reports import tables as T
from albench.reports.data import charged_pretext_seconds, class_counts, find_missing, load_sweep_runs
from albench.reports.output import Table, to_csv, to_latex, to_markdown
from albench.reports.provenance import provenance
from tests.report_synth import write_run

SQRT2 = math.sqrt(2)


def build(root):
    common = dict(sweep="synth", dataset="toy", initial=10, budget=10)
    rnd_secs = {"train": [1, 1, 1], "evaluate": [0.5, 0.5, 0.5]}
    write_run(root, strategy="random", seed=0, values=[0.50, 0.70, 0.80], seconds=rnd_secs,
              artifacts={"labeled_targets": np.array([0, 0, 1, 1, 2, 2])}, **common)
    write_run(root, strategy="random", seed=1, values=[0.40, 0.60, 0.90], seconds=rnd_secs,
              artifacts={"labeled_targets": np.array([0, 1, 1, 1, 2, 2])}, **common)
    pt_secs = {"pretext": [2, 0, 0], "train": [1, 1, 1], "inference": [0, 0.5, 0.5], "select": [0, 0.25, 0.25]}
    pt = dict(strategy="pt4al", protocol="official", quirks=["string_sort", "best_on_test"],
              flags=["best_on_test", "best-on-test"], seconds=pt_secs, device="cuda:0", device_name="NVIDIA H100",
              **common)
    write_run(root, seed=0, values=[0.60, 0.80, 0.90], prepare={"pretext_cache": "hit", "pretext_train_seconds": 100.0},
              artifacts={"labeled_targets": np.array([0, 1, 2, 0, 1, 2])}, **pt)
    write_run(root, seed=1, values=[0.62, 0.78, 0.94], prepare={"pretext_cache": "miss", "pretext_train_seconds": 2.0},
              artifacts={"labeled_targets": np.array([2, 2, 2, 1, 1, 0])}, **pt)
    return root / "synth"


@pytest.fixture
def sweep(tmp_path):
    return load_sweep_runs(build(tmp_path))


@pytest.fixture
def df(sweep):
    return sweep.cycles("toy")


def _row(frame, **keys):
    sel = frame
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, keys
    return sel.iloc[0]


def test_curve_data_mean_std_min_max_in_percent(df):
    data = T.curve_data(df)
    r = _row(data, series="random", n_labeled=10)
    assert (r["n"], r["mean"], r["min"], r["max"]) == (2, pytest.approx(45.0), pytest.approx(40.0), pytest.approx(50.0))
    assert r["std"] == pytest.approx(5 * SQRT2)  # sample std of 50, 40
    r = _row(data, series="pt4al", n_labeled=30)
    assert r["mean"] == pytest.approx(92.0) and r["std"] == pytest.approx(2 * SQRT2)


def test_curve_table_display_marks_flagged_strategies(df):
    t = T.curve_table(df, metric="accuracy", caption="cap", flagged={"pt4al"}, name="curves")
    assert t.display.loc["random", "10"] == "45.00 ± 7.07"
    assert t.display.loc["pt4al †", "20"] == "79.00 ± 1.41"
    assert list(t.display.columns) == ["10", "20", "30"]


def test_cold_start_table(df):
    data = T.cold_start_data(df)
    r = _row(data, series="pt4al")
    assert (r["n"], r["n_labeled"]) == (2, 10)
    assert r["mean"] == pytest.approx(61.0) and r["std"] == pytest.approx(SQRT2)
    assert (r["min"], r["max"]) == (pytest.approx(60.0), pytest.approx(62.0))
    t = T.cold_start_table(df, metric="accuracy", caption="cap", flagged=set(), name="cs")
    assert t.display.loc["random", "min / max (%)"] == "40.00 / 50.00"
    assert t.display.loc["random", "mean accuracy (%)"] == "45.00 ± 7.07"


def test_charged_pretext_seconds_rules():
    assert charged_pretext_seconds(2.0, {}) == (2.0, False)
    assert charged_pretext_seconds(2.0, {"pretext_cache": "miss", "pretext_train_seconds": 2.0}) == (2.0, False)
    # a hit without a recorded wait: the wait overlaps the training, so the larger of the two
    assert charged_pretext_seconds(0.5, {"pretext_cache": "hit", "pretext_train_seconds": 100.0}) == (100.0, True)
    assert charged_pretext_seconds(120.0, {"pretext_cache": "hit", "pretext_train_seconds": 100.0}) == (120.0, True)
    # with the wait recorded: recorded - wait + training
    assert charged_pretext_seconds(
        80.5, {"pretext_cache": "hit", "pretext_train_seconds": 100.0, "pretext_wait_seconds": 80.0}) == (100.5, True)


def test_wallclock_totals_phases_and_ratio_to_random(df):
    per_run = T.run_seconds(df)
    assert _row(per_run, series="random", seed=0)["total"] == pytest.approx(4.5)
    # seed 0 of pt4al: recorded 6.5 s, pretext 2 s recorded, 100 s charged for the cached training
    r0 = _row(per_run, series="pt4al", seed=0)
    assert r0["pretext"] == pytest.approx(100.0) and r0["total"] == pytest.approx(104.5) and r0["cache_reused"]
    assert r0["incurred"] == pytest.approx(6.5) and r0["cached_artifacts"] == "pretext-losses"
    assert _row(per_run, series="pt4al", seed=1)["total"] == pytest.approx(6.5)
    data = T.wallclock_data(df)
    pt = _row(data, series="pt4al")
    assert pt["runs"] == 2
    assert pt["pretext_s"] == pytest.approx(51.0)
    assert pt["train_s"] == pytest.approx(3.0)
    assert pt["inference_s"] == pytest.approx(1.0)
    assert pt["select_s"] == pytest.approx(0.5)
    assert pt["total_s"] == pytest.approx(55.5)
    assert pt["total_std_s"] == pytest.approx(np.std([104.5, 6.5], ddof=1))
    assert pt["ratio_to_random"] == pytest.approx(55.5 / 4.5)
    assert _row(data, series="random")["ratio_to_random"] == pytest.approx(1.0)
    t = T.wallclock_table(df, caption="cap", flagged=set(), name="wc")
    assert t.display.loc["pt4al", "× Random"] == "12.33"
    assert t.display.loc["random", "evaluate"] == "1.5 s"
    assert t.display.loc["pt4al", "incurred"] == T.fmt_duration(pt["incurred_s"])
    assert any(n.startswith("Charged time:") and "pretext-losses" in n and "pt4al 1 of 2" in n for n in t.notes)


def test_wallclock_without_random_has_no_ratio(df):
    data = T.wallclock_data(df[df["series"] != "random"])
    assert np.isnan(data["ratio_to_random"]).all()


def test_fmt_duration():
    assert T.fmt_duration(12.34) == "12.3 s"
    assert T.fmt_duration(600) == "10.0 min"
    assert T.fmt_duration(2 * 3600 + 16 * 60) == "2 h 16 min"


def test_class_distribution(sweep):
    counts, unit = class_counts([r for r in sweep.runs if r.complete])
    assert unit == "images"
    data = T.class_distribution_data(counts)
    # random: counts [2,2,2] and [1,3,2] -> mean [1.5, 2.5, 2.0] of 6
    r = data[data["series"] == "random"].set_index("class")
    assert r.loc[0, "mean_count"] == pytest.approx(1.5)
    assert list(r["fraction"]) == pytest.approx([0.25, 2.5 / 6, 2 / 6])
    p = np.array([0.25, 2.5 / 6, 2 / 6])
    assert r["balance"].iloc[0] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
    # pt4al: [2,2,2] and [1,2,3] -> mean [1.5, 2, 2.5]
    assert list(data[data["series"] == "pt4al"]["mean_count"]) == pytest.approx([1.5, 2.0, 2.5])
    t = T.class_distribution_table(counts, caption="cap", flagged=set(), name="cd", class_names={0: "cat"})
    assert t.display.loc["random", "cat"] == "25.0"
    assert t.display.loc["random", "seeds"] == "2"


def test_class_distribution_of_a_perfectly_balanced_query_is_one():
    counts = pd.DataFrame({"series": ["a"] * 4, "seed": [0] * 4, "class": [0, 1, 2, 3], "count": [5, 5, 5, 5]})
    assert T.class_distribution_data(counts)["balance"].iloc[0] == pytest.approx(1.0)


def test_aubc_table_and_wilcoxon(df):
    per_run = T.aubc_per_run(df)
    assert _row(per_run, series="random", seed=0)["value"] == pytest.approx(67.5)
    assert _row(per_run, series="random", seed=1)["value"] == pytest.approx(62.5)
    assert _row(per_run, series="pt4al", seed=0)["value"] == pytest.approx(77.5)
    assert _row(per_run, series="pt4al", seed=1)["value"] == pytest.approx(78.0)
    t = T.aubc_table(df, metric="accuracy", caption="cap", flagged=set(), name="a")
    assert t.display.loc["random", "AUBC accuracy (%)"] == "65.00 ± 3.54"
    w = T.wilcoxon_table(df, caption="cap", flagged=set(), name="w")
    row = w.data.iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("pt4al", "random", 2)
    assert row["mean_diff"] == pytest.approx((10.0 + 15.5) / 2)
    assert row["pvalue"] == pytest.approx(0.5) and row["outcome"] == "tie"
    assert any("smallest two-sided p" in n for n in w.notes)  # 2 seeds: cannot reach 0.05, said so


def test_aubc_leaves_out_unfinished_runs(tmp_path):
    write_run(tmp_path, strategy="random", seed=0, values=[0.5, 0.7, 0.8])
    write_run(tmp_path, strategy="random", seed=1, values=[0.5], cycles=3, state="running")
    df = load_sweep_runs(tmp_path / "synth").cycles()
    per_run = T.aubc_per_run(df)
    assert list(per_run["seed"]) == [0]
    # but curves use the cycle it finished
    assert _row(T.curve_data(df), series="random", n_labeled=10)["n"] == 2


def test_win_tie_loss_table_cells(df):
    t, (wins, ties, losses) = T.win_tie_loss_table(df, caption="cap", flagged=set(), name="wtl")
    assert t.display.loc["pt4al", "random"] == "0/3/0"  # 2 seeds: every count is a tie
    assert t.display.loc["pt4al", "pt4al"] == "–"
    assert set(t.data.columns) == {"a", "b", "wins", "ties", "losses"}


def test_mean_paired_difference(df):
    m = T.mean_paired_difference(df)
    # pt4al - random per (labeled, seed): 10, 22, 10, 18, 10, 4 pp
    assert m.loc["pt4al", "random"] == pytest.approx(74 / 6)
    assert m.loc["random", "pt4al"] == pytest.approx(-74 / 6)
    assert np.isnan(m.loc["pt4al", "pt4al"])


def test_spearman_table():
    per_run = pd.DataFrame({"series": ["pt4al", "pt4al"], "seed": [0, 1], "rho": [0.7, 0.8], "n_test": [100, 100]})
    t = T.spearman_table(per_run, caption="cap", flagged=set(), name="s")
    assert t.display.loc["pt4al", "ρ"] == f"0.750 ± {np.std([0.7, 0.8], ddof=1):.3f}"
    assert t.data.iloc[0]["mean"] == pytest.approx(0.75)


def test_provenance_states_protocol_quirks_flags_scale_and_hardware(sweep):
    text = provenance(sweep.runs).text()
    assert "official with quirks string_sort, best_on_test for pt4al" in text
    assert "paper (no quirks) for random" in text
    assert "† best-on-test (pt4al)" in text and "test set" in text
    assert "small-cnn, 15 epochs, batch 32, 10 initial + 10 x 2 labels (3 cycles)" in text
    assert "2 runs on NVIDIA H100 (GPU)" in text and "2 runs on Test CPU (CPU, 1 thread)" in text
    assert "2 seeds per strategy" in text


def test_provenance_states_a_floor_on_optimizer_steps(tmp_path):
    """A sweep run with train.min_steps trains small labeled sets longer than train.epochs: the scale says so."""
    for seed in (0, 1):
        write_run(tmp_path, seed=seed, epochs=60, min_steps=300)
    text = provenance(load_sweep_runs(tmp_path / "synth").runs).text()
    assert "small-cnn, 60 epochs or more, at least 300 optimizer steps a cycle, batch 32" in text


def test_table_writers_carry_the_caption():
    data = pd.DataFrame({"series": ["a_b"], "mean": [45.0]})
    disp = pd.DataFrame({"mean (%)": ["45.00 ± 7.07"]}, index=pd.Index(["a_b †"], name="strategy"))
    t = Table(name="x", title="A title", caption="Protocol: paper.", data=data, display=disp, notes=["50% note."])
    md = to_markdown(t)
    assert md.startswith("**A title.** Protocol: paper. 50% note.")
    assert "| strategy | mean (%) |" in md and "| a_b † | 45.00 ± 7.07 |" in md
    tex = to_latex(t)
    assert r"50\% note." in tex and r"a\_b $^\dagger$" in tex and r"45.00 $\pm$ 7.07" in tex
    assert r"\begin{tabular}{lr}" in tex
    csv = to_csv(t)
    assert csv.startswith("# A title\n# Protocol: paper. 50% note.\n")
    import io

    back = pd.read_csv(io.StringIO(csv), comment="#")
    pd.testing.assert_frame_equal(back, data)


def test_find_missing_lists_absent_and_unfinished_runs(tmp_path):
    write_run(tmp_path, strategy="random", seed=0)
    write_run(tmp_path, strategy="random", seed=1, values=[0.5], cycles=3, state="running")
    write_run(tmp_path, strategy="entropy", seed=0)
    sweep = load_sweep_runs(tmp_path / "synth")
    missing = {(m.strategy, m.seed): m for m in find_missing(sweep)}
    assert set(missing) == {("random", 1), ("entropy", 1)}
    assert missing[("entropy", 1)].state == "absent"
    assert missing[("random", 1)].state == "running"
    assert "1/3 cycles recorded" in missing[("random", 1)].line()
    stopped = write_run(tmp_path, strategy="margin", seed=0, values=[0.5, 0.6], cycles=3, state="stopped")
    (stopped / "status.json").write_text(json.dumps({"state": "stopped", "labels": 20}))
    note = {(m.strategy, m.seed): m for m in find_missing(load_sweep_runs(tmp_path / "synth"))}[("margin", 0)]
    assert note.state == "stopped" and "2/3 cycles recorded; left unfinished at 20 labels by --stop-at-labels; rerun" in \
        note.line()
    # with the plan given, a strategy none of whose runs started is listed too
    plan = [("synth", "digits", s, seed) for s in ("random", "entropy", "margin") for seed in (0, 1)]
    names = {(m.strategy, m.seed) for m in find_missing(sweep, plan)}
    assert {("margin", 0), ("margin", 1)} <= names


def test_unreadable_run_folders_are_listed_not_fatal(tmp_path):
    write_run(tmp_path, strategy="random", seed=0)
    bad = write_run(tmp_path, strategy="random", seed=1)
    (bad / "run.json").write_text("{not json")
    sweep = load_sweep_runs(tmp_path / "synth")
    assert [r.seed for r in sweep.runs] == [0]
    assert sweep.unreadable and sweep.unreadable[0][0] == bad


def test_class_counts_of_segmentation_runs_count_labeled_pixels(tmp_path):
    px = np.array([[10, 0, 5], [20, 5, 0]])  # 2 queried images x 3 classes
    write_run(tmp_path, strategy="random", seed=0, artifacts={"labeled_class_pixels": px})
    counts, unit = class_counts(load_sweep_runs(tmp_path / "synth").runs)
    assert unit == "pixels"
    assert list(counts["count"]) == [30, 5, 5]
    t = T.class_distribution_table(counts, caption="cap", flagged=set(), name="cd", unit="pixels")
    assert "labeled pixels" in t.title and t.display.loc["random", "0"] == "75.0"


def test_provenance_names_the_source_commit_and_how_it_was_known(tmp_path):
    """A run from a work tree names its commit (and '(dirty)'); one from a git-archive export says
    '(archive)'; one whose source is unknown says so."""
    import json as _json
    for seed, git in enumerate(({"sha": "a" * 40, "dirty": True, "source": "git"},
                                {"sha": "b" * 40, "dirty": None, "source": "archive"},
                                {"sha": None, "dirty": None, "source": None})):
        d = write_run(tmp_path, seed=seed)
        env = _json.loads((d / "env.json").read_text())
        (d / "env.json").write_text(_json.dumps({**env, "git": git}))
    text = provenance(load_sweep_runs(tmp_path / "synth").runs).text()
    assert "albench git aaaaaaa (dirty), bbbbbbb (archive), unknown" in text
