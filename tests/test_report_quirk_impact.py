"""The quirk impact table and figure of `albench report`, against a hand computation on synthetic
records of an ablated strategy ``pt4al`` (no training involved).

Sweep: 5 seeds, 3 cycles at 10, 20 and 30 labels. The ablation has three units: quirk ``a``, quirk
``b`` and the group ``g`` (quirks ``g1`` and ``g2``, removed together). Seed s of the variant with
every quirk (``pt4al@official``) scores O_s = [0.50, 0.60, 0.70] + 0.01 s; the other variants:

- without ``a``: O_s - [0.10, 0.01 s, 0]: differences official - without, in points, +10 at 10 labels
  (every seed), +s at 20 (0, 1, 2, 3, 4), 0 at 30;
- without ``b``: O_s + [0.01 (s + 1), 0, 0]: -(s + 1) at 10 (-1 .. -5), 0 after;
- without ``g``: O_s: 0 everywhere;
- paper: O_s - [0.20, 0.10, 0.05]: +20, +10, +5.

AUBC of one run over 10..30 labels: (v10 + 2 v20 + v30) / 4, so the AUBC difference is
(d10 + 2 d20 + d30) / 4: ``a``: 2.5 + 0.5 s (mean 3.5); ``b``: -(s + 1) / 4 (mean -0.75); ``g``: 0;
paper: (20 + 20 + 5) / 4 = 11.25.

Wilcoxon (two-sided, exact, zeros dropped): 5 differences of one sign give p = 2 / 2^5 = 0.0625;
``a`` at 20 labels has one zero, so 4 of one sign: p = 2 / 2^4 = 0.125; all zero: p = 1.

First query (al.initial = 10 labels; 3 classes): official [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] -> 4 3 3,
none missed; without ``a``: ten of class 0 -> 10 0 0, two classes missed.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest

from albench.reports import quirk_impact as qi
from albench.reports.data import class_counts, load_sweep_runs
from albench.reports.output import to_csv, to_latex, to_markdown
from albench.reports.report import build_report
from albench.reports.stats import bootstrap_mean_ci
from tests.report_synth import write_run

SEEDS = range(5)
UNITS = {"a": ["a"], "b": ["b"], "g": ["g1", "g2"]}
BASE = ["a", "b", "g1", "g2"]


def official(s):
    return np.array([0.50, 0.60, 0.70]) + 0.01 * s


VARIANTS = {  # name: (variant kind, unit, quirks, values(seed))
    "official": ("official", None, BASE, official),
    "no-a": ("without", "a", ["b", "g1", "g2"], lambda s: official(s) - [0.10, 0.01 * s, 0.0]),
    "no-b": ("without", "b", ["a", "g1", "g2"], lambda s: official(s) + [0.01 * (s + 1), 0.0, 0.0]),
    "no-g": ("without", "g", ["a", "b"], official),
    "paper": ("paper", None, [], lambda s: official(s) - [0.20, 0.10, 0.05]),
}
FIRST = {"official": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], "no-a": [0] * 10}


def _write(root, *, seeds=SEEDS, flagged=("official", "no-a", "no-g")):
    for name, (kind, unit, quirks, values) in VARIANTS.items():
        for s in seeds:
            removed = [q for q in BASE if q not in quirks]
            ident = {"ablation": {"of": "pt4al", "base": BASE, "units": UNITS, "variant": kind, "name": name,
                                  "unit": unit, "removed": removed}}
            arts = {"labeled_targets": np.array(FIRST[name] + [1] * 20)} if name in FIRST else {}
            write_run(root, strategy=f"pt4al@{name}", strategy_name="pt4al", seed=s, dataset="toy",
                      values=[float(v) for v in values(s)], initial=10, budget=10,
                      protocol="paper" if name == "paper" else "official", quirks=quirks,
                      flags=["best-on-test"] if name in flagged else [], identity=ident, artifacts=arts)
    write_run(root, strategy="random", seed=0, dataset="toy", values=[0.4, 0.5, 0.6], initial=10, budget=10)
    return root / "synth"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return load_sweep_runs(_write(tmp_path_factory.mktemp("quirk-impact")))


def _data(sweep):
    runs = sweep.runs_of("toy")
    (abl,) = qi.find_ablations(runs)
    counts, _ = class_counts([r for r in runs if r.complete], first_query=True)
    return abl, qi.quirk_impact_data(sweep.cycles("toy"), abl, counts)


def test_ablation_is_found_from_the_run_records(sweep):
    (abl,) = qi.find_ablations(sweep.runs_of("toy"))
    assert (abl.of, abl.top, abl.paper) == ("pt4al", "pt4al@official", "pt4al@paper")
    assert abl.units == UNITS
    assert abl.without == {"a": "pt4al@no-a", "b": "pt4al@no-b", "g": "pt4al@no-g"}
    assert [c for c, _ in abl.comparisons()] == ["a", "b", "g", "paper"]


HAND = {  # (comparison, point): (per-seed differences in points, Wilcoxon p)
    ("a", "10"): ([10] * 5, 0.0625), ("a", "20"): ([0, 1, 2, 3, 4], 0.125), ("a", "30"): ([0] * 5, 1.0),
    ("a", "AUBC"): ([2.5 + 0.5 * s for s in SEEDS], 0.0625),
    ("b", "10"): ([-(s + 1) for s in SEEDS], 0.0625), ("b", "20"): ([0] * 5, 1.0),
    ("b", "AUBC"): ([-(s + 1) / 4 for s in SEEDS], 0.0625),
    ("g", "10"): ([0] * 5, 1.0), ("g", "AUBC"): ([0] * 5, 1.0),
    ("paper", "10"): ([20] * 5, 0.0625), ("paper", "20"): ([10] * 5, 0.0625), ("paper", "30"): ([5] * 5, 0.0625),
    ("paper", "AUBC"): ([11.25] * 5, 0.0625),
}


@pytest.mark.parametrize("key", sorted(HAND))
def test_paired_differences_match_the_hand_computation(sweep, key):
    _, data = _data(sweep)
    row = data[(data["comparison"] == key[0]) & (data["point"] == key[1])]
    assert len(row) == 1
    row = row.iloc[0]
    diffs, p = HAND[key]
    assert row["seeds"] == 5 and row["seed_list"] == "0 1 2 3 4"
    got = [float(x) for x in row["diff_per_seed_pp"].split()]
    assert got == pytest.approx(diffs, abs=1e-9)
    assert row["mean_diff_pp"] == pytest.approx(np.mean(diffs), abs=1e-9)
    assert row["wilcoxon_p"] == pytest.approx(p)
    # the percentile bootstrap, recomputed by hand: 10,000 resamples of 5 seeds from default_rng(0)
    idx = np.random.default_rng(0).integers(0, 5, size=(10_000, 5))
    lo, hi = np.quantile(np.asarray(diffs, float)[idx].mean(axis=1), [0.025, 0.975])
    assert (row["ci_low_pp"], row["ci_high_pp"]) == pytest.approx((lo, hi), abs=1e-9)
    assert min(diffs) - 1e-9 <= row["ci_low_pp"] <= row["mean_diff_pp"] <= row["ci_high_pp"] <= max(diffs) + 1e-9


def test_removed_quirks_and_levels_are_recorded(sweep):
    _, data = _data(sweep)
    removed = data.groupby("comparison")["removed"].first().to_dict()
    assert removed == {"a": "a", "b": "b", "g": "g1 g2", "paper": "a b g1 g2"}
    r = data[(data["comparison"] == "a") & (data["point"] == "10")].iloc[0]
    assert r["mean_with_pct"] == pytest.approx(52.0) and r["mean_without_pct"] == pytest.approx(42.0)


def test_first_query_with_and_without_the_quirk(sweep):
    _, data = _data(sweep)
    a = data[data["comparison"] == "a"].iloc[0]
    assert a["first_query_with_per_class"] == "4 3 3"
    assert (a["first_query_with_min"], a["first_query_with_max"], a["first_query_with_missed"]) == (3, 4, 0.0)
    assert a["first_query_without_per_class"] == "10 0 0"
    assert (a["first_query_without_min"], a["first_query_without_max"]) == (0, 10)
    assert a["first_query_without_missed"] == 2.0
    b = data[data["comparison"] == "b"].iloc[0]
    assert b["first_query_without_per_class"] == ""  # no labeled_targets recorded: blank, not zeros


def test_table_renders_in_markdown_latex_and_csv(sweep):
    abl, data = _data(sweep)
    t = qi.quirk_impact_table(data, abl, metric="accuracy", caption="cap", flagged={"pt4al@official"},
                              name="quirk-impact-toy-pt4al")
    md = to_markdown(t)
    assert "| official (every quirk on) † |" in md
    assert "− g (g1, g2) †" in md and "− all (paper) †" in md
    assert "+10.00 [+10.00, +10.00] p=0.0625" in md  # a at 10 labels: constant +10, so a degenerate CI
    assert "Δ at 10" in md and "Δ AUBC" in md
    assert "10 0 0" in md and "4 3 3" in md
    assert "10,000 resamples" in t.full_caption() and "Wilcoxon signed-rank" in t.full_caption()
    assert "5 paired seeds" in t.full_caption()
    tex = to_latex(t)
    assert "\\begin{tabular}{lrrrrrrrr}" in tex and "official (every quirk on) $^\\dagger$" in tex
    assert "$\\Delta$ at 10" in tex and "$-$ all (paper)" in tex and "Δ" not in tex and "−" not in tex
    csv = pd.read_csv(io.StringIO(to_csv(t)), comment="#")
    assert len(csv) == len(data) and {"mean_diff_pp", "ci_low_pp", "ci_high_pp", "wilcoxon_p"} <= set(csv.columns)


def test_report_writes_the_quirk_impact_table_and_figure(tmp_path):
    root = _write(tmp_path)
    index = build_report(root, tmp_path / "report", tsne_max=50)
    names = {(a.kind, a.name) for a in index.artefacts}
    assert ("table", "quirk-impact-toy-pt4al") in names and ("figure", "quirk-impact-toy-pt4al") in names
    files = {p.name for a in index.artefacts if a.name == "quirk-impact-toy-pt4al" for p in a.files}
    assert files == {f"quirk-impact-toy-pt4al.{e}" for e in ("md", "tex", "csv", "png", "pdf")}
    assert "Quirk impact" in (tmp_path / "report" / "index.md").read_text()


def test_partial_ablation_uses_the_seeds_both_variants_have(tmp_path):
    """Seed 4 of no-a is missing: its comparison pairs seeds 0-3 and says so."""
    root = _write(tmp_path)
    shutil.rmtree(root / "toy" / "pt4al@no-a" / "seed-4")
    sweep = load_sweep_runs(root)
    abl, data = _data(sweep)
    a10 = data[(data["comparison"] == "a") & (data["point"] == "10")].iloc[0]
    assert a10["seeds"] == 4 and a10["seed_list"] == "0 1 2 3"
    assert data[(data["comparison"] == "b") & (data["point"] == "10")].iloc[0]["seeds"] == 5
    t = qi.quirk_impact_table(data, abl, metric="accuracy", caption="", flagged=set(), name="x")
    assert "(n=4)" in to_markdown(t)


def test_bootstrap_ci_is_seeded_and_degenerate_cases():
    assert bootstrap_mean_ci([1.0, 2.0, 3.0]) == bootstrap_mean_ci([1.0, 2.0, 3.0])
    assert bootstrap_mean_ci([2.0, 2.0]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_mean_ci([1.0])))
