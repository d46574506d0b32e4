"""Config validation: every bad input is refused before anything runs, with one line naming the
field, the bad value and the fix, and exit code 2."""

from __future__ import annotations

import pytest

from albench.cli import main
from albench.config import apply_override, build_config, parse_override
from albench.validate import load_config
from albench.errors import ConfigError
from tests.conftest import write_yaml

# (description, config changes as --set overrides or a raw patch, substrings the message must hold)
BAD = [
    ("unknown top-level key", {"epochs": 5}, ["epochs: unknown config key", "did you mean"]),
    ("unknown nested key with suggestion", {"train": {"epoch": 5}}, ["train.epoch", "did you mean 'train.epochs'"]),
    ("unknown strategy", {"strategies": ["randon"]}, ["strategies[0].name", "unknown strategy", "'randon'",
                                                     "did you mean 'random'"]),
    ("unknown dataset", {"dataset": {"name": "cifar1000"}}, ["dataset.name", "unknown dataset", "'cifar1000'",
                                                             "albench list datasets"]),
    ("unknown model", {"model": {"name": "vgg16"}}, ["model.name", "unknown model", "'vgg16'"]),
    ("budget larger than the pool", {"al": {"initial": 500, "budget": 500, "cycles": 4}},
     ["al:", "needs 2000 labels", "pool has 1500 images", "lower al.initial"]),
    ("negative epochs", {"train": {"epochs": -3}}, ["train.epochs", "positive integer", "-3"]),
    ("epochs of the wrong type", {"train": {"epochs": "many"}}, ["train.epochs", "must be an integer", "'many'"]),
    ("bad literal", {"train": {"init": "hot"}}, ["train.init", "one of 'fresh', 'warm'", "'hot'"]),
    ("bad optimizer name", {"train": {"optimizer": {"name": "sgdd"}}}, ["train.optimizer.name", "did you mean 'sgd'"]),
    ("zero budget", {"al": {"budget": 0}}, ["al.budget", "positive integer", "0"]),
    ("duplicate seeds", {"seeds": [1, 1]}, ["seeds", "duplicates"]),
    ("unknown strategy param", {"strategies": [{"name": "entropy", "params": {"subsett": 10}}]},
     ["strategies[0].params.subsett", "unknown parameter for strategy 'entropy'", "known parameters: subset"]),
    ("bad strategy param value", {"strategies": [{"name": "entropy", "params": {"subset": 0}}]},
     ["strategies[0].params.subset", "must be >= 1 or null", "(default: null)"]),
    ("strategy listed twice", {"strategies": ["random", "random"]}, ["strategies", "more than once", "label"]),
    ("missing data root", {"dataset": {"name": "cifar10", "root": "/nonexistent/data"}},
     ["dataset.root", "does not exist", "/nonexistent/data"]),  # the key as written (dataset:)
    ("milestone beyond epochs", {"train": {"epochs": 10, "schedule": {"milestones": [20]}}},
     ["train.schedule.milestones", "outside 1..10"]),
    ("bad device", {"device": "tpu"}, ["device", "'tpu'", "auto"]),
    ("unknown quirk", {"strategies": [{"name": "random", "quirks": ["string_sort"]}]},
     ["strategies[0].quirks", "no quirk 'string_sort'"]),
    # declared params of models and strategies (issue 17 item 3, issue 16)
    ("unknown model param", {"model": {"params": {"widht": 32}}},
     ["model.params.widht", "unknown parameter for model 'small-cnn'", "did you mean 'model.params.width'"]),
    ("zero model width", {"model": {"params": {"width": 0}}}, ["model.params.width", "must be >= 1", "(got 0)"]),
    ("string model width", {"model": {"params": {"width": "wide"}}},
     ["model.params.width", "must be an integer", "'wide'"]),
    ("strategy param below its bound", {"strategies": [{"name": "vaal", "params": {"lr": 0}}]},
     ["strategies[0].params.lr", "must be > 0", "(default: 0.0005)"]),
    ("strategy fraction above its bound", {"strategies": [{"name": "learning-loss", "params": {"detach_at": 1.5}}]},
     ["strategies[0].params.detach_at", "<= 1"]),
    ("unknown param of a strategy's own model",
     {"strategies": [{"name": "pt4al", "params": {"pretext_model_params": {"widht": 8}}}]},
     ["strategies[0].params.pretext_model_params.widht", "unknown parameter for model 'resnet18-cifar'"]),
    ("zero width of a strategy's own model",
     {"strategies": [{"name": "pal", "params": {"scorer_model": "small-cnn", "scorer_params": {"width": 0}}}]},
     ["strategies[0].params.scorer_params.width", ">= 1"]),
    ("unknown model of a strategy", {"strategies": [{"name": "pal", "params": {"scorer_model": "small_cnn"}}]},
     ["strategies[0].params.scorer_model", "unknown model", "did you mean 'small-cnn'"]),
    # bad values that ran anyway or failed late (issue 16)
    ("NaN learning rate", {"train": {"optimizer": {"lr": float("nan")}}}, ["train.optimizer.lr", "(got nan)"]),
    ("infinite learning rate", {"train": {"optimizer": {"lr": float("inf")}}}, ["train.optimizer.lr", "finite"]),
    ("NaN weight decay", {"train": {"optimizer": {"weight_decay": float("nan")}}},
     ["train.optimizer.weight_decay", "(got nan)"]),
    ("infinite weight decay", {"train": {"optimizer": {"weight_decay": float("inf")}}},
     ["train.optimizer.weight_decay", "finite"]),
    ("negative schedule gamma", {"train": {"schedule": {"gamma": -0.1}}}, ["train.schedule.gamma", ">= 0"]),
    ("NaN validation size", {"train": {"validation": {"size": float("nan")}}},
     ["train.validation.size", "(got nan)"]),
    ("device cudaX", {"device": "cudaX"}, ["device", "'cudaX'", "cuda:N"]),
    ("device cuda:", {"device": "cuda:"}, ["device", "'cuda:'"]),
    ("NUL byte in the sweep name", {"name": "sweep\0x"}, ["name:", "NUL"]),
    ("NUL byte in the output", {"output": "res\0ults"}, ["output:", "NUL"]),
    ("empty output", {"output": ""}, ["output:", "not empty", "--out"]),
    # path traversal: names that become folders must be single components (issue 16 item 1)
    ("strategy label climbing out", {"strategies": [{"name": "random", "label": "../../../escaped"}]},
     ["strategies[0].label", "single folder name", "'../../../escaped'"]),
    ("strategy label nesting folders", {"strategies": [{"name": "random", "label": "a/b"}]},
     ["strategies[0].label", "single folder name"]),
    ("strategy label '..'", {"strategies": [{"name": "random", "label": ".."}]}, ["strategies[0].label"]),
    ("sweep name '..'", {"name": ".."}, ["name:", "single folder name"]),
    ("sweep name with a backslash", {"name": "a\\b"}, ["name:", "single folder name"]),
    ("dataset name climbing out", {"dataset": {"name": "../digits"}}, ["dataset.name", "single folder name"]),
    # found by fuzzing (issue 16): memory blow-ups, folder names too long, outputs that cannot be written
    ("a seed count too large for memory", {"seeds": 10 ** 23}, ["seeds:", "more than 1000 seeds"]),
    ("a seed beyond 64 bits", {"seeds": [2 ** 64]}, ["seeds:", "below 2**63"]),
    ("a sweep name too long for a folder", {"name": "a" * 300}, ["name:", "longer than 128 bytes"]),
    ("a strategy label too long for a folder", {"strategies": [{"name": "random", "label": "é" * 100}]},
     ["strategies[0].label", "longer than 128 bytes"]),
    ("a million threads", {"threads": 10 ** 6}, ["threads:", "1..1024"]),
    ("output is a file", {"output": "/etc/passwd"}, ["output:", "is a file, not a folder"]),
    ("output under a file", {"output": "/etc/passwd/results"}, ["output:", "cannot be written", "/etc/passwd"]),
    # Slurm timing (issue 16, Slurm item 2)
    ("signal delay at the time limit", {"executor": {"slurm": {"time_min": 5, "signal_delay_s": 300}}},
     ["executor.slurm.signal_delay_s", "below time_min x 60 = 300 s", "time_min is 5", "(got 300)"]),
    ("signal delay beyond the time limit", {"executor": {"slurm": {"time_min": 1, "signal_delay_s": 120}}},
     ["executor.slurm.signal_delay_s", "time_min"]),
    ("negative signal delay", {"executor": {"slurm": {"signal_delay_s": -5}}},
     ["executor.slurm.signal_delay_s", ">= 0", "(got -5)"]),
    ("signal delay beyond Slurm's maximum", {"executor": {"slurm": {"time_min": 2000, "signal_delay_s": 70000}}},
     ["executor.slurm.signal_delay_s", "65536"]),
    ("negative max_requeues", {"executor": {"slurm": {"max_requeues": -1}}}, ["executor.slurm.max_requeues", ">= 0"]),
    ("zero memory", {"executor": {"slurm": {"mem_gb": 0}}}, ["executor.slurm.mem_gb", "positive"]),
    ("NaN memory", {"executor": {"slurm": {"mem_gb": float("nan")}}}, ["executor.slurm.mem_gb", "(got nan)"]),
]


def _merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("desc,patch,needles", BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(desc, patch, needles, tiny_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALBENCH_DATA", raising=False)
    path = write_yaml(tmp_path / "bad.yaml", _merge(tiny_raw, patch))
    rc = main(["run", str(path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("albench: error: ")
    assert "fix:" in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written


def test_missing_root_without_env(tiny_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALBENCH_DATA", raising=False)
    path = write_yaml(tmp_path / "c.yaml", _merge(tiny_raw, {"dataset": {"name": "cifar10"}}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "dataset.root" in err and "datasets[0]" not in err and "ALBENCH_DATA" in err


def test_bad_set_override_and_cli_usage(tmp_path, capsys):
    assert main(["run", "--set", "train.epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--executor", "cloud"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_missing_and_malformed_config_files(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    assert main(["run", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_set_overrides_any_key(tiny_raw):
    cfg = build_config(tiny_raw, ["train.epochs=7", "strategies=random,entropy", "seeds=4",
                                  "strategies.1.params.subset=100", "train.optimizer.lr=0.01"])
    assert cfg.train.epochs == 7
    assert [s.name for s in cfg.strategies] == ["random", "entropy"]
    assert cfg.strategies[1].params == {"subset": 100}
    assert cfg.seeds == [0, 1, 2, 3]
    assert cfg.train.optimizer.lr == 0.01


def test_parse_override_yaml_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)
    raw = {"strategies": ["random"]}
    apply_override(raw, ["strategies", "0", "params", "x"], 1)
    assert raw == {"strategies": [{"name": "random", "params": {"x": 1}}]}
    with pytest.raises(ConfigError, match="list index out of range"):
        apply_override(raw, ["strategies", "3", "name"], "x")


@pytest.mark.parametrize("config", ["quickstart.yaml", "cifar10-cpu.yaml"])
def test_packaged_configs_list_every_builtin_classification_strategy(config):
    from albench.config import build_config, quickstart_path, read_yaml
    from albench.strategies.registry import _builtin_modules, get_strategy, strategy_names

    cfg = build_config(read_yaml(quickstart_path().parent / config))
    listed = {s.name for s in cfg.strategies}
    builtin = {n for n in strategy_names() if get_strategy(n).__module__ in _builtin_modules()
               and "classification" in get_strategy(n).tasks}
    assert builtin <= listed, f"{config} misses {sorted(builtin - listed)}"


def test_quickstart_is_the_default_config():
    cfg = load_config(None)
    assert cfg.name == "quickstart" and cfg.datasets[0].name == "digits" and len(cfg.seeds) == 5
    assert cfg.model.name == "small-cnn" and cfg.device == "auto"


def test_dataset_shorthand_overrides(tiny_raw):
    cfg = build_config(tiny_raw, ["dataset.root=/data", "dataset.params.x=1"])
    assert cfg.datasets[0].name == "digits" and cfg.datasets[0].root == "/data"
    assert cfg.datasets[0].params == {"x": 1}
    cfg = build_config(tiny_raw, ["dataset=cifar10"])
    assert cfg.datasets[0].name == "cifar10"


def test_data_root_from_environment(tiny_raw, tmp_path, monkeypatch):
    monkeypatch.setenv("ALBENCH_DATA", str(tmp_path))
    cfg = build_config(_merge(tiny_raw, {"dataset": {"name": "cifar10"}}))
    assert cfg.datasets[0].resolved_root() == str(tmp_path)


def test_annotated_bounds_are_enforced_and_named():
    from typing import Annotated

    from albench.errors import ConfigError
    from albench.typed import Bounds, coerce

    subset = Annotated[int | None, Bounds(ge=1)]
    assert coerce(subset, None, "params.subset") is None
    assert coerce(subset, 5, "params.subset") == 5
    for bad in (0, -3):
        with pytest.raises(ConfigError, match=r"params\.subset.*>= 1"):
            coerce(subset, bad, "params.subset")
    with pytest.raises(ConfigError, match=r"params\.lr"):
        coerce(Annotated[float, Bounds(gt=0)], float("nan"), "params.lr")


def _imported_modules(path: str) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(path).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_config_and_plan_do_not_import_each_other():
    """albench.config sits below albench.plan: it imports neither the plan nor the module that needs
    both (albench.validate), not even lazily inside a function, so there is no import cycle."""
    import subprocess
    import sys

    import albench.config
    import albench.plan

    assert not {"albench.plan", "albench.validate"} & _imported_modules(albench.config.__file__)
    assert "albench.validate" not in _imported_modules(albench.plan.__file__)
    for first in ("albench.config", "albench.plan"):
        code = f"import sys, {first}; print('albench.validate' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "False"


def test_unknown_model_param_exits_2_on_a_dry_run():
    """The issue's done-when: a typo in model.params is refused at load, naming the field."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "albench.cli", "run", "--set", "model.params.widht=32", "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("albench: error: model.params.widht: "), proc.stderr
    assert "did you mean 'model.params.width'" in lines[0]
    assert proc.stdout == ""


def test_model_params_declare_every_builder_argument():
    """Each model's Params dataclass declares every keyword its builder takes, with the same default,
    so a param the builder accepts is never refused at load (and vice versa for what it declares)."""
    import inspect

    from albench.typed import param_spec
    from albench.models.registry import BUILDER_ARGS, model_entry, model_names

    for name in model_names():
        entry = model_entry(name)
        assert entry.params is not None, f"model {name!r} declares no params type"
        declared = param_spec(entry.params)
        sig = inspect.signature(entry.builder).parameters
        for arg, p in sig.items():
            if arg in BUILDER_ARGS:
                continue
            assert arg in declared, f"{name}: builder argument {arg!r} is not declared in {entry.params.__name__}"
            assert declared[arg][1] == p.default, (name, arg)


def test_every_builtin_strategy_declares_a_params_type():
    """Built-in strategies declare a frozen Params dataclass; instances mirror its fields."""
    import dataclasses

    from albench.strategies.registry import _builtin_modules, get_strategy, make_strategy, strategy_names

    for name in strategy_names():
        cls = get_strategy(name)
        if cls.__module__ not in _builtin_modules():
            continue
        assert cls.Params is not None and dataclasses.is_dataclass(cls.Params), name
        assert cls.Params.__dataclass_params__.frozen, name
        s = make_strategy(name, {})
        for f in dataclasses.fields(cls.Params):
            assert hasattr(s, f.name), (name, f.name)


def test_pt4al_ablation_shares_the_pretext_params():
    from albench.strategies.pt4al import PretextParams
    from albench.strategies.registry import get_strategy

    pretext = {f for f in PretextParams.__dataclass_fields__}
    for name in ("pt4al", "pt4al-pretext-only"):
        assert issubclass(get_strategy(name).Params, PretextParams)
        assert pretext <= set(get_strategy(name).param_types())
    with pytest.raises(ConfigError, match=r"params\.pretext_batch_size.*>= 2"):
        get_strategy("pt4al-pretext-only").validate_params({"pretext_batch_size": 1}, "params")


# ---------------------------------------------------------------------------------------------
# hostile config files and --set values (issue 16, security item 3): refused fast, exit 2, one line

_BOMB = ('[&a ["x","x","x","x","x","x","x","x","x"], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], '
         '&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], '
         '&f [*e,*e,*e,*e,*e,*e,*e,*e,*e], &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], [*g,*g,*g,*g,*g,*g,*g,*g,*g]]')


def _bomb_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"name: bomb\ndataset: digits\nmodel:\n  name: small-cnn\n  params:\n    width: {_BOMB}\n"
                    f"output: {tmp_path / 'results'}\n")
    return [str(path)]


def _bomb_set(tmp_path):
    return ["--set", f"model.params.width={_BOMB}", "--set", f"output={tmp_path / 'results'}"]


def _huge_file(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:  # sparse: 3 GB long, no disk used
        fh.truncate(3 * 1024 ** 3)
    return [str(path)]


def _billion_seeds(tmp_path):  # the list 0..N-1 was built before any check: gigabytes, then killed
    return ["--set", "seeds=1000000000", "--set", f"output={tmp_path / 'results'}"]


HOSTILE = [  # (description, argv builder, substrings of the one error line)
    ("alias bomb under model.params", _bomb_file, ["CONFIG", "more than 100000 YAML nodes"]),
    ("alias bomb in a --set value", _bomb_set, ["--set model.params.width", "more than 100000 YAML nodes"]),
    ("a 3 GB config file", _huge_file, ["CONFIG", "larger than 256 KiB"]),
    ("a billion seeds", _billion_seeds, ["seeds:", "more than 1000 seeds"]),
]


@pytest.mark.parametrize("desc,argv,needles", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_config_is_refused_fast(desc, argv, needles, tmp_path):
    """In a subprocess with a timeout, so a regression fails the test instead of hanging the suite."""
    import subprocess
    import sys

    from tests.conftest import REPO

    try:
        proc = subprocess.run([sys.executable, "-m", "albench.cli", "run", *argv(tmp_path), "--dry-run"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{desc}: albench still parsing after 60 s")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("albench: error: ") and "fix:" in lines[0], proc.stderr[-2000:]
    assert len(lines[0]) < 600  # the bad value is shown cut short, not expanded
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "results").exists()


MALFORMED_FILES = [  # (description, file bytes, substrings of the one error line)
    ("recursive alias", b"name: &a [*a]\n", ["CONFIG", "refers to itself"]),
    ("nesting too deep to parse", b"name: " + b"[" * 2000 + b"]" * 2000 + b"\n", ["CONFIG", "nests too deeply"]),
    ("many plain nodes", b"seeds: [" + b"0, " * 2000 + b"0]\n", ["CONFIG", "more than 1000 YAML nodes"]),
    ("just over the size limit", b"#" * (256 * 1024) + b"\nname: x\n", ["CONFIG", "larger than 256 KiB"]),
    ("not UTF-8", b"name: \xff\xfe\n", ["CONFIG", "not UTF-8"]),
    ("an integer of 5000 digits", b"seeds: " + b"9" * 5000 + b"\n", ["CONFIG", "cannot be read", "4300 digits"]),
]


@pytest.mark.parametrize("desc,blob,needles", MALFORMED_FILES, ids=[m[0] for m in MALFORMED_FILES])
def test_malformed_config_files_exit_2_with_one_line(desc, blob, needles, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("albench.config.MAX_YAML_NODES", 1000)  # a small bound keeps the plain-nodes case quick
    path = tmp_path / "bad.yaml"
    path.write_bytes(blob)
    assert main(["run", str(path), "--dry-run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("albench: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_folder_as_config_is_bad_input(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--dry-run"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_legitimate_aliases_still_load():
    """quickstart.yaml shares PT4AL's pretext params through an anchor; a bounded loader keeps that."""
    from albench.config import expanded_node_count, load_yaml_text, quickstart_path

    assert "&pt4al_pretext" in quickstart_path().read_text()
    cfg = load_config(None, check_data=False)
    assert sum(s.name.startswith("pt4al") for s in cfg.strategies) >= 2
    assert load_yaml_text("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    # shared nodes count once per use: 1 mapping + 2 keys + 2 x (list + 2 ints)
    assert expanded_node_count(yaml_compose("a: &x [1, 2]\nb: *x\n")) == 9


def yaml_compose(text):
    import yaml

    return yaml.compose(text, Loader=yaml.SafeLoader)


def test_hostile_reference_file_is_refused_fast(tmp_path):
    """``albench verify --reference`` reads YAML with the same bounds as a config."""
    import subprocess
    import sys

    from tests.conftest import REPO

    ref = tmp_path / "ref.yaml"
    ref.write_text(f"checks: {_BOMB}\n")
    code = "import sys\nfrom albench.reports.verify import load_reference\nload_reference(sys.argv[1])"
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(ref)], capture_output=True, text=True, timeout=60,
                              env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail("load_reference still parsing an alias bomb after 60 s")
    assert "ConfigError: --reference: expands to more than 100000 YAML nodes" in proc.stderr, proc.stderr[-1000:]
