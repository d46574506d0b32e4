"""albench installs under one import namespace, ``albench``, so a user's own ``models/``,
``strategies/`` or ``bench/`` package never shadows ours (and ours never shadows theirs).

The fast checks read the repository; the slow one builds the wheel, installs it into a fresh virtual
environment and runs albench from a folder that holds its own ``models`` and ``strategies`` packages.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"albench": "bench", "albench.strategies": "strategies", "albench.models": "models"}
NOT_INSTALLED = ("bench", "benchmarks", "strategies", "models", "tests")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _package_folders() -> dict[str, Path]:
    """``{dotted albench package: its folder}`` for every folder with an ``__init__.py`` below the roots."""
    found = {}
    for dotted, folder in ROOTS.items():
        for init in sorted((REPO / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(REPO / folder)
            name = ".".join([dotted, *rel.parts])
            # a nested root (albench.strategies inside albench's folder tree) is listed under its own name
            if not any(name.startswith(other + ".") or name == other for other in ROOTS if other != dotted
                       and other.startswith(dotted + ".")):
                found[name] = init.parent
    return found


def test_every_package_folder_is_installed_under_albench():
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == ROOTS
    assert sorted(setuptools["packages"]) == sorted(_package_folders())


def test_console_script_points_into_the_namespace():
    assert _pyproject()["project"]["scripts"] == {"albench": "albench.cli:main"}


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", sorted(set(ROOTS.values())))
def test_library_code_imports_only_through_the_namespace(folder):
    """A bare ``import strategies`` would work from the repository root and break everywhere else."""
    offenders = [f"{py.relative_to(REPO)} imports {sorted(_top_level_imports(py) & set(NOT_INSTALLED))}"
                 for py in sorted((REPO / folder).rglob("*.py")) if _top_level_imports(py) & set(NOT_INSTALLED)]
    assert not offenders, "\n".join(offenders)


USER_PACKAGES = {
    # a research repository's own packages, named like ours; importing either must never happen
    "models/__init__.py": "raise ImportError('the user models package was imported instead of albench.models')\n",
    "strategies/__init__.py": "raise ImportError('the user strategies package was imported instead of "
                              "albench.strategies')\n",
    "bench/__init__.py": "raise ImportError('the user bench package was imported instead of albench')\n",
}


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """(python of a fresh venv holding albench's wheel, that wheel's path). The venv sees this
    interpreter's site-packages for torch and the other dependencies, but albench itself comes from
    the wheel (checked by the tests)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "results", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".pytest_cache", ".benchmarks",
                                                              ".venv", ".cache", "site"))
    shutil.copytree(REPO / "results" / "reference", src / "results" / "reference")
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dist), str(src)], check=True, cwd=tmp)
    wheel = next(dist.glob("albench-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, cwd=tmp)
    return python, wheel


@pytest.mark.slow
def test_wheel_installs_only_the_albench_namespace(installed_wheel):
    _, wheel = installed_wheel
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        names = set(zf.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"albench"}
    # the packaged configs and the contract suite travel with the wheel
    assert "albench/configs/quickstart.yaml" in names
    assert "albench/testing/test_contract.py" in names
    assert "albench/strategies/pretext/__init__.py" in names


@pytest.mark.slow
def test_runs_from_a_folder_with_its_own_models_and_strategies(installed_wheel, tmp_path):
    python, _ = installed_wheel
    for rel, text in USER_PACKAGES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)  # the user's folder first on the path, as in a notebook or `python -m`
    code = textwrap.dedent("""
        import importlib.util, sys
        import albench, albench.strategies, albench.models
        assert albench.__file__.startswith(sys.prefix), albench.__file__
        for name in ("benchmarks", "tests"):
            assert importlib.util.find_spec(name) is None, name
        from albench.strategies import strategy_names
        from albench.models import model_names
        assert "random" in strategy_names() and "small-cnn" in model_names()
        from albench.cli import main
        sys.exit(main(["run", "--dry-run"]))
    """)
    proc = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "random" in proc.stdout
    script = python.parent / "albench"
    proc = subprocess.run([str(script), "run", "--dry-run"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([str(python), "-m", "albench.cli", "list", "strategies"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "pt4al" in proc.stdout, proc.stdout + proc.stderr
