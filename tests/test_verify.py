"""``albench verify`` against the committed PT4AL reference: passes where the numbers agree, fails
where they do not, refuses runs of another dataset, protocol or scale (naming the field), and says
what is missing. Runs are synthetic records with known numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from albench.cli import main
from albench.reports.data import load_sweep_runs
from albench.reports.verify import FAIL, PASS, REFUSED, load_reference, verify
from tests.conftest import REPO
from tests.report_synth import write_run

REFERENCE = REPO / "results" / "reference" / "pt4al-eccv2022.yaml"
PT4AL = {"pretext_task": "rotation", "batch_order": "high-first", "first_cycle": "uniform", "sampler": "confidence"}
CIFAR_AL = dict(dataset="cifar10", model="resnet18-cifar", epochs=200, batch_size=128, initial=1000, budget=1000)


def curve(first: float, last: float, cycles: int = 10) -> list[float]:
    """A 10-cycle accuracy curve (fractions) from ``first`` to ``last``."""
    return list(np.linspace(first, last, cycles))


def pt4al_runs(root: Path, firsts, lasts, **kw) -> Path:
    opts = dict(CIFAR_AL, strategy="pt4al", protocol="official", params=PT4AL,
                quirks=["string_sort", "normalized_softmax", "warm_start", "best_on_test"],
                flags=["best_on_test", "best-on-test"])
    opts.update(kw)
    for seed, (f, l) in enumerate(zip(firsts, lasts)):
        write_run(root, seed=seed, values=curve(f, l), **opts)
    return root / "synth"


def run_verify(results: Path, *only: str, reference: Path = REFERENCE) -> int:
    args = ["verify", str(results), "--reference", str(reference)]
    for o in only:
        args += ["--only", o]
    return main(args)


def test_reference_file_holds_the_papers_numbers():
    _, checks = load_reference(REFERENCE)
    by_id = {c.id: c for c in checks}
    assert by_id["table1-random-mean"].value == 47.49 and by_id["table1-random-std"].value == 3.15
    assert by_id["table1-pt4al-mean"].value == 55.20 and by_id["table1-pt4al-std"].value == 1.95
    assert (by_id["table1-pt4al-min"].value, by_id["table1-pt4al-max"].value) == (52.00, 57.71)
    assert by_id["sec51-pt4al-last"].value == 95.13 and by_id["sec51-learning-loss-last"].value == 89.93
    assert by_id["ablation-first-cycle-top-k"].value == 44.65
    assert by_id["ablation-low-loss-first-last"].value == 94.59
    assert by_id["table2-pt4al-ratio"].value == pytest.approx(216 / 136, abs=1e-3)
    assert by_id["table2-vaal-ratio"].value == pytest.approx(849 / 136, abs=1e-3)
    assert by_id["rho-cifar10-rotation"].value == 0.79 and by_id["rho-imagenet67-rotation"].value == 0.88
    assert by_id["official-rerun-maintainers-last"].range == (91.99, 92.83)
    for c in checks:
        assert c.dataset and c.protocol and c.scale and c.units and c.source
        assert c.tol() > 0


def test_verify_passes_numbers_within_tolerance(tmp_path, capsys):
    # first cycle 54.20 / 55.20 / 56.20: mean 55.20, std 1.00, min 54.20, max 56.20; last 95.13 on average
    res = pt4al_runs(tmp_path, [0.5420, 0.5520, 0.5620], [0.9500, 0.9513, 0.9526])
    assert run_verify(res, "table1-pt4al-*", "sec51-pt4al-*") == 0
    out = capsys.readouterr().out
    assert "PASS    table1-pt4al-mean" in out
    assert "ours 55.20 ± 1.00 % (mean, n=3 seeds) [pt4al †] | theirs 55.20 % | diff +0.00" in out
    assert "ours 1.00 % (std, n=3 seeds)" in out and "diff -0.95" in out  # std 1.00 vs 1.95
    assert "ours 54.20 % (min, n=3 seeds)" in out and "diff +2.20" in out
    assert "diff -0.63" in out  # sec51-pt4al-first: 55.20 vs 55.83
    assert ("runs pt4al: protocol official, quirks on: best_on_test, normalized_softmax, string_sort, warm_start; "
            "† flags: best-on-test, best_on_test") in out
    assert "verify: 6 passed, 0 failed" in out


def test_verify_fails_and_exits_1_outside_tolerance(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.50, 0.51, 0.52], [0.9500, 0.9513, 0.9526])
    assert run_verify(res, "table1-pt4al-mean", "sec51-pt4al-last") == 1
    out = capsys.readouterr().out
    assert "FAIL    table1-pt4al-mean" in out and "diff -4.20" in out and "outside tolerance ±1.5" in out
    assert "PASS    sec51-pt4al-last" in out


def test_verify_range_checks_against_the_reruns(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.55, 0.55, 0.55], [0.9200, 0.9230, 0.9260])
    assert run_verify(res, "official-rerun-*") == 1
    out = capsys.readouterr().out
    # mean 92.30: inside the maintainers' 91.99-92.83; 2.25 above the user's 89.45-90.05
    assert "PASS    official-rerun-maintainers-last" in out and "diff +0.00" in out
    assert "FAIL    official-rerun-user-last" in out and "diff +2.25" in out


@pytest.mark.parametrize("change,reason", [
    (dict(dataset="digits"), "dataset differs: the pt4al runs are on digits; this number is for cifar10"),
    (dict(protocol="paper", quirks=[], flags=[]),
     "protocol differs: the runs use protocol paper; this number claims protocol official"),
    (dict(epochs=15), "scale differs: epochs 15 (reference 200)"),
    (dict(model="small-cnn", initial=50), "scale differs: model small-cnn (reference resnet18-cifar); initial 50 "
                                          "(reference 1000)"),
])
def test_verify_refuses_incomparable_runs_and_says_why(tmp_path, capsys, change, reason):
    res = pt4al_runs(tmp_path, [0.552] * 3, [0.9513] * 3, **change)
    assert run_verify(res, "table1-pt4al-mean") == 2
    captured = capsys.readouterr()
    assert "REFUSED table1-pt4al-mean" in captured.out and reason in captured.out
    assert "nothing to verify" in captured.err


def test_verify_missing_strategy_variant_and_unfinished_cycles(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.552, 0.552], [0.9513, 0.9513])
    write_run(tmp_path, seed=2, values=[0.552], cycles=10, state="running", strategy="pt4al", protocol="official",
              params=PT4AL, **CIFAR_AL)
    sweep = load_sweep_runs(res)
    _, checks = load_reference(REFERENCE)
    by_id = {c.id: c for c in checks}
    first, last, topk = verify(sweep, [by_id["table1-pt4al-mean"], by_id["sec51-pt4al-last"],
                                       by_id["ablation-first-cycle-top-k"]])
    assert first.status == PASS and first.n == 3  # the running run finished its first cycle
    assert last.status == PASS and last.n == 2 and "1 run(s) have not finished that cycle yet" in last.message
    assert topk.status == "missing" and "no pt4al runs with" in topk.message and "first_cycle=top-k" in topk.message


def test_verify_std_of_one_seed_is_too_few(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.552], [0.9513])
    assert run_verify(res, "table1-pt4al-std") == 2
    out = capsys.readouterr().out
    assert "TOO-FEW table1-pt4al-std" in out and "a std needs at least 2 seeds; 1 recorded" in out


def test_verify_wallclock_ratio_to_random(tmp_path, capsys):
    for seed in range(2):
        write_run(tmp_path, strategy="random", protocol="official", seed=seed, values=curve(0.47, 0.86),
                  seconds={"train": [1.0] * 10}, **CIFAR_AL)
        # pt4al: 2.5 s pretext, 1 s train per cycle, 0.4225 s inference on 8 cycles: 15.88 s = 1.588 x 10 s
        write_run(tmp_path, strategy="pt4al", protocol="official", params=PT4AL, seed=seed,
                  values=curve(0.55, 0.95), seconds={"pretext": [2.5] + [0] * 9, "train": [1.0] * 10,
                                                     "inference": [0, 0] + [0.4225] * 8}, **CIFAR_AL)
    assert run_verify(tmp_path / "synth", "table2-pt4al-ratio") == 0
    out = capsys.readouterr().out
    assert "ours 1.588 ± 0.000 × Random (mean, n=2 seeds)" in out and "theirs 1.588 × Random" in out
    assert run_verify(tmp_path / "synth", "table2-coregcn-ratio") == 2  # no coregcn runs
    assert "no coregcn runs under the results folder" in capsys.readouterr().out


def test_verify_spearman_rho_hand_case(tmp_path, capsys):
    # main-task loss ranks 1 2 3 4, pretext ranks 1 3 2 4: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    arts = {"test_loss": np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32),
            "pretext_loss_test": np.array([5.0, 7.0, 6.0, 8.0], dtype=np.float32)}
    write_run(tmp_path, strategy="pt4al", protocol="paper", params=PT4AL, values=[0.95], dataset="cifar10",
              model="resnet18-cifar", epochs=200, initial=50000, artifacts=arts)
    assert run_verify(tmp_path / "synth", "rho-cifar10-rotation") == 0  # 0.80 vs 0.79, tolerance 0.05
    out = capsys.readouterr().out
    assert "ours 0.800 (mean, n=1 seed)" in out and "diff +0.010" in out
    custom = tmp_path / "ref.yaml"
    raw = yaml.safe_load(REFERENCE.read_text())
    rho = next(c for c in raw["checks"] if c["id"] == "rho-cifar10-rotation")
    raw["checks"] = [dict(rho, value=0.5)]
    custom.write_text(yaml.safe_dump(raw))
    assert run_verify(tmp_path / "synth", reference=custom) == 1
    assert "diff +0.300" in capsys.readouterr().out


@pytest.mark.parametrize("edit,field", [
    (lambda c: c.pop("value"), "needs exactly one of 'value' and 'range'"),
    (lambda c: c.update(quantity="accuracy"), ".quantity: must be one of 'metric', 'wallclock-ratio'"),
    (lambda c: c.update(scale="nope"), ".scale: names no entry of 'scales'"),
    (lambda c: c.update(cycle="middle"), ".cycle: must be one of 'first', 'last' or an integer or null"),
    (lambda c: c.update(cycle=-1), ".cycle: must be"),
    (lambda c: c.update(tolerance=-1), ".tolerance: must be >= 0"),
    # read through the declared schema (issue 17): typos, NaN and wrong types are refused, naming the field
    (lambda c: c.update(tolerence=1.0), ".tolerence: unknown config key; fix: did you mean"),
    (lambda c: c.update(value=float("nan")), ".value: must be"),
    (lambda c: c.update(tolerance=float("inf")), ".tolerance: must be a finite number"),
    (lambda c: c.update(value="47.49%"), ".value: must be a number"),
    (lambda c: (c.pop("value"), c.update(range=[2.0, 1.0])), ".range: must be [low, high]"),
    (lambda c: c.update(statistic="median"), ".statistic: must be one of 'mean'"),
    (lambda c: c.update(protocol="offical"), ".protocol: must be one of 'paper', 'official', 'any'"),
    (lambda c: c.update(scale={"epoch": 200}), ".scale.epoch: unknown config key"),
    (lambda c: c.pop("source"), ".source: is required"),
])
def test_malformed_reference_is_bad_input(tmp_path, capsys, edit, field):
    raw = yaml.safe_load(REFERENCE.read_text())
    edit(raw["checks"][0])
    ref = tmp_path / "bad.yaml"
    ref.write_text(yaml.safe_dump(raw))
    res = pt4al_runs(tmp_path, [0.552], [0.9513])
    assert run_verify(res, reference=ref) == 2
    err = capsys.readouterr().err
    assert err.startswith("albench: error: checks[0] (table1-random-mean)") and field in err
    assert "Traceback" not in err


def test_malformed_scales_and_file_fields_are_refused(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.552], [0.9513])
    for edit, needle in [
        (lambda r: r["scales"]["cifar10-al"].update(epochs=0), "scales.cifar10-al.epochs: must be >= 1"),
        (lambda r: r["scales"]["cifar10-al"].update(epoch=200), "scales.cifar10-al.epoch: unknown config key"),
        (lambda r: r.update(schema=2), "schema: must be one of 1"),
        (lambda r: r.update(papr="x"), "papr: unknown config key; fix: did you mean 'paper'"),
    ]:
        raw = yaml.safe_load(REFERENCE.read_text())
        edit(raw)
        ref = tmp_path / "bad.yaml"
        ref.write_text(yaml.safe_dump(raw))
        assert run_verify(res, reference=ref) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"albench: error: {needle}"), err
        assert len(err.strip().splitlines()) == 1


def test_verify_missing_reference_file_and_unknown_only(tmp_path, capsys):
    res = pt4al_runs(tmp_path, [0.552], [0.9513])
    assert run_verify(res, reference=tmp_path / "none.yaml") == 2
    assert "--reference: file not found" in capsys.readouterr().err
    assert run_verify(res, "no-such-id") == 2
    assert "--only: matches no check id" in capsys.readouterr().err


def test_verify_groups_each_strategy_label_separately(tmp_path):
    pt4al_runs(tmp_path, [0.552] * 2, [0.9513] * 2)
    pt4al_runs(tmp_path, [0.50] * 2, [0.9513] * 2, strategy="pt4al-copy", strategy_name="pt4al")
    _, checks = load_reference(REFERENCE)
    mean = next(c for c in checks if c.id == "table1-pt4al-mean")
    outcomes = verify(load_sweep_runs(tmp_path / "synth"), [mean])
    assert {o.group: o.status for o in outcomes} == {"pt4al": PASS, "pt4al-copy": FAIL}
    assert REFUSED not in {o.status for o in outcomes}
