"""Which albench source env.json names (``albench.env.git_state``): a work tree's HEAD only when the
package is that tree's ``bench/``; the commit ``git archive`` stamped into an exported source; and
nothing, rather than a wrong commit, for a package that sits inside some other repository."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import albench
from albench.env import git_state

STAMP = Path(albench.__file__).parent / "_source.py"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                           *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _repo(root: Path, package: str = "bench") -> Path:
    """A git repository at ``root`` with an albench-like package at ``root/package``; returns the package."""
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(STAMP, pkg / "_source.py")
    (root / ".gitattributes").write_text(f"{package}/_source.py export-subst\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "one")
    return pkg


def test_a_work_tree_package_records_its_head_and_whether_it_is_dirty(tmp_path):
    pkg = _repo(tmp_path / "repo")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")
    assert git_state(pkg) == {"sha": head, "dirty": False, "source": "git"}
    (pkg / "__init__.py").write_text("x = 1\n")
    assert git_state(pkg) == {"sha": head, "dirty": True, "source": "git"}


def test_a_package_inside_another_repository_is_not_given_that_repository_s_commit(tmp_path):
    # e.g. a virtual environment inside a user's project: site-packages/albench is not the project
    pkg = _repo(tmp_path / "project", package="venv/lib/site-packages/albench")
    assert git_state(pkg) == {"sha": None, "dirty": None, "source": None}


def test_a_git_archive_export_records_the_commit_it_was_stamped_with(tmp_path):
    _repo(tmp_path / "repo")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")
    tar = tmp_path / "src.tar"
    _git(tmp_path / "repo", "archive", "-o", str(tar), "HEAD")
    out = tmp_path / "unpacked"
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    assert f'ARCHIVE_SHA = "{head}"' in (out / "bench" / "_source.py").read_text()
    assert git_state(out / "bench") == {"sha": head, "dirty": None, "source": "archive"}


def test_a_plain_copy_has_no_commit(tmp_path):
    pkg = tmp_path / "copy" / "albench"
    pkg.mkdir(parents=True)
    shutil.copy(STAMP, pkg / "_source.py")  # placeholder unsubstituted
    assert git_state(pkg) == {"sha": None, "dirty": None, "source": None}
