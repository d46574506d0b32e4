"""Symbolic links inside an output root are never written through (issue 29): a sweep, dataset,
strategy or run folder, artifacts/, .cache/ or .replaced/ that is a link, or a record (run.log) that
is a link to an outside file, makes 'albench run' refuse before anything is written (exit 2); a link
that appears after the check is caught where the run takes its folder; readers name a linked record
as damaged; report never writes into a linked default folder."""

from __future__ import annotations

import copy
import os
import shutil

import pytest

from albench.cli import main
from albench.records import RecordError, RunRecorder, read_status
from tests.conftest import TINY, write_yaml


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("links")
    raw = copy.deepcopy(TINY)
    raw.update(output=str(base / "results"), record={"embeddings": 16})
    raw["al"]["cycles"] = 2
    cfg = write_yaml(base / "c.yaml", raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    torch.set_num_threads(before)
    return cfg, base / "results"


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))} if root.exists() else {}


@pytest.fixture
def world(built, tmp_path):
    """(config, results copy, an outside folder holding one file) for one test."""
    cfg, results = built
    out = tmp_path / "results"
    shutil.copytree(results, out)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    return cfg, out, outside


RUN = ("tiny", "digits", "random", "seed-0")


def _move_and_link(src, outside):
    """Move ``src`` (a folder) into ``outside`` and leave a link to it in its place."""
    dest = outside / src.name
    shutil.move(str(src), str(dest))
    src.symlink_to(dest, target_is_directory=True)


def _link_run_log(out, outside):
    run_dir = out.joinpath(*RUN)
    (run_dir / "run.log").unlink()
    (run_dir / "run.log").symlink_to(outside / "precious.txt")


LINKS = {
    "sweep-folder": lambda out, outside: _move_and_link(out / "tiny", outside),
    "dataset-folder": lambda out, outside: _move_and_link(out / "tiny" / "digits", outside),
    "strategy-folder": lambda out, outside: _move_and_link(out.joinpath(*RUN[:3]), outside),
    "run-folder": lambda out, outside: _move_and_link(out.joinpath(*RUN), outside),
    "artifacts-folder": lambda out, outside: _move_and_link(out.joinpath(*RUN) / "artifacts", outside),
    "cache-folder": lambda out, outside: (out / ".cache").symlink_to(outside, target_is_directory=True),
    "replaced-folder": lambda out, outside: (out / "tiny" / ".replaced").symlink_to(outside, target_is_directory=True),
    "run-log-outside": _link_run_log,
}


@pytest.mark.parametrize("case", list(LINKS))
def test_run_refuses_links_inside_the_output_root_before_writing(world, capsys, case, one_torch_thread):
    cfg, out, outside = world
    LINKS[case](out, outside)
    before_outside, before_out = _tree(outside), _tree(out)
    capsys.readouterr()
    for extra in (["--dry-run"], [], ["--restart-damaged"], ["--set", "train.epochs=3", "--restart-changed"]):
        assert main(["run", str(cfg), "--out", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert "is a symbolic link inside the output root" in err and "Traceback" not in err, err
        assert "never writes through links" in err
    assert _tree(outside) == before_outside  # nothing written, moved or deleted through the link
    assert _tree(out) == before_out


def test_a_link_made_after_the_check_is_caught_where_the_run_takes_its_folder(built, tmp_path, one_torch_thread):
    """The load-time check cannot see the future: the run's own claim on its folder checks again."""
    from albench.engine.loop import execute_run
    from albench.plan import make_plan
    from albench.validate import load_config

    cfg, _ = built
    outside = tmp_path / "outside"
    outside.mkdir()
    c = load_config(cfg, [f"output={tmp_path / 'results'}"])
    rc = make_plan(c)[0]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "tiny").symlink_to(outside, target_is_directory=True)
    outcome = execute_run(rc)
    assert outcome.state == "damaged" and "is a symbolic link" in outcome.error
    assert list(outside.iterdir()) == []


def test_records_are_never_written_through_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "log").write_text("keep\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.log").symlink_to(outside / "log")
    with pytest.raises(OSError):
        RunRecorder(run_dir).log("hello")
    assert (outside / "log").read_text() == "keep\n"
    (run_dir / "artifacts").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RecordError, match="is a symbolic link"):
        RunRecorder(run_dir).save_artifacts({"x": [1, 2]})
    assert sorted(p.name for p in outside.iterdir()) == ["log"]


def test_readers_name_a_linked_record_as_damaged(world, capsys):
    cfg, out, outside = world
    run_dir = out.joinpath(*RUN)
    shutil.move(str(run_dir / "status.json"), str(outside / "status.json"))
    (run_dir / "status.json").symlink_to(outside / "status.json")
    with pytest.raises(ValueError, match="status.json: damaged \\(is a symbolic link"):
        read_status(run_dir)
    assert main(["status", str(out / "tiny")]) == 1
    assert "damaged" in capsys.readouterr().out
    assert main(["show", str(out / "tiny")]) == 0
    assert f"damaged run left out of the table: {run_dir}" in capsys.readouterr().err


def test_report_never_writes_into_a_linked_default_folder(world, capsys):
    cfg, out, outside = world
    (out / "tiny" / "report").symlink_to(outside, target_is_directory=True)
    assert main(["report", str(out / "tiny"), "--quiet", "--tsne-points", "10"]) == 2
    err = capsys.readouterr().err
    assert "--out:" in err and "is a symbolic link" in err
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    # an explicit --out is the user's choice of folder
    assert main(["report", str(out / "tiny"), "--quiet", "--tsne-points", "10", "--out", str(outside / "rep")]) == 0
    assert os.path.isfile(outside / "rep" / "index.md")
