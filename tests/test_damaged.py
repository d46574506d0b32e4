"""Damaged records and checkpoints: a garbled or truncated record of one run is listed as damaged by
run, show, status and report, which go on with the other runs; nothing damaged is rewritten without
--restart-damaged; a damaged checkpoint names itself and the fix; leftover temp files are cleaned;
a run folder that cannot be written fails that run only."""

from __future__ import annotations

import os
import shutil

import pytest

from albench.cli import main
from albench.records import DamagedRecord, read_cycles, read_status
from tests.conftest import TINY, write_yaml

GOOD = "least-confidence"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import copy

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("damaged")
    raw = copy.deepcopy(TINY)
    raw.update(strategies=["random", GOOD], output=str(base / "results"), record={"embeddings": 16})
    raw["al"]["cycles"] = 2
    cfg = write_yaml(base / "c.yaml", raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    torch.set_num_threads(before)
    return cfg, base / "results"


def _copy(built, tmp_path):
    cfg, results = built
    out = tmp_path / "results"
    shutil.copytree(results, out)
    return cfg, out / "tiny"


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])


def _garble(path):
    path.write_bytes(b"\x00\xff garbage \x8f" * 3)


DAMAGE = {"truncated": _truncate, "garbled": _garble, "empty": lambda p: p.write_bytes(b"")}
CASES = [(f, d) for f in ("cycles.csv", "run.json", "status.json", "queries.json") for d in ("truncated", "garbled")]
CASES.append(("status.json", "empty"))


@pytest.mark.parametrize("name,how", CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_each_command_lists_the_damaged_run_and_goes_on(built, tmp_path, capsys, name, how, one_torch_thread):
    cfg, sweep = _copy(built, tmp_path)
    bad = sweep / "digits" / "random" / "seed-0"
    DAMAGE[how](bad / name)
    before = _snapshot(bad)
    capsys.readouterr()

    assert main(["show", str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert GOOD in out and "Traceback" not in err
    if name != "status.json":  # a damaged status alone still leaves readable rows
        assert "random" not in out.split("\n", 1)[1] and f"damaged run left out of the table: {bad}" in err

    assert main(["status", str(sweep)]) == 1
    out, err = capsys.readouterr()
    table = {ln.split()[1]: ln for ln in out.splitlines()[1:3]}
    assert table["digits/random/seed-0"].startswith("damaged "), out
    assert table[f"digits/{GOOD}/seed-0"].startswith("done "), out

    # the damaged run is named, never rewritten
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "damaged" in err and str(bad) in err and "Traceback" not in err
    assert GOOD in out
    assert _snapshot(bad) == before

    assert main(["report", str(sweep), "--quiet", "--tsne-points", "10", "--out", str(tmp_path / "rep")]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and (tmp_path / "rep" / "index.md").exists()
    assert _snapshot(bad) == before


def test_a_truncated_cycles_csv_never_passes_for_values(built, tmp_path):
    _, sweep = _copy(built, tmp_path)
    path = sweep / "digits" / "random" / "seed-0" / "cycles.csv"
    text = path.read_text()
    path.write_text(text[: text.rindex("0.") + 3])  # cut inside the last row: "0.1" of "0.1234..."
    with pytest.raises(DamagedRecord, match="truncated"):
        read_cycles(path.parent)
    path.write_text(text.replace("\n1,", "\n7,"))
    with pytest.raises(DamagedRecord, match="cycle 7 where 1 was expected"):
        read_cycles(path.parent)


def test_a_complete_run_with_a_damaged_status_moves_aside_only_when_asked(built, tmp_path, capsys,
                                                                         one_torch_thread):
    cfg, sweep = _copy(built, tmp_path)
    bad = sweep / "digits" / "random" / "seed-0"
    _garble(bad / "status.json")
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet", "--restart-damaged"]) == 0
    assert read_status(bad)["state"] == "complete"
    moved = list((sweep / ".replaced").glob("*/digits/random/seed-0/status.json"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"\x00\xff")


def test_a_damaged_checkpoint_names_the_file_and_the_fix(built, tmp_path, capsys, one_torch_thread):
    cfg, sweep = _copy(built, tmp_path)
    run_dir = sweep / "digits" / "random" / "seed-0"
    st = read_status(run_dir)
    from albench.records import atomic_write_json

    atomic_write_json(run_dir / "status.json", {**st, "state": "running", "pid": 1})
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{run_dir / 'checkpoint.pt'}: damaged" in err and "delete it to start this run over" in err
    assert "Traceback" not in err
    assert read_status(run_dir)["state"] == "failed"


def test_leftover_temp_files_are_cleaned_even_in_complete_runs(built, tmp_path, capsys):
    cfg, sweep = _copy(built, tmp_path)
    run_dir = sweep / "digits" / "random" / "seed-0"
    leftovers = [run_dir / ".cycles.csv.k2j3.tmp", run_dir / "artifacts" / ".test_loss.npy.x81.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a write")
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 0
    assert not any(p.exists() for p in leftovers)


def test_a_run_folder_that_cannot_be_written_fails_that_run_only(tiny_raw, tmp_path, capsys, one_torch_thread):
    tiny_raw["strategies"] = ["random", GOOD]
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    blocked = tmp_path / "results" / "tiny" / "digits" / "random"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the strategy folder goes")  # not writable as a folder, even for root
    assert main(["run", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "run failed: digits/random/seed-0: cannot write the run folder" in err and "Traceback" not in err
    assert read_status(tmp_path / "results" / "tiny" / "digits" / GOOD / "seed-0")["state"] == "complete"


# ---------------------------------------------------------------------------------------------
# issue 29: records of the right syntax but the wrong content are damaged, never rewritten


def _edit_json(name, **fields):
    def edit(run_dir):
        import json

        data = json.loads((run_dir / name).read_text())
        data.update(fields)
        (run_dir / name).write_text(json.dumps(data))
    return edit


def _status_folder(run_dir):
    (run_dir / "status.json").unlink()
    (run_dir / "status.json").mkdir()


def _cut_artifact(run_dir):
    p = run_dir / "artifacts" / "labeled_targets.npy"
    p.write_bytes(p.read_bytes()[:-5])


WRONG = {
    "status-exploded": (_edit_json("status.json", state="exploded"), "status.json: damaged (unknown state 'exploded'"),
    "status-state-number": (_edit_json("status.json", state=7), "status.json: damaged ('state' must be a string"),
    "status-a-folder": (_status_folder, "status.json: damaged (is not a regular file (a folder))"),
    "run-seed-abc": (_edit_json("run.json", seed="abc"), "run.json: damaged ('seed' must be an integer"),
    "run-seed-null": (_edit_json("run.json", seed=None), "run.json: damaged ('seed' must be an integer"),
    "run-quirks-abc": (_edit_json("run.json", quirks="abc"), "run.json: damaged ('quirks' must be a list of strings"),
    "run-quirks-nested": (_edit_json("run.json", quirks=[[]]), "run.json: damaged ('quirks[0]' must be a string"),
    "config-a-list": (lambda d: (d / "config.yaml").write_text("- 1\n- 2\n"), "config.yaml: damaged (the record is a list, not a mapping"),
    "config-train-5": (lambda d: (d / "config.yaml").write_text((d / "config.yaml").read_text().replace(
        "train:\n", "train: 5\nold_train:\n", 1)), "config.yaml: damaged (train is a number, not a mapping)"),
    "env-latin-1": (lambda d: (d / "env.json").write_bytes('{"cpu": "Intel® Xeon®"}'.encode("latin-1")),
                    "env.json: damaged (not UTF-8 text"),
    "env-a-list": (lambda d: (d / "env.json").write_text("[1, 2]"), "env.json: damaged (the record is a list, not a mapping"),
    "artifact-truncated": (_cut_artifact, "labeled_targets.npy: damaged (truncated: its header declares int64 (40,)"),
    "artifact-garbage": (lambda d: (d / "artifacts" / "labeled_targets.npy").write_bytes(b"\x93NUMPY garbage" * 9),
                         "labeled_targets.npy: damaged (not an .npy array"),
    # found by the malformed-input probe (benchmarks/malformed_probe.py)
    "config-empty": (lambda d: (d / "config.yaml").write_text(""), "config.yaml: damaged (empty)"),
    "config-cut": (lambda d: (d / "config.yaml").write_text((d / "config.yaml").read_text()[:700].rsplit("\n", 1)[0]),
                   "config.yaml: damaged (its result keys differ from those fingerprint.json recorded"),
    "config-edited": (lambda d: (d / "config.yaml").write_text((d / "config.yaml").read_text().replace(
        "epochs: 2", "epochs: 200", 1)), "config.yaml: damaged (its result keys differ"),
    "cycles-header-only": (lambda d: (d / "cycles.csv").write_text((d / "cycles.csv").read_text().splitlines()[0] + "\n"),
                           "cycles.csv: damaged (holds 0 of the 2 cycles of a complete run)"),
    "fingerprint-garbled": (lambda d: _garble(d / "fingerprint.json"), "fingerprint.json: damaged (not UTF-8 text"),
    "fingerprint-a-fifo": (lambda d: ((d / "fingerprint.json").unlink(), os.mkfifo(d / "fingerprint.json")),
                           "fingerprint.json: damaged (is not a regular file (a FIFO))"),
    "fingerprint-deep-json": (lambda d: (d / "fingerprint.json").write_text("[" * 100000 + "]" * 100000),
                              "fingerprint.json: damaged (not valid JSON"),
}


REPORTED = {"artifact-truncated", "artifact-garbage", "run-seed-abc", "env-latin-1", "config-train-5", "status-a-folder"}


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_typed_records_name_the_damaged_run_and_are_never_rewritten(built, tmp_path, capsys, case,
                                                                         one_torch_thread):
    damage, why = WRONG[case]
    cfg, sweep = _copy(built, tmp_path)
    bad = sweep / "digits" / "random" / "seed-0"
    damage(bad)
    before = _snapshot(bad)
    capsys.readouterr()

    assert main(["show", str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert GOOD in out and "Traceback" not in err
    assert f"damaged run left out of the table: {bad}" in err and why in err, err

    assert main(["status", str(sweep)]) == 1
    out, err = capsys.readouterr()
    table = {ln.split()[1]: ln for ln in out.splitlines()[1:3]}
    damaged = [ln for ln in table.values() if ln.startswith("damaged ")]
    assert len(damaged) == 1 and str(bad) in damaged[0] and why in damaged[0], out
    assert table[f"digits/{GOOD}/seed-0"].startswith("done "), out

    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert str(bad) in err and why in err and "Traceback" not in err, err
    assert GOOD in out
    assert _snapshot(bad) == before

    if case in REPORTED:  # report reads every record 'show' reads, and the artifacts
        assert main(["report", str(sweep), "--quiet", "--tsne-points", "10", "--out", str(tmp_path / "rep")]) == 0
        out, err = capsys.readouterr()
        assert f"damaged run left out of the report: {bad}" in err and why in err and "Traceback" not in err
        assert _snapshot(bad) == before


def test_a_complete_run_with_an_unknown_state_is_not_started_over(built, tmp_path, capsys, one_torch_thread):
    """The data-loss bug of issue 29: {"state": "exploded"} on a complete run made 'run' start it over."""
    cfg, sweep = _copy(built, tmp_path)
    bad = sweep / "digits" / "random" / "seed-0"
    (bad / "status.json").write_text('{"state": "exploded"}')
    before = _snapshot(bad)
    with pytest.raises(DamagedRecord, match="unknown state 'exploded'"):
        read_status(bad)
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "digits/random/seed-0\tdamaged" in out and "unknown state 'exploded'" in err
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "damaged, left untouched: digits/random/seed-0" in err and "unknown state 'exploded'" in err
    assert _snapshot(bad) == before
    # only --restart-damaged moves it aside (kept, never deleted) and runs it again
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet", "--restart-damaged"]) == 0
    assert read_status(bad)["state"] == "complete"
    moved = list((sweep / ".replaced").glob("*/digits/random/seed-0/status.json"))
    assert len(moved) == 1 and moved[0].read_text() == '{"state": "exploded"}'


@pytest.mark.parametrize("name,content,why", [
    ("run.json", '{"dataset": "digits", "strategy": "random", "seed": "abc"}', "'seed' must be an integer"),
    ("config.yaml", "- 1\n", "the record is a list, not a mapping"),
])
def test_an_unfinished_run_with_a_damaged_identity_is_not_resumed(built, tmp_path, capsys, name, content, why,
                                                                  one_torch_thread):
    """Resuming would carry the damaged record on (run.json is updated in place): it is named instead."""
    cfg, sweep = _copy(built, tmp_path)
    bad = sweep / "digits" / "random" / "seed-0"
    from albench.records import atomic_write_json

    atomic_write_json(bad / "status.json", {**read_status(bad), "state": "failed", "error": "boom"})
    (bad / name).write_text(content)
    before = _snapshot(bad)
    capsys.readouterr()
    assert main(["status", str(sweep)]) == 1
    assert why in capsys.readouterr().out
    assert main(["run", str(cfg), "--out", str(sweep.parent), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "damaged, left untouched: digits/random/seed-0" in err and why in err
    assert _snapshot(bad) == before
