"""Figure functions on small frames: every file written and non-empty, including the layouts only
large sweeps reach (the class-share heatmap beyond five strategies)."""

from __future__ import annotations

import pandas as pd
import pytest

from albench.reports import figures as F
from albench.reports.output import save_figure
from albench.reports.tables import class_distribution_data


@pytest.mark.slow
def test_class_distribution_figure_switches_to_a_heatmap_for_many_strategies(tmp_path):
    rows = [{"series": f"s{i}", "seed": 0, "class": c, "count": 1 + (i + c) % 3} for i in range(7) for c in range(4)]
    data = class_distribution_data(pd.DataFrame(rows))
    styles = F.style_map(sorted(data["series"].unique()))
    for n, name in ((7, "many"), (2, "few")):
        part = data[data["series"].isin([f"s{i}" for i in range(n)])]
        fig = F.class_distribution_figure(part, dataset="toy", caption="Protocol: paper.", flagged={"s0"},
                                          styles=styles, class_names={0: "airplane"})
        kinds = {type(c).__name__ for c in fig.axes[0].get_children()}
        assert ("QuadMesh" in kinds) == (n > 5)  # the heatmap is a QuadMesh, bars are Rectangles
        paths = save_figure(fig, tmp_path, name)
        assert all(p.stat().st_size > 1000 for p in paths)
