"""Report snags found on real data: class names on the class-distribution figure and table, curve styles
that stay distinct with 12 strategies, and t-SNE panels capped and computed in parallel."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from albench.reports import figures as F
from albench.reports.data import load_sweep_runs
from albench.reports.report import _class_names
from albench.reports.tsne import DEFAULT_POINTS, tsne_input, tsne_panels, tsne_points
from tests.report_synth import write_run

TWELVE = ["random", "least-confidence", "entropy", "margin", "pt4al", "typiclust", "probcover", "coreset",
          "learning-loss", "vaal", "badge", "bald"]


def test_twelve_strategies_keep_distinct_styles():
    styles = F.style_map(sorted(TWELVE), baselines={"random"})
    assert styles["random"]["color"] == F.BASELINE["color"] and styles["random"]["ls"] == "--"
    others = [s for s in TWELVE if s != "random"]
    look = {s: (tuple(np.round(styles[s]["color"], 4)), str(styles[s]["ls"])) for s in others}
    assert len(set(look.values())) == len(others)  # no two share colour and line style
    assert len({styles[s]["marker"] for s in TWELVE}) == 12  # nor a marker
    assert all(styles[s]["ls"] != "--" for s in others)  # dashes stay the baseline's
    # series drawn with the same line style differ in hue by at least tab10's closest pair
    for a, b in itertools.combinations(others, 2):
        if styles[a]["ls"] == styles[b]["ls"]:
            assert np.linalg.norm(np.subtract(styles[a]["color"], styles[b]["color"])) > 0.26, (a, b)
    # the pairs the issue saw as one colour
    for a, b in (("coreset", "typiclust"), ("pt4al", "learning-loss")):
        assert look[a] != look[b] and styles[a]["marker"] != styles[b]["marker"]


def test_thirty_series_never_share_colour_and_line_style():
    names = [f"s{i:02d}" for i in range(30)]
    styles = F.style_map(names)
    assert len({(tuple(np.round(st["color"], 4)), str(st["ls"])) for st in styles.values()}) == 30


def _labeled_run(root, dataset, strategy="random", seed=0, identity=None):
    q = {0: np.arange(10), 1: np.arange(10, 20)}
    return write_run(root, dataset=dataset, strategy=strategy, seed=seed, values=[0.5, 0.6], queries=q,
                     artifacts={"labeled_targets": np.arange(20) % 10}, identity=identity)


@pytest.mark.parametrize("dataset, first, last", [("fashion-mnist", "T-shirt/top", "Ankle boot"),
                                                  ("cifar10", "airplane", "truck"), ("digits", None, None)])
def test_class_names_come_from_the_loader_for_records_without_them(tmp_path, dataset, first, last):
    _labeled_run(tmp_path / "res", dataset)
    names = _class_names(load_sweep_runs(tmp_path / "res").runs)
    if first is None:  # digits names nothing beyond its ids
        assert names == {}
    else:
        assert names[0] == first and names[9] == last and len(names) == 10


def test_recorded_class_names_win_and_reach_the_heatmap(tmp_path):
    from albench.reports.report import build_report

    classes = [f"class-{c}" for c in range(10)]
    for s in TWELVE[:7]:  # more than five strategies: the heatmap, not grouped bars
        _labeled_run(tmp_path / "res", "fashion-mnist", strategy=s, identity={"classes": classes})
    out = tmp_path / "report"
    build_report(tmp_path / "res", out, tsne_max=50, tsne_jobs=1)
    table = (out / "tables" / "class-distribution-fashion-mnist.md").read_text()
    assert "class-0" in table and "class-9" in table and "T-shirt" not in table


def test_a_fashion_mnist_run_records_its_class_names(tmp_path, tiny_raw, one_torch_thread):
    from albench.cli import main
    from tests.conftest import write_yaml
    from tests.test_datasets_torchvision import write_idx_set

    write_idx_set(tmp_path / "data", "FashionMNIST", gz=True)
    tiny_raw["dataset"] = {"name": "fashion-mnist", "root": str(tmp_path / "data")}
    tiny_raw["train"]["epochs"] = 1
    tiny_raw["al"] = {"initial": 10, "budget": 10, "cycles": 2}
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    sweep = tmp_path / "results" / "tiny"
    run = json.loads((sweep / "fashion-mnist" / "random" / "seed-0" / "run.json").read_text())
    assert run["classes"][0] == "T-shirt/top" and run["classes"][9] == "Ankle boot"
    assert _class_names(load_sweep_runs(sweep).runs)[7] == "Sneaker"


def _embedded_run(root, strategy, seed=0, rows=5080, dim=16):
    rng = np.random.default_rng(seed)
    q = {c: np.arange(c * 20, (c + 1) * 20) for c in range(4)}
    idx = np.union1d(80 + rng.choice(20000, size=rows - 80, replace=False), np.arange(80))  # exactly `rows` rows
    centres = rng.normal(scale=3, size=(10, dim))
    emb = centres[idx % 10] + rng.normal(size=(len(idx), dim))
    return write_run(root, strategy=strategy, seed=seed, values=[0.5, 0.6, 0.7, 0.8], queries=q,
                     artifacts={"embeddings": emb.astype(np.float16), "embedding_indices": idx})


def test_tsne_panels_are_capped_and_the_same_in_parallel(tmp_path):
    for s in ("a", "b", "c"):
        _embedded_run(tmp_path / "res", s)
    runs = load_sweep_runs(tmp_path / "res").runs
    inputs = [tsne_input(r, max_points=120, seed=0) for r in runs]
    assert all(p["x"].shape == (120, 16) and p["n_embedded"] >= 5000 for p in inputs)
    roles = list(inputs[0]["role"])
    assert roles.count("first") == 20 and roles.count("middle") == 20 and roles.count("last") == 20
    serial = tsne_panels([dict(p) for p in inputs], jobs=1)
    parallel = tsne_panels([dict(p) for p in inputs], jobs=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a["xy"], b["xy"])
        assert "x" not in a and a["xy"].shape == (120, 2)
    np.testing.assert_array_equal(tsne_points(runs[0], max_points=120)["xy"], serial[0]["xy"])
    assert DEFAULT_POINTS == 1000


@pytest.mark.slow
def test_the_tsne_caption_records_the_cap_and_the_recorded_rows(tmp_path):
    from albench.cli import main

    for s in ("a", "b"):
        _embedded_run(tmp_path / "res", s, rows=600)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "res"), "--out", str(out), "--tsne-points", "150", "--tsne-jobs", "2",
                 "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    cap = next(a["caption"] for a in report["artefacts"] if a["name"].startswith("tsne-"))
    assert "at most 150 embeddings" in cap and "a seeded random subset of the 600 recorded" in cap
    assert main(["report", str(tmp_path / "res"), "--tsne-jobs", "-1"]) == 2
