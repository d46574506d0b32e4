"""``albench report`` end to end on synthetic records: every figure and table file written and
non-empty, captions with provenance, partial sweeps reported with what is missing, figures whose
inputs are absent skipped with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from albench.cli import main
from albench.reports.report import build_report
from albench.reports.tsne import marked_cycles
from tests.report_synth import write_run

N_POOL, N_TEST = 120, 80


def _artifacts(seed: int, queries: dict, with_pretext: bool) -> dict:
    rng = np.random.default_rng(seed)
    labeled = np.concatenate([queries[c] for c in sorted(queries)])
    subset = rng.choice(N_POOL, size=60, replace=False)
    idx = np.union1d(subset, labeled)
    main_loss = rng.gamma(2.0, size=(len(queries), N_TEST)).astype(np.float32)
    arts = {"labeled_targets": labeled % 3, "test_loss": main_loss,
            "embeddings": rng.normal(size=(len(idx), 8)).astype(np.float16), "embedding_indices": idx}
    if with_pretext:  # correlated with the final cycle's main-task loss
        arts["pretext_loss_test"] = (main_loss[-1] + rng.normal(scale=0.5, size=N_TEST)).astype(np.float32)
    return arts


def _queries(seed: int, cycles: int = 3, k: int = 10) -> dict:
    perm = np.random.default_rng(100 + seed).permutation(N_POOL)
    return {c: np.sort(perm[c * k:(c + 1) * k]) for c in range(cycles)}


def make_sweep(root, *, partial: bool = False, pretext: bool = True):
    for strategy, base in (("random", 0.5), ("pt4al", 0.6)):
        for seed in (0, 1):
            if partial and strategy == "pt4al" and seed == 1:
                continue  # absent
            q = _queries(seed)
            write_run(root, strategy=strategy, seed=seed, values=[base, base + 0.1, base + 0.2 + 0.01 * seed],
                      queries=q, artifacts=_artifacts(seed, q, pretext and strategy == "pt4al"),
                      prepare={"pretext_cache": "miss", "pretext_train_seconds": 1.0} if strategy == "pt4al" else {})
    if partial:
        write_run(root, strategy="random", seed=2, values=[0.45], cycles=3, state="running",
                  queries={0: _queries(2)[0]})
    return root / "synth"


KINDS_TABLES = ["curves", "cold-start", "wallclock", "class-distribution", "aubc", "wilcoxon", "win-tie-loss",
                "spearman"]
KINDS_FIGURES = ["curves", "wallclock", "class-distribution", "aubc", "win-tie-loss", "spearman", "tsne"]


@pytest.mark.slow
def test_report_writes_every_figure_and_table(tmp_path):
    sweep = make_sweep(tmp_path / "res")
    out = tmp_path / "report"
    index = build_report(sweep, out, tsne_max=150)
    for kind in KINDS_TABLES:
        for ext in ("md", "tex", "csv"):
            p = out / "tables" / f"{kind}-digits.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
    for kind in KINDS_FIGURES:
        for ext in ("png", "pdf"):
            p = out / "figures" / f"{kind}-digits.{ext}"
            assert p.is_file() and p.stat().st_size > 1000, p
    assert index.skipped == [] and index.missing == []
    text = (out / "index.md").read_text()
    for a in index.artefacts:
        assert f"`{a.name}`" in text
        assert "Protocol: paper (no quirks)" in a.caption and "Hardware: " in a.caption
        assert "runs on Test CPU (CPU, 1 thread)" in a.caption
    assert "None: every run" in text
    report = json.loads((out / "report.json").read_text())
    assert len(report["artefacts"]) == len(KINDS_TABLES) + len(KINDS_FIGURES)
    # the tables' CSV copies carry the caption as comment lines
    assert (out / "tables" / "cold-start-digits.csv").read_text().startswith("# Cold start: first-cycle accuracy\n#")


@pytest.mark.slow
def test_report_of_a_partial_sweep_says_what_is_missing_and_skips_what_it_cannot_draw(tmp_path):
    sweep = make_sweep(tmp_path / "res", partial=True, pretext=False)
    out = tmp_path / "report"
    rc = main(["report", str(sweep), "--out", str(out), "--tsne-points", "100", "--quiet"])
    assert rc == 0
    text = (out / "index.md").read_text()
    assert "synth/digits/pt4al/seed-1: absent (no run folder: not started yet, or removed)" in text
    assert "synth/digits/random/seed-2: running, 1/3 cycles recorded" in text
    assert "Spearman figure and table: no complete run records pretext_loss_test" in text
    assert not (out / "figures" / "spearman-digits.png").exists()
    assert (out / "figures" / "curves-digits.png").stat().st_size > 0
    curves = (out / "tables" / "curves-digits.md").read_text()
    assert "Partial sweep: 3 run(s)" in curves  # pt4al seeds 1 and 2 absent, random seed 2 running
    # the running run's finished cycle counts in the curve: random at 10 labels has 3 seeds
    assert "| random | 48.33 ± 2.89 |" in curves
    assert "(n=1)" in curves  # pt4al has one seed only


def test_report_refuses_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "holds no albench runs" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_marked_cycles_are_first_middle_last():
    assert marked_cycles(list(range(10))) == {"first": 0, "middle": 4, "last": 9}
    assert marked_cycles([0, 1, 2, 3]) == {"first": 0, "middle": 1, "last": 3}
    assert marked_cycles([0, 1]) == {"first": 0, "last": 1}
    assert marked_cycles([0]) == {"first": 0}


def test_tsne_points_keep_the_marked_queries(tmp_path):
    from albench.reports.data import load_sweep_runs
    from albench.reports.tsne import tsne_points

    sweep = make_sweep(tmp_path / "res")
    run = next(r for r in load_sweep_runs(sweep).runs if r.label == "random" and r.seed == 0)
    pts = tsne_points(run, max_points=60, seed=0)
    assert pts["xy"].shape == (60, 2) and np.isfinite(pts["xy"]).all()
    # 3 cycles x 10 queries = 30 marked images, within the two-thirds cap (40): all kept
    roles = list(pts["role"])
    assert roles.count("first") == 10 and roles.count("middle") == 10 and roles.count("last") == 10
    again = tsne_points(run, max_points=60, seed=0)
    np.testing.assert_allclose(again["xy"], pts["xy"])  # seeded


@pytest.mark.slow
def test_report_of_one_strategy_one_seed_one_cycle_skips_what_needs_more(tmp_path):
    write_run(tmp_path / "res", strategy="random", seed=0, values=[0.5], cycles=1)
    write_run(tmp_path / "res", dataset="other", strategy="random", seed=0, values=[], cycles=3, state="running")
    index = build_report(tmp_path / "res" / "synth", tmp_path / "report")
    names = {a.name for a in index.artefacts}
    assert {"curves-digits", "cold-start-digits", "wallclock-digits"} <= names
    skipped = {(s.what, s.dataset) for s in index.skipped}
    assert ("AUBC, Wilcoxon tests", "digits") in skipped and ("win / tie / loss matrix", "digits") in skipped
    assert ("every figure and table", "other") in skipped
    assert (tmp_path / "report" / "tables" / "cold-start-digits.md").read_text().count("| random | 10 | 50.00 |") == 1


@pytest.mark.slow
def test_report_only_keeps_the_matching_runs_and_says_so(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "res", partial=True, pretext=False)
    out = tmp_path / "report"
    assert main(["report", str(sweep), "--out", str(out), "--only", "*/random/*", "--quiet"]) == 0
    curves = (out / "tables" / "curves-digits.md").read_text()
    assert "| random |" in curves and "pt4al" not in curves
    text = (out / "index.md").read_text()
    assert "Restricted to the runs whose id matches `*/random/*` (`--only`)" in text
    # the absent pt4al seed is outside the selection; the running random seed is not
    assert "synth/digits/random/seed-2: running, 1/3 cycles recorded" in text
    assert "pt4al/seed-1" not in text
    assert "from 3 run(s)" in text


def test_report_only_refuses_a_glob_that_matches_no_run(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "res")
    assert main(["report", str(sweep), "--out", str(tmp_path / "r"), "--only", "*/bald/*"]) == 2
    err = capsys.readouterr().err
    assert "--only: '*/bald/*' matches no run" in err and "digits/pt4al/seed-0" in err
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_report_config_lists_planned_runs_without_the_data(tmp_path, monkeypatch):
    # the plan needs no data: a reviewer reports records on a machine without the dataset
    for strategy in ("random", "pt4al"):
        for seed in (0, 1):
            write_run(tmp_path / "res", dataset="mnist", strategy=strategy, seed=seed, values=[0.5, 0.6, 0.7])
    sweep = tmp_path / "res" / "synth"
    monkeypatch.delenv("ALBENCH_DATA", raising=False)
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("name: synth\ndataset: {name: mnist, root: null}\nstrategies: [random, pt4al, bald]\nseeds: [0, 1]\n")
    out = tmp_path / "r"
    assert main(["report", str(sweep), "--out", str(out), "--config", str(cfg), "--only", "*/bald/*",
                 "--only", "*/random/*", "--quiet"]) == 2  # no bald run recorded: the glob matches none
    assert main(["report", str(sweep), "--out", str(out), "--config", str(cfg), "--only", "*/random/*",
                 "--quiet"]) == 0
    text = (out / "index.md").read_text()
    assert "None: every run of the (inferred) plan is complete." in text  # random's planned seeds are both there
