"""A third-party package adds a strategy through the ``albench.strategies`` entry-point group,
without editing albench. The test builds and installs a tiny plugin package into a folder and runs
albench with that folder on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Annotated

import pytest

from albench.typed import Bounds

PLUGIN_MODULE = '''
"""A toy strategy from outside albench: label the images with the highest pool index first."""
import numpy as np

from albench.strategies.base import Strategy


class HighestIndexFirst(Strategy):
    name = "highest-index-first"
    description = "toy plugin: the K highest unlabeled pool indices"

    def __init__(self, *, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset

    def select(self, *, cycle, budget, pool, inputs, rng):
        cand = np.sort(inputs.candidates.indices)
        return cand[len(cand) - budget - self.offset: len(cand) - self.offset]
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "albench-toy-plugin"
version = "0.0.1"

[project.entry-points."albench.strategies"]
highest-index-first = "toy_plugin:HighestIndexFirst"
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "toy_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    (src / "pyproject.toml").write_text(PYPROJECT)
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


def _albench(args, plugin_path, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "albench.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_plugin_strategy_is_listed_and_runs(plugin_path, tmp_path):
    proc = _albench(["list", "strategies"], plugin_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert any(line.split()[0] == "highest-index-first" for line in proc.stdout.splitlines())
    proc = _albench(["run", "--quiet", "--out", str(tmp_path / "r"), "--set", "strategies=highest-index-first",
                     "--set", "strategies.0.params.offset=1", "--set", "seeds=[0]", "--set", "al.cycles=2",
                     "--set", "al.initial=50", "--set", "al.budget=50", "--set", "train.epochs=1",
                     "--set", "train.min_steps=0", "--set", "executor.workers=1"], plugin_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    queries = json.loads((tmp_path / "r/quickstart/digits/highest-index-first/seed-0/queries.json").read_text())
    # pool of 1,500; 50 initial labels drawn at random; offset 1 skips the top unlabeled index
    unlabeled = sorted(set(range(1500)) - set(queries["0"]))
    assert queries["1"] == unlabeled[-51:-1]


def test_plugin_params_are_validated(plugin_path, tmp_path):
    proc = _albench(["run", "--dry-run", "--set", "strategies=highest-index-first",
                     "--set", "strategies.0.params.ofset=1"], plugin_path, tmp_path)
    assert proc.returncode == 2
    assert "strategies[0].params.ofset: unknown parameter for strategy 'highest-index-first'" in proc.stderr


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "albench.cli", "run", "--dry-run", "--set",
                           "strategies=highest-index-first"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown strategy" in proc.stderr


@pytest.mark.slow
def test_contract_suite_runs_on_the_installed_plugin(plugin_path, tmp_path):
    """The command in docs/plugins.md checks an entry-point plugin like a built-in (end-to-end left out for time)."""
    env = dict(os.environ, ALBENCH_STRATEGY="highest-index-first",
               PYTHONPATH=os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "albench.testing", "-q", "-p",
                           "no:cacheprovider", "-k", "not end_to_end"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


def test_keyword_only_init_params_with_plain_or_annotated_hints():
    """A plugin may declare params as keyword-only ``__init__`` arguments, plain or with declared
    bounds; they are validated like a built-in's ``Params`` dataclass."""
    from albench.errors import ConfigError
    from albench.strategies.base import Strategy

    class Plugin(Strategy):
        name = "kw-plugin"

        def __init__(self, *, offset: int = 0, temperature: Annotated[float, Bounds(gt=0)] = 1.0) -> None:
            super().__init__()
            self.offset, self.temperature = offset, temperature

        def select(self, *, cycle, budget, pool, inputs, rng):
            raise NotImplementedError

    assert set(Plugin.param_types()) == {"offset", "temperature"}
    assert Plugin.validate_params({"offset": 2.0, "temperature": 3}, "p") == {"offset": 2, "temperature": 3.0}
    with pytest.raises(ConfigError, match=r"p\.temperature: must be > 0 .*default: 1\.0"):
        Plugin.validate_params({"temperature": 0}, "p")
    with pytest.raises(ConfigError, match=r"p\.offset: must be an integer"):
        Plugin.validate_params({"offset": "one"}, "p")
    with pytest.raises(ConfigError, match=r"p\.ofset: unknown parameter.*did you mean 'p\.offset'"):
        Plugin.validate_params({"ofset": 1}, "p")
    assert Plugin(offset=3).offset == 3


def test_a_plugin_may_declare_a_params_dataclass():
    import dataclasses

    from albench.errors import ConfigError
    from albench.strategies.base import Strategy

    @dataclasses.dataclass(frozen=True)
    class PluginParams:
        k: Annotated[int, Bounds(ge=1)] = 5

    class Plugin(Strategy):
        name = "dc-plugin"
        Params = PluginParams

        def select(self, *, cycle, budget, pool, inputs, rng):
            raise NotImplementedError

    with pytest.raises(ConfigError, match=r"p\.k: must be >= 1"):
        Plugin.validate_params({"k": 0}, "p")
    s = Plugin(k=7)
    assert s.k == 7 and s.params == PluginParams(k=7)


def test_a_plugin_extending_a_builtin_with_its_own_keyword_only_init():
    """A plugin subclassing a built-in (which declares ``Params``) may still add keyword-only
    ``__init__`` params: its signature, not the inherited dataclass, then declares them."""
    from albench.errors import ConfigError
    from albench.strategies.uncertainty import Entropy

    class WarmEntropy(Entropy):
        name = "warm-entropy"

        def __init__(self, *, subset: int | None = None, temperature: Annotated[float, Bounds(gt=0)] = 1.0):
            super().__init__(subset=subset)
            self.temperature = temperature

    assert set(WarmEntropy.param_types()) == {"subset", "temperature"}
    assert WarmEntropy.validate_params({"temperature": 2}, "p") == {"temperature": 2.0}
    with pytest.raises(ConfigError, match=r"p\.temperature: must be > 0"):
        WarmEntropy.validate_params({"temperature": 0}, "p")
    s = WarmEntropy(subset=5, temperature=2.0)
    assert s.subset == 5 and s.temperature == 2.0
    assert set(Entropy.param_types()) == {"subset"}
