"""The cold-start table's first-query class counts, against hand counts on a synthetic sweep.

Sweep (initial 4, budget 2, 2 cycles; 3 classes): the first 4 entries of each run's labeled_targets are
the cold-start query, the last 2 the cycle-1 query (which must not be counted).

- random seed 0: first [0, 0, 1, 1] -> counts 2 2 0 (class 2 missed); seed 1: [0, 1, 2, 2] -> 1 1 2.
  Mean per class 1.5 1.5 1; min 0, max 2; classes missed (1 + 0) / 2 = 0.5.
- typiclust seed 0 and 1: [0, 1, 2, 0] -> 2 1 1 both; the cycle-1 tail [2, 2] is ignored.
- probcover seed 0 complete [2, 2, 2, 2]; seed 1 complete but its artifact is shorter than initial,
  so it is left out: counts from 1 seed, marked (n=1).
"""

from __future__ import annotations

import numpy as np
import pytest

from albench.reports import tables as T
from albench.reports.data import class_counts, load_sweep_runs
from albench.reports.output import to_markdown
from albench.reports.report import build_report
from tests.report_synth import write_run

ARTS = {
    ("random", 0): [0, 0, 1, 1, 2, 2],
    ("random", 1): [0, 1, 2, 2, 0, 0],
    ("typiclust", 0): [0, 1, 2, 0, 2, 2],
    ("typiclust", 1): [0, 1, 2, 0, 2, 2],
    ("probcover", 0): [2, 2, 2, 2, 0, 1],
    ("probcover", 1): [2, 2, 2],
}


@pytest.fixture
def root(tmp_path):
    for (strategy, seed), t in ARTS.items():
        write_run(tmp_path, strategy=strategy, seed=seed, dataset="toy", initial=4, budget=2,
                  values=[0.4 + 0.1 * seed, 0.6], artifacts={"labeled_targets": np.array(t)})
    return tmp_path / "synth"


def test_class_counts_first_query_counts_only_the_initial_entries(root):
    runs = load_sweep_runs(root).runs_of("toy")
    counts, unit = class_counts(runs, first_query=True)
    assert unit == "images"
    got = counts.pivot_table(index=["series", "seed"], columns="class", values="count").astype(int)
    assert got.loc[("random", 0)].tolist() == [2, 2, 0]
    assert got.loc[("random", 1)].tolist() == [1, 1, 2]
    assert got.loc[("typiclust", 0)].tolist() == [2, 1, 1]
    assert got.loc[("probcover", 0)].tolist() == [0, 0, 4]
    assert ("probcover", 1) not in got.index  # shorter than al.initial: left out, not counted short
    # without first_query every queried label counts, as the class-distribution table always did
    everything, _ = class_counts(runs)
    assert int(everything[(everything.series == "typiclust") & (everything.seed == 0)]["count"].sum()) == 6


def test_cold_start_table_shows_first_query_class_counts(root):
    sweep = load_sweep_runs(root)
    runs = sweep.runs_of("toy")
    counts, unit = class_counts(runs, first_query=True)
    t = T.cold_start_table(sweep.cycles("toy"), metric="accuracy", caption="cap", flagged=set(), name="cs",
                           first_counts=counts, unit=unit)
    d = t.display
    assert d.loc["random", "first query per class (images)"] == "1.5 1.5 1"
    assert d.loc["random", "first query min / max"] == "0 / 2"
    assert d.loc["random", "classes missed"] == "0.5"
    assert d.loc["typiclust", "first query per class (images)"] == "2 1 1"
    assert d.loc["typiclust", "classes missed"] == "0"
    assert d.loc["probcover", "first query per class (images)"] == "0 0 4 (n=1)"
    assert d.loc["probcover", "classes missed"] == "2 (n=1)"
    assert d.loc["random", "mean accuracy (%)"] == "45.00 ± 7.07"  # the metric columns are unchanged
    row = t.data.set_index("series").loc["random"]
    assert (row["first_query_min"], row["first_query_max"], row["first_query_seeds"]) == (0, 2, 2)
    assert row["first_query_per_class_mean"] == "1.5 1.5 1"
    assert "first al.initial labels" in t.full_caption()
    assert "first query per class (images)" in to_markdown(t)


def test_cold_start_table_without_counts_keeps_its_columns(root):
    t = T.cold_start_table(load_sweep_runs(root).cycles("toy"), metric="accuracy", caption="cap", flagged=set(),
                           name="cs")
    assert list(t.display.columns) == ["labeled", "mean accuracy (%)", "min / max (%)", "seeds"]
    assert t.notes == []


def test_many_classes_list_only_min_max_and_missed(root):
    import pandas as pd

    n = T.MAX_LISTED_CLASSES + 1
    counts = pd.DataFrame([{"series": "random", "seed": 0, "class": c, "count": 1} for c in range(n)])
    t = T.cold_start_table(load_sweep_runs(root).cycles("toy"), metric="accuracy", caption="cap", flagged=set(),
                           name="cs", first_counts=counts)
    assert "first query per class (images)" not in t.display.columns
    assert t.display.loc["random", "first query min / max"] == "1 / 1 (n=1)"
    assert t.display.loc["typiclust", "first query min / max"] == ""


def test_report_writes_first_query_columns(root, tmp_path):
    build_report(root, tmp_path / "report")
    md = next((tmp_path / "report").rglob("cold-start-toy.md")).read_text()
    assert "first query per class (images)" in md and "classes missed" in md
    assert "| typiclust |" in md and "2 1 1" in md


def test_first_query_pixels_sum_only_the_initial_images(tmp_path):
    px = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 5], [9, 9, 9], [9, 9, 9]])  # 6 queried images x 3 classes
    write_run(tmp_path, strategy="random", dataset="seg", initial=4, budget=2, values=[0.3, 0.4],
              metric="miou", artifacts={"labeled_class_pixels": px})
    counts, unit = class_counts(load_sweep_runs(tmp_path / "synth").runs_of("seg"), first_query=True)
    assert unit == "pixels"
    assert counts.sort_values("class")["count"].tolist() == [5, 3, 7]
