"""Malformed-input probe: feed albench's CLI over a thousand malformed inputs and count what happens.

    nice -n 19 python benchmarks/malformed_probe.py --work /tmp/probe            # everything
    python benchmarks/malformed_probe.py --work /tmp/probe --only config --limit 50

Families of inputs (each case is one ``albench`` command line against files the probe writes):

- ``field``: every declared field of the config schema, of every registered strategy's params and
  of every registered model's params, given values of the wrong kind or out of range (text for a
  number, a list, a mapping, NaN, +-inf, 1e30, 2**63, a lone surrogate, a NUL byte ...), each under
  ``albench run --dry-run``; a control case per strategy and model (a valid value) must pass;
- ``config``: malformed files and command lines (YAML syntax, keys given twice, alias bombs, deep
  nesting, wrong top-level shapes, unknown keys, garbage bytes, files that are folders or FIFOs,
  paths too long, bad ``--set``/``--workers``/``--executor``/``--lines``/``--tsne-*`` values,
  devices and executors that do not exist, bad MLflow URIs, bad verify reference files);
- ``data``: malformed data files (npz, CIFAR-10 batches, MNIST idx, SVHN .mat, image folders) and
  pool options;
- ``record``: one complete sweep, copied, with one record of one run damaged (truncated, garbled,
  empty, not UTF-8, wrong-typed fields, a folder, a FIFO, a link out of the run), then ``show``,
  ``status``, ``report`` or ``run``;
- ``link``: folders and records inside the output root replaced by links to an outside folder, then
  ``run`` (dry, real, --restart-damaged), ``report``.

Each case runs in a forked child (stdout/stderr to files) with a timeout. Outcomes:

- ``refused``: refused cleanly: exit 2 with one ``albench: error:`` line naming the field (for field
  cases: the probed field itself), or, for a damaged record, the command names the damaged run and
  leaves its folder byte-identical (show exits 0, status/run exit 1);
- ``accepted``: the command went on (exit 0, or a run that failed later with exit 1);
- ``traceback``: a Python traceback was printed, the child raised, or died by a signal;
- ``hang``: it did not end within the timeout (killed);
- ``link-write``: something outside the output root changed through a link (counted on top of the
  outcome above).

The counts and every case's outcome go to ``<work>/probe.json``; non-refused cases are listed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import struct
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 1, "batch_size": 32, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 2},
    "strategies": ["random"],
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 16},
}


@dataclass
class Case:
    family: str
    name: str
    argv: list[str]
    kind: str = "refuse"  # refuse | record | control
    field: str | None = None  # the field a refusal must name
    run_dir: Path | None = None  # record cases: the damaged run's folder
    outside: Path | None = None  # link cases: the folder that must not change
    timeout: float = 120.0
    cwd: Path | None = None


@dataclass
class Result:
    case: Case
    rc: int | None
    outcome: str
    seconds: float
    err_tail: str
    link_write: bool = False
    note: str = ""


# ---------------------------------------------------------------------------------------------
# running one case


def _tree(root: Path | None) -> dict:
    if root is None or not os.path.lexists(root):
        return {}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = os.lstat(p)
                data = p.read_bytes() if os.path.isfile(p) and not os.path.islink(p) else None
            except OSError:
                data = None
                st = None
            out[str(p.relative_to(root))] = (st.st_mode if st else None, st.st_size if st else None, data)
    return out


def run_case(case: Case, logs: Path) -> Result:
    out_path, err_path = logs / "out.txt", logs / "err.txt"
    before_run = _tree(case.run_dir) if case.run_dir is not None else None
    before_outside = _tree(case.outside) if case.outside is not None else None
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: run the command, report its exit code
        code = 97
        try:
            os.setsid()
            fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            if case.cwd is not None:
                os.chdir(case.cwd)
            from albench.cli import main

            try:
                code = main(case.argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - an uncaught exception is what we count
                traceback.print_exc()
                code = 99
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            os._exit(code if isinstance(code, int) else 98)
    rc, status = None, None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > case.timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            status = None
            break
        time.sleep(0.02)
    seconds = time.monotonic() - start
    err = err_path.read_text(errors="replace") if err_path.exists() else ""
    out = out_path.read_text(errors="replace") if out_path.exists() else ""
    tail = "\n".join(err.strip().splitlines()[-3:])[-600:]
    if status is None:
        return Result(case, None, "hang", seconds, tail)
    if os.WIFSIGNALED(status):
        return Result(case, None, "traceback", seconds, tail, note=f"killed by signal {os.WTERMSIG(status)}")
    rc = os.WEXITSTATUS(status)
    link_write = case.outside is not None and _tree(case.outside) != before_outside
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out or rc in (97, 98, 99):
        return Result(case, rc, "traceback", seconds, tail, link_write)
    outcome, note = classify(case, rc, out, err, before_run)
    return Result(case, rc, outcome, seconds, tail, link_write, note)


def classify(case: Case, rc: int, out: str, err: str, before_run: dict | None) -> tuple[str, str]:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    error_line = next((ln for ln in lines if ln.startswith("albench: error: ")), None)
    if case.kind == "control":
        return ("accepted", "") if rc == 0 else ("refused", f"control refused: {error_line}")
    if case.kind == "record":
        changed = _tree(case.run_dir) != before_run
        if changed:
            return "accepted", "the damaged run's folder changed"
        named = str(case.run_dir) in out + err or case.run_dir.name in out and "damaged" in out
        if rc == 2 and error_line:
            return "refused", "refused as bad input"
        if named and "damaged" in (out + err) and rc in (0, 1):
            return "refused", ""
        return "accepted", f"exit {rc}, damaged run not named"
    if rc == 2 and error_line is not None and len([ln for ln in lines if "error" in ln.lower()]) >= 1:
        if case.field is not None and not error_line.startswith(f"albench: error: {case.field}") \
                and f" {case.field}" not in error_line and f"{case.field}:" not in error_line:
            return "refused", f"names another field: {error_line[:160]}"
        return "refused", ""
    if rc == 2:  # argparse's own one-line errors: 'albench: error: ... (see ...)'
        return ("refused", "") if error_line else ("accepted", f"exit 2 without an error line")
    return "accepted", f"exit {rc}"


# ---------------------------------------------------------------------------------------------
# case builders


def _yaml(v: Any) -> str:
    """Flow-style YAML for a --set value (NaN and infinities spelled as YAML spells them)."""
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a double-quoted YAML string: \\u escapes included
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    if v is None:
        return "null"
    return str(v)


BAD_INT = [("text", "abc"), ("list", [1]), ("mapping", {"a": 1}), ("fraction", 1.5), ("nan", float("nan")),
           ("inf", float("inf")), ("1e30", 10 ** 30), ("-1e30", -(10 ** 30)), ("2^63", 2 ** 63), ("bool", True)]
BAD_FLOAT = [("text", "abc"), ("list", [1.0]), ("mapping", {"a": 1}), ("nan", float("nan")), ("inf", float("inf")),
             ("-inf", float("-inf")), ("bool", True), ("1e400", 10 ** 400)]
BAD_STR = [("number", 123), ("list", ["a"]), ("mapping", {"a": "b"}), ("surrogate", "\udc80"), ("nul", "a\0b")]
BAD_BOOL = [("text", "maybe"), ("number", 2), ("list", [True])]
BAD_LITERAL = [("unknown", "nonsense-value"), ("number", 5), ("list", ["a"])]


def _kinds(tp) -> tuple[set, set]:
    """(scalar kinds, literal values) a declared type takes."""
    import types
    import typing
    from typing import Annotated, Literal, Union, get_args, get_origin

    kinds, literals = set(), set()
    stack = [tp]
    while stack:
        t = stack.pop()
        o = get_origin(t)
        if o is Annotated:
            stack.append(get_args(t)[0])
        elif o in (Union, types.UnionType):
            stack.extend(a for a in get_args(t) if a is not type(None))
        elif o is Literal:
            literals.update(get_args(t))
        elif o is list:
            kinds.add("list")
            stack.extend(get_args(t))
        elif o is dict or t is dict:
            kinds.add("dict")
        elif t in (int, float, str, bool):
            kinds.add(t)
        elif t is typing.Any:
            kinds.add("any")
    return kinds, literals


def _bad_values(tp) -> list[tuple[str, Any]]:
    kinds, literals = _kinds(tp)
    if "any" in kinds or "dict" in kinds:
        return []
    if literals:
        return [(n, v) for n, v in BAD_LITERAL
                if not any(v == lit for lit in literals) and not (kinds & {str} and isinstance(v, str))]
    if kinds == {int} or kinds == {int, "list"}:
        vals = BAD_INT
    elif float in kinds and str not in kinds:
        vals = BAD_FLOAT
    elif kinds == {str} or kinds == {str, "list"}:
        vals = BAD_STR
    elif kinds == {bool}:
        vals = BAD_BOOL
    else:
        return []
    if "list" in kinds:  # each bad value inside the list, and one that is no list at all
        return [(f"item-{n}", [v]) for n, v in vals if not isinstance(v, list)] + [("not-a-list", "abc")]
    return vals


def _leaves(cls, prefix=""):
    import dataclasses
    from typing import Annotated, get_args, get_origin

    from albench.typed import param_spec

    out = []
    for name, (tp, _) in param_spec(cls).items():
        base = get_args(tp)[0] if get_origin(tp) is Annotated else tp
        if dataclasses.is_dataclass(base):
            out += _leaves(base, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", tp))
    return out


# strategies whose defaults do not fit the probe's base config, and the base changes that make a
# valid control case pass (a control that still fails is reported, and its field cases skipped)
_DROPOUT_MODEL = {"model": {"name": "small-cnn", "params": {"width": 8, "dropout": 0.3}}}
STRATEGY_BASE: dict[str, dict] = {name: _DROPOUT_MODEL for name in  # the MC-dropout strategies need dropout
                                  ("bald", "batchbald", "variation-ratios", "mean-std", "mc-entropy")}
# models whose required params have no default: the params of a valid control case
MODEL_PARAMS: dict[str, dict] = {
    "head": {"features": "simclr"},
}


def field_cases(work: Path) -> list[Case]:
    from albench.config import Config
    from albench.models.registry import model_entry, model_names
    from albench.strategies.registry import get_strategy, strategy_names

    cases = []
    base_dir = work / "field"
    base_dir.mkdir(parents=True, exist_ok=True)

    def cfg_file(name: str, raw: dict) -> Path:
        p = base_dir / f"{name}.yaml"
        raw = copy.deepcopy(raw)
        raw["output"] = str(base_dir / "out")
        p.write_text(yaml.safe_dump(raw, sort_keys=False))
        return p

    base = cfg_file("base", TINY)
    cases.append(Case("field", "control:base", ["run", str(base), "--dry-run"], kind="control"))
    for key, tp in _leaves(Config):
        if key in ("output", "name"):
            continue  # probed among the config cases (paths and folder names)
        for label, v in _bad_values(tp):
            cases.append(Case("field", f"{key}={label}", ["run", str(base), "--dry-run", "--set", f"{key}={_yaml(v)}"],
                              field=key))
    for name in strategy_names():
        raw = copy.deepcopy(TINY)
        raw.update(copy.deepcopy(STRATEGY_BASE.get(name, {})))
        raw["strategies"] = [name]
        path = cfg_file(f"strategy-{name}", raw)
        cases.append(Case("field", f"control:strategy:{name}", ["run", str(path), "--dry-run"], kind="control"))
        for key, (tp, _) in get_strategy(name).param_types().items():
            for label, v in _bad_values(tp):
                spec = {"name": name, "params": {key: v}}
                cases.append(Case("field", f"strategy:{name}.{key}={label}",
                                  ["run", str(path), "--dry-run", "--set", f"strategies=[{_yaml(spec)}]"],
                                  field=f"strategies[0].params.{key}"))
    for name in model_names():
        entry = model_entry(name)
        if "classification" not in entry.tasks:
            continue
        raw = copy.deepcopy(TINY)
        raw["model"] = {"name": name, "params": copy.deepcopy(MODEL_PARAMS.get(name, {}))}
        path = cfg_file(f"model-{name.replace(':', '_')}", raw)
        cases.append(Case("field", f"control:model:{name}", ["run", str(path), "--dry-run"], kind="control"))
        for key, (tp, _) in entry.param_types().items():
            for label, v in _bad_values(tp):
                cases.append(Case("field", f"model:{name}.{key}={label}",
                                  ["run", str(path), "--dry-run", "--set", f"model.params.{key}={_yaml(v)}"],
                                  field=f"model.params.{key}"))
    return cases


def config_cases(work: Path) -> list[Case]:
    d = work / "config"
    d.mkdir(parents=True, exist_ok=True)
    out = str(d / "out")
    cases = []

    def file_case(name: str, text: str | bytes, extra: list[str] = (), field: str | None = "CONFIG") -> None:
        p = d / f"{name}.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        own_output = field == "output"  # the file's own output: is it refused?
        cases.append(Case("config", f"file:{name}", ["run", str(p), "--dry-run", *([] if own_output else ["--out", out]),
                                                     *extra], field=field))

    base = yaml.safe_dump(TINY, sort_keys=False)
    # keys given twice, at every level
    file_case("dup-name", "name: a\n" + base + "name: b\n")
    file_case("dup-al", base + "al: {initial: 20}\n")
    file_case("dup-train-epochs", base.replace("train:\n", "train:\n  epochs: 9\n", 1))
    file_case("dup-strategies", base + "strategies: [entropy]\n")
    file_case("dup-in-list-item", base + "datasets: [{name: digits, name: digits}]\n")
    file_case("dup-seeds", base + "seeds: [1]\n")
    file_case("dup-output", f"output: {out}\n" + base + f"output: {out}/2\n")
    file_case("dup-nested-3", base.replace("optimizer:\n", "optimizer:\n      lr: 0.2\n", 1)
              if "optimizer:\n" in base else base + "train: {optimizer: {lr: 1, lr: 2}}\n")
    file_case("dup-quoted-and-plain", 'name: a\n"name": b\n' + "dataset: digits\n")
    file_case("dup-tracking", base + "tracking: {tensorboard: false, tensorboard: true}\n")
    # YAML that is not valid, or not a mapping
    for i, bad in enumerate(["name: [unclosed", "a: b: c", "- just\n- a list", "'unterminated", "key: \"\\xZZ\"",
                             "name: a\n  bad indent: b", "[1, 2, 3]", "42", "just text", "{a: 1",
                             "%YAML 9.9\n---\na: 1", "a: !!python/object:os.system ls", "a: !!binary ZZZ",
                             "? [1, 2]\n: complex key", "---\na: 1\n---\nb: 2", "&a [*a]", "a: *undefined"]):
        file_case(f"yaml-{i}", bad)
    file_case("alias-bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
              "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n")
    file_case("deep-nesting", "a: " + "[" * 5000 + "]" * 5000)
    file_case("deep-mapping", "a: " + "{b: " * 3000 + "1" + "}" * 3000)
    file_case("huge-file", "# " + "x" * (300 * 1024))
    file_case("binary-garbage", bytes(range(256)) * 4)
    file_case("latin-1", "name: caf\xe9\n".encode("latin-1"))
    file_case("utf-16", "name: a\n".encode("utf-16"))
    file_case("huge-int", "seeds: [" + "9" * 5000 + "]")
    file_case("unknown-top-key", base + "epochz: 3\n", field="epochz")
    file_case("unknown-nested-key", base + "al: {initial: 20, budget: 20, cycles: 2, cycels: 3}\n")
    file_case("top-null-strategies", base + "strategies: null\n")
    file_case("strategies-number", base.replace("strategies:\n- random", "strategies: 5"), field="strategies")
    file_case("seeds-text", base.replace("seeds:\n- 0", "seeds: many"), field="seeds")
    file_case("seeds-zero", base.replace("seeds:\n- 0", "seeds: 0"), field="seeds")
    file_case("seeds-1e9", base.replace("seeds:\n- 0", "seeds: 1000000000"), field="seeds")
    file_case("seeds-dup", base.replace("seeds:\n- 0", "seeds: [1, 1]"), field="seeds")
    file_case("seeds-negative", base.replace("seeds:\n- 0", "seeds: [-1]"), field="seeds")
    file_case("dataset-and-datasets", base + "datasets: [digits]\n", field="dataset")
    file_case("datasets-empty", base.replace("dataset:\n  name: digits", "datasets: []"), field="datasets")
    file_case("strategies-empty", base.replace("strategies:\n- random", "strategies: []"), field="strategies")
    file_case("strategy-twice", base.replace("strategies:\n- random", "strategies: [random, random]"),
              field="strategies")
    file_case("baseline-unknown", base + "baseline: nobody\n", field="baseline")
    file_case("unknown-strategy", base.replace("- random", "- randomm"), field="strategies[0].name")
    file_case("unknown-dataset", base.replace("name: digits", "name: digitz"), field="datasets[0].name")
    file_case("unknown-model", base.replace("name: small-cnn", "name: big-cnn"), field="model.name")
    file_case("unknown-quirk", base.replace("- random", "- {name: random, quirks: [nope]}"), field="strategies[0].quirks")
    file_case("budget-beyond-pool", base.replace("initial: 20", "initial: 100000"), field="al")
    file_case("milestone-beyond-epochs", base + "train: {epochs: 2, schedule: {milestones: [5]}}\n")
    file_case("validation-2.5", base.replace("train:\n", "train:\n  validation: {size: 2.5}\n", 1),
              field="train.validation.size")
    for i, name in enumerate(["", ".hidden", "a/b", "..", "a\\b", "x" * 300, "\udc80", "a\0b"]):
        file_case(f"sweep-name-{i}", base.replace("name: tiny", f"name: {json.dumps(name)}"), field="name")
    for i, label in enumerate(["", ".x", "a/b", "x" * 200, "\udc80", "a\0b"]):
        file_case(f"label-{i}", base.replace("- random", f"- {{name: random, label: {json.dumps(label)}}}"),
                  field="strategies[0].label")
    # outputs and paths
    for i, o in enumerate(["", "/etc/passwd", "/etc/passwd/results", str(d / ("o" * 300)),
                           str(d / "/".join(["p" * 250] * 20)), "/proc/results", "a\0b"]):
        file_case(f"output-{i}", base + f"output: {json.dumps(o)}\n", field="output")
    for i, o in enumerate(["", "/etc/passwd", "/etc/passwd/results", str(d / ("o" * 300)),
                           str(d / "/".join(["p" * 250] * 20)), str(d / "/".join(["p" * 250] * 15)) + "/" + "q" * 200]):
        cases.append(Case("config", f"--out-{i}", ["run", "--dry-run", "--out", o], field="output"))
    # devices, executors, trackers
    for dev in ("cuda", "cuda:99", "cuda:-1", "tpu", "cpu:0", "cuda:1e3", ""):
        cases.append(Case("config", f"device={dev}", ["run", "--dry-run", "--out", out, "--set", f"device={dev}"],
                          field="device"))
    cases.append(Case("config", "executor=bogus", ["run", "--dry-run", "--out", out, "--executor", "bogus"]))
    cases.append(Case("config", "executor=slurm-without-slurm",
                      ["run", "--dry-run", "--out", out, "--executor", "slurm"], field="executor.name"))
    for w in ("0", "-1", "abc", str(10 ** 30), "5000", "1.5", ""):
        cases.append(Case("config", f"--workers={w}", ["run", "--dry-run", "--out", out, "--workers", w],
                          field="executor.workers" if w not in ("abc", "1.5", "") else None))
    for uri in ("mlr\0uns", "ftp://nowhere", "/etc/passwd/mlruns", "/proc", "/sys/x", "http://:80",
                "http://h:99999", "sqlite:////etc/passwd/x.db", "mlruns\n", "gopher://x", "http://127.0.0.1:9",
                "file:///dev/null/x", " ", "x" * 5000):
        cases.append(Case("config", f"mlflow={uri[:30]!r}",
                          ["run", "--out", out, "--set", f"tracking.mlflow={json.dumps(uri)}",
                           *(["--dry-run"] if "127.0.0.1" not in uri else [])], field="tracking.mlflow"))
    for v in ("yes-please", "1", "[true]"):
        cases.append(Case("config", f"tensorboard={v}", ["run", "--dry-run", "--out", out, "--set", f"tracking.tensorboard={v}"],
                          field="tracking.tensorboard"))
    # --set itself
    for i, s in enumerate(["noequals", "=5", "a..b=1", ".=1", "strategies.9.name=x", "seeds.x=1", "train.epochs.x=1",
                           "dataset=1", "train=[1]", "al=5", "strategies=all,random", "seeds=-3",
                           "train={epochs: 1, epochs: 2}", "model.params=7", f"name={'x' * 300}"]):
        cases.append(Case("config", f"--set-{i}", ["run", "--dry-run", "--out", out, "--set", s]))
    # files that are not files
    fifo = d / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    folder = d / "folder.yaml"
    folder.mkdir(exist_ok=True)
    long_path = str(d / ("d" * 200) / "/".join(["e" * 200] * 25) / "c.yaml")
    long_name = str(d / ("n" * 300 + ".yaml"))
    for label, p in (("fifo", fifo), ("folder", folder), ("missing", d / "missing.yaml"), ("long-path", long_path),
                     ("long-name", long_name), ("dev-null", "/dev/null"), ("dev-zero", "/dev/zero")):
        cases.append(Case("config", f"CONFIG={label}", ["run", str(p), "--dry-run"], field="CONFIG"))
        cases.append(Case("config", f"show={label}", ["show", str(p)], field="RESULTS_DIR"))
        cases.append(Case("config", f"status={label}", ["status", str(p)], field="RESULTS_DIR"))
        cases.append(Case("config", f"report={label}", ["report", str(p)], field="RESULTS_DIR"))
        cases.append(Case("config", f"verify={label}", ["verify", str(p), "--reference",
                                                         str(REPO / "results/reference/pt4al-eccv2022.yaml")],
                          field="RESULTS_DIR"))
        cases.append(Case("config", f"status--config={label}", ["status", str(d), "--config", str(p)], field="CONFIG"))
        cases.append(Case("config", f"reference={label}", ["verify", str(d), "--reference", str(p)],
                          field="--reference"))
    # other commands' arguments
    empty = d / "empty-results"
    empty.mkdir(exist_ok=True)
    for argv in (["list", "bogus"], ["show"], ["bogus"], [], ["status", str(empty), "--lines", "-1"],
                 ["status", str(empty), "--lines", "abc"], ["status", str(empty), "--lines", str(10 ** 30)],
                 ["report", str(empty), "--tsne-points", "0"], ["report", str(empty), "--tsne-points", str(10 ** 30)],
                 ["report", str(empty), "--tsne-threads", "-1"], ["report", str(empty), "--tsne-points", "abc"],
                 ["report", str(empty), "--out", "x" * 5000], ["show", str(empty)], ["status", str(empty)],
                 ["report", str(empty)], ["verify", str(empty), "--reference", "/nonexistent.yaml"],
                 ["run", "--dry-run", "--restart-everything"], ["status", "/etc/passwd"], ["show", "/etc/passwd"]):
        cases.append(Case("config", "argv:" + " ".join(a[:20] for a in argv)[:60], argv))
    # reference files for verify
    ref = yaml.safe_load((REPO / "results/reference/pt4al-eccv2022.yaml").read_text())
    res = work / "record" / "base" / "tiny"

    def ref_case(name: str, text: str) -> None:
        p = d / f"ref-{name}.yaml"
        p.write_text(text)
        cases.append(Case("config", f"reference:{name}", ["verify", str(res), "--reference", str(p)]))

    ref_case("dup-key", "schema: 1\nchecks: []\nschema: 1\n")
    ref_case("not-mapping", "[1, 2]")
    ref_case("no-checks", "schema: 1\n")
    ref_case("checks-not-list", "checks: 5\n")
    ref_case("check-not-mapping", "checks: [5]\n")
    for key, val in (("value", ".nan"), ("value", ".inf"), ("value", "'47%'"), ("tolerance", "-1"),
                     ("tolerance", ".inf"), ("cycle", "middle"), ("cycle", "-1"), ("quantity", "bogus"),
                     ("statistic", "median"), ("protocol", "offical"), ("scale", "nope"), ("range", "[2, 1]"),
                     ("tolerence", "1"), ("paper_seeds", str(10 ** 30)), ("id", "[1]")):
        c = copy.deepcopy(ref["checks"][0])
        raw = copy.deepcopy(ref)
        text = yaml.safe_dump({**raw, "checks": [c]}, sort_keys=False)
        text = text.replace(f"\n  {key}: ", f"\n  {key}_old: ", 1) if f"\n  {key}: " in text else text
        text = text.replace("checks:\n- ", f"checks:\n- {key}: {val}\n  ", 1)
        ref_case(f"{key}={val}", text)
    return cases


def data_cases(work: Path) -> list[Case]:
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    cases = []

    def data_case(name: str, dataset: str, write: Callable[[Path], None] | None, params: dict | None = None,
                  root: str | None = None) -> None:
        r = d / name
        r.mkdir(exist_ok=True)
        if write is not None:
            write(r)
        raw = copy.deepcopy(TINY)
        raw["dataset"] = {"name": dataset, "root": root if root is not None else str(r), "params": params or {}}
        raw["output"] = str(d / "out")
        p = d / f"{name}.yaml"
        p.write_text(yaml.safe_dump(raw, sort_keys=False))
        cases.append(Case("data", f"{name}:dry", ["run", str(p), "--dry-run"], field="datasets[0]"))
        cases.append(Case("data", f"{name}:run", ["run", str(p), "--quiet"], field="datasets[0]"))

    rng = np.random.default_rng(0)

    def npz(**arrays):
        def write(r: Path):
            good = {"x_train": rng.integers(0, 255, (30, 8, 8), dtype=np.uint8), "y_train": np.arange(30) % 3,
                    "x_test": rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), "y_test": np.arange(6) % 3}
            good.update(arrays)
            np.savez(r / "d.npz", **{k: v for k, v in good.items() if v is not None})
        return write

    def raw_bytes(name: str, data: bytes):
        def write(r: Path):
            (r / name).write_bytes(data)
        return write

    def header_npz(shape, dtype="|u1", data=b"\0" * 64):
        def write(r: Path):
            import io

            with zipfile.ZipFile(r / "d.npz", "w") as zf:
                for name, shp, dt, payload in (("x_train", shape, dtype, data), ("y_train", (shape[0],), "<i8", data),
                                               ("x_test", (2, 8, 8), "|u1", b"\0" * 128), ("y_test", (2,), "<i8", b"\0" * 16)):
                    buf = io.BytesIO()
                    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dt).str, "fortran_order": False,
                                                               "shape": shp})
                    buf.write(payload)
                    zf.writestr(f"{name}.npy", buf.getvalue())
        return write

    npz_params = {"file": "d.npz"}
    data_case("npz-garbage", "npz", raw_bytes("d.npz", b"garbage" * 50), npz_params)
    data_case("npz-empty", "npz", raw_bytes("d.npz", b""), npz_params)
    data_case("npz-truncated-zip", "npz", lambda r: (npz()(r), (r / "d.npz").write_bytes((r / "d.npz").read_bytes()[:300])),
              npz_params)
    data_case("npz-header-1e12", "npz", header_npz((10 ** 12, 8, 8)), npz_params)
    data_case("npz-header-neg", "npz", header_npz((5, 8, 8), data=b"\0" * 320), npz_params)
    data_case("npz-float-images", "npz", npz(x_train=rng.random((30, 8, 8))), npz_params)
    data_case("npz-label-2-40", "npz", npz(y_train=np.array([0, 1, 2] * 9 + [0, 1, 2 ** 40])), npz_params)
    data_case("npz-label-negative", "npz", npz(y_train=np.array([0, 1, -2] * 10)), npz_params)
    data_case("npz-label-float", "npz", npz(y_train=np.arange(30) * 0.5), npz_params)
    data_case("npz-label-count", "npz", npz(y_train=np.arange(29) % 3), npz_params)
    data_case("npz-one-class", "npz", npz(y_train=np.zeros(30, dtype=int)), npz_params)
    data_case("npz-missing-array", "npz", npz(y_test=None), npz_params)
    data_case("npz-object-classes", "npz", npz(classes=np.array([{"a": 1}] * 3, dtype=object)), npz_params)
    data_case("npz-2d-images", "npz", npz(x_train=rng.integers(0, 255, (30, 64), dtype=np.uint8)), npz_params)
    data_case("npz-shape-mismatch", "npz", npz(x_test=rng.integers(0, 255, (6, 9, 9), dtype=np.uint8)), npz_params)
    data_case("npz-no-file-param", "npz", npz(), {})
    data_case("npz-file-is-folder", "npz", lambda r: (r / "d.npz").mkdir(exist_ok=True), npz_params)
    data_case("npz-crop-huge", "npz", npz(), {"file": "d.npz", "crop_padding": 10 ** 30})
    data_case("npz-hflip-text", "npz", npz(), {"file": "d.npz", "hflip": "sometimes"})

    def cifar_batches(payload: Callable[[str], bytes]):
        def write(r: Path):
            f = r / "cifar-10-batches-py"
            f.mkdir(exist_ok=True)
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
                (f / name).write_bytes(payload(name))
        return write

    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {d}/pwned",))

    good_batch = lambda n: pickle.dumps({"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]})
    data_case("cifar-garbage", "cifar10", cifar_batches(lambda n: b"\x80\x04garbage" * 30))
    data_case("cifar-empty", "cifar10", cifar_batches(lambda n: b""))
    data_case("cifar-truncated", "cifar10", cifar_batches(lambda n: good_batch(n)[:200]))
    data_case("cifar-evil-pickle", "cifar10", cifar_batches(lambda n: pickle.dumps({"data": Evil(), "labels": [0]})))
    data_case("cifar-not-dict", "cifar10", cifar_batches(lambda n: pickle.dumps([1, 2, 3])))
    data_case("cifar-wrong-rows", "cifar10", cifar_batches(
        lambda n: pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]})))
    data_case("cifar-label-99", "cifar10", cifar_batches(
        lambda n: pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 99]})))
    data_case("cifar-missing-test", "cifar10", lambda r: (cifar_batches(good_batch)(r),
                                                          (r / "cifar-10-batches-py" / "test_batch").unlink()))
    data_case("cifar-imbalanced-huge-counts", "cifar10-imbalanced", cifar_batches(good_batch), {"counts": [10 ** 30] * 10})

    def idx_files(payload: Callable[[str], bytes], gz: bool = False):
        def write(r: Path):
            raw = r / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                         "t10k-labels-idx1-ubyte"):
                data = payload(stem)
                if gz:
                    (raw / f"{stem}.gz").write_bytes(data)
                else:
                    (raw / stem).write_bytes(data)
        return write

    data_case("mnist-8-bytes", "mnist", idx_files(lambda s: b"\x00\x00\x08\x03" + struct.pack(">i", 60000)))
    data_case("mnist-empty", "mnist", idx_files(lambda s: b""))
    data_case("mnist-bad-magic", "mnist", idx_files(lambda s: b"\x01\x02\x03\x04" * 10))
    data_case("mnist-size-lie", "mnist", idx_files(lambda s: b"\x00\x00\x08\x01" + struct.pack(">i", 10 ** 9) + b"ab"))
    data_case("mnist-negative-dim", "mnist", idx_files(lambda s: b"\x00\x00\x08\x01" + struct.pack(">i", -5)))
    data_case("mnist-gz-garbage", "mnist", idx_files(lambda s: b"\x1f\x8bgarbage", gz=True))
    data_case("mnist-mismatch", "mnist", idx_files(
        lambda s: (b"\x00\x00\x08\x03" + struct.pack(">iii", 2, 28, 28) + b"\0" * 1568) if "images" in s
        else (b"\x00\x00\x08\x01" + struct.pack(">i", 3) + b"\0\1\2")))
    data_case("mnist-label-200", "mnist", idx_files(
        lambda s: (b"\x00\x00\x08\x03" + struct.pack(">iii", 2, 28, 28) + b"\0" * 1568) if "images" in s
        else (b"\x00\x00\x08\x01" + struct.pack(">i", 2) + b"\0\xc8")))

    def svhn(payload: Callable[[str], bytes]):
        def write(r: Path):
            for name in ("train_32x32.mat", "test_32x32.mat"):
                (r / name).write_bytes(payload(name))
        return write

    data_case("svhn-garbage", "svhn", svhn(lambda n: b"MATLAB 5.0 garbage" + b"\x00\xff" * 200))
    data_case("svhn-empty", "svhn", svhn(lambda n: b""))

    def savemat(x, y):
        def write(r: Path):
            import scipy.io as sio

            for name in ("train_32x32.mat", "test_32x32.mat"):
                sio.savemat(r / name, {"X": x, "y": y})
        return write

    data_case("svhn-wrong-shape", "svhn", savemat(np.zeros((8, 8, 3, 60), np.uint8), np.ones((60, 1), np.uint8)))
    data_case("svhn-float-images", "svhn", savemat(np.zeros((32, 32, 3, 60)), np.ones((60, 1), np.uint8)))
    data_case("svhn-count-mismatch", "svhn", savemat(np.zeros((32, 32, 3, 50), np.uint8), np.ones((60, 1), np.uint8)))
    data_case("svhn-label-0", "svhn", savemat(np.zeros((32, 32, 3, 4), np.uint8), np.zeros((4, 1), np.uint8)))
    data_case("svhn-no-y", "svhn", lambda r: [__import__("scipy.io").io.savemat(r / n, {"X": np.zeros((2, 2))})
                                              for n in ("train_32x32.mat", "test_32x32.mat")])

    def imagefolder(kind: str):
        def write(r: Path):
            from PIL import Image

            for c in ("a", "b"):
                (r / "train" / c).mkdir(parents=True, exist_ok=True)
                for i in range(30):
                    if kind == "not-images" and i == 7:
                        (r / "train" / c / f"{i}.png").write_bytes(b"not a png")
                    else:
                        Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(r / "train" / c / f"{i}.png")
            if kind == "one-class":
                shutil.rmtree(r / "train" / "b")
        return write

    data_case("imagefolder-size-1e6", "imagefolder", imagefolder("ok"), {"image_size": [10 ** 6, 10 ** 6]})
    data_case("imagefolder-size-0", "imagefolder", imagefolder("ok"), {"image_size": [0, 5]})
    data_case("imagefolder-size-3", "imagefolder", imagefolder("ok"), {"image_size": [3, 3, 3]})
    data_case("imagefolder-mode", "imagefolder", imagefolder("ok"), {"mode": "CMYK"})
    data_case("imagefolder-fraction", "imagefolder", imagefolder("ok"), {"test_fraction": 1.5})
    data_case("imagefolder-not-images", "imagefolder", imagefolder("not-images"))
    data_case("imagefolder-one-class", "imagefolder", imagefolder("one-class"))
    data_case("imagefolder-empty", "imagefolder", None)
    data_case("imagefolder-split-seed", "imagefolder", imagefolder("ok"), {"split_seed": 10 ** 30})
    data_case("root-missing", "cifar10", None, root=str(d / "nope"))
    data_case("root-a-file", "cifar10", None, root="/etc/passwd")
    data_case("root-too-long", "cifar10", None, root=str(d / ("r" * 300)))
    for name, params in (("subsample-huge", {"subsample": 10 ** 30}), ("subsample-zero", {"subsample": 0}),
                         ("subsample-seed-huge", {"subsample": {"total": 100, "seed": 10 ** 30}}),
                         ("subsample-seed-inf", {"subsample": {"total": 100, "seed": float("inf")}}),
                         ("subsample-both", {"subsample": {"total": 100, "per_class": 5}}),
                         ("imbalance-nan", {"imbalance": float("nan")}), ("imbalance-2", {"imbalance": 2}),
                         ("imbalance-nmax-huge", {"imbalance": {"ratio": 0.1, "n_max": 10 ** 30}}),
                         ("unknown-param", {"bogus": 1}), ("params-surrogate", {"subsample": "\udc80"})):
        data_case(name, "digits", None, params)
    return cases


# ---------------------------------------------------------------------------------------------
# damaged records and links


def build_base(work: Path) -> Path:
    """A complete tiny sweep (two strategies, two runs) at <work>/record/base."""
    base = work / "record" / "base"
    if (base / "tiny" / "digits" / "random" / "seed-0" / "status.json").exists():
        return base
    base.mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(TINY)
    raw.update(output=str(base), strategies=["random", "entropy"])
    cfg = work / "record" / "base.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    import torch

    torch.set_num_threads(1)
    from albench.cli import main

    assert main(["run", str(cfg), "--quiet"]) == 0
    return base


def _set_json(name: str, **fields):
    def damage(run_dir: Path) -> None:
        data = json.loads((run_dir / name).read_text())
        data.update(fields)
        (run_dir / name).write_text(json.dumps(data))
    return damage


def _replace(name: str, data: bytes | str):
    def damage(run_dir: Path) -> None:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return damage


def _truncate(name: str, keep: float = 0.5):
    def damage(run_dir: Path) -> None:
        p = run_dir / name
        b = p.read_bytes()
        p.write_bytes(b[: int(len(b) * keep)])
    return damage


def _as_folder(name: str):
    def damage(run_dir: Path) -> None:
        (run_dir / name).unlink()
        (run_dir / name).mkdir()
    return damage


def _as_fifo(name: str):
    def damage(run_dir: Path) -> None:
        (run_dir / name).unlink()
        os.mkfifo(run_dir / name)
    return damage


def _as_link_out(name: str, outside: Path):
    def damage(run_dir: Path) -> None:
        target = outside / name.replace("/", "_")
        shutil.move(str(run_dir / name), str(target))
        (run_dir / name).symlink_to(target)
    return damage


RECORDS = ["run.json", "status.json", "config.yaml", "env.json", "queries.json", "cycles.csv", "fingerprint.json",
           "artifacts/labeled_targets.npy", "artifacts/test_loss.npy", "artifacts/embeddings.npy"]


def record_damages(name: str) -> list[tuple[str, Callable]]:
    out = [("truncated", _truncate(name)), ("garbled", _replace(name, b"\x00\xff garbage \x8f" * 5)),
           ("empty", _replace(name, b"")), ("latin-1", _replace(name, "{\"x\": \"caf\xe9\"}".encode("latin-1"))),
           ("folder", _as_folder(name)), ("fifo", _as_fifo(name))]
    if name.endswith(".json") and name not in ("queries.json",):
        out += [("json-list", _replace(name, "[1, 2]")), ("json-string", _replace(name, '"abc"')),
                ("json-null", _replace(name, "null")), ("json-huge-int", _replace(name, "9" * 5000)),
                ("json-deep", _replace(name, "[" * 100000 + "]" * 100000))]
    if name == "run.json":
        out += [(f"{k}={v!r}", _set_json("run.json", **{k: v})) for k, v in
                (("seed", "abc"), ("seed", None), ("seed", -1), ("seed", 2 ** 70), ("seed", 1.5), ("quirks", "abc"),
                 ("quirks", [[]]), ("quirks", 7), ("flags", "x"), ("strategy", 5), ("dataset", None),
                 ("phases", "abc"), ("quirk_docs", [1]), ("baseline", 3), ("prepare", "x"), ("metric", [1]))]
    if name == "status.json":
        out += [(f"state={v!r}", _replace("status.json", json.dumps({"state": v}))) for v in
                ("exploded", "COMPLETE", "", 7, None, ["complete"], {"a": 1})]
        out += [("no-state", _replace("status.json", json.dumps({"host": "x"}))),
                ("error-number", _set_json("status.json", error=5))]
    if name == "config.yaml":
        out += [("a-list", _replace(name, "- 1\n- 2\n")), ("train-5", _replace(name, "train: 5\nal: {cycles: 2}\n")),
                ("al-text", _replace(name, "al: many\n")), ("cycles-text", _replace(name, "al: {cycles: many}\n")),
                ("cycles-huge", _replace(name, f"al: {{cycles: {10 ** 30}}}\n")),
                ("yaml-syntax", _replace(name, "a: [unclosed\n")), ("dup-key", _replace(name, "al: 1\nal: 2\n")),
                ("python-tag", _replace(name, "a: !!python/object:os.system ls\n")),
                ("model-list", _replace(name, "model: [1]\nal: {cycles: 2}\n"))]
    if name == "env.json":
        out += [("threads-text", _set_json("env.json", threads="many")), ("git-list", _set_json("env.json", git=[1])),
                ("device-5", _set_json("env.json", device=5))]
    if name == "queries.json":
        out += [("list", _replace(name, "[1, 2]")), ("nested", _replace(name, '{"0": [[1, 2]]}')),
                ("negative", _replace(name, '{"0": [-5]}')), ("text-index", _replace(name, '{"0": ["a"]}')),
                ("cycle-text", _replace(name, '{"x": [1]}')), ("huge", _replace(name, '{"0": [' + "9" * 30 + "]}"))]
    if name == "cycles.csv":
        out += [("header-only", _replace(name, "cycle,n_labeled\n")), ("bad-number", _replace(
            name, "cycle,n_labeled,metric,value\n0,20,accuracy,abc\n")),
                ("out-of-order", _replace(name, "cycle,n_labeled,metric,value\n1,20,accuracy,0.5\n"))]
    if name.endswith(".npy"):
        out += [("header-1e12", _replace(name, _npy_header((10 ** 12,), "<i8") + b"\0" * 64)),
                ("object-dtype", _replace(name, _npy_header((2,), "|O") + b"\0" * 16)),
                ("bad-magic", _replace(name, b"\x93NUMPX" + b"\0" * 100))]
    return out


def _npy_header(shape, descr) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def record_cases(work: Path, commands: list[str]) -> list[Case]:
    base = build_base(work)
    cfg = work / "record" / "base.yaml"
    cases = []
    i = 0
    for name in RECORDS:
        for label, damage in record_damages(name):
            for command in commands:
                i += 1
                copy_root = work / "record" / f"c{i}"
                if copy_root.exists():
                    shutil.rmtree(copy_root)
                shutil.copytree(base, copy_root, symlinks=True)
                run_dir = copy_root / "tiny" / "digits" / "random" / "seed-0"
                outside = work / "record" / f"c{i}-outside"
                outside.mkdir(exist_ok=True)
                try:
                    damage(run_dir)
                except OSError as exc:
                    print(f"skip {name}:{label}: {exc}", file=sys.stderr)
                    continue
                argv = {"show": ["show", str(copy_root / "tiny")], "status": ["status", str(copy_root / "tiny")],
                        "report": ["report", str(copy_root / "tiny"), "--quiet", "--tsne-points", "10"],
                        "run": ["run", str(cfg), "--out", str(copy_root), "--quiet"]}[command]
                cases.append(Case("record", f"{name}:{label}:{command}", argv, kind="record", run_dir=run_dir,
                                  outside=outside, timeout=180))
        # a record linked out of the run folder
        for command in commands:
            i += 1
            copy_root = work / "record" / f"c{i}"
            if copy_root.exists():
                shutil.rmtree(copy_root)
            shutil.copytree(base, copy_root, symlinks=True)
            run_dir = copy_root / "tiny" / "digits" / "random" / "seed-0"
            outside = work / "record" / f"c{i}-outside"
            outside.mkdir(exist_ok=True)
            _as_link_out(name, outside)(run_dir)
            argv = {"show": ["show", str(copy_root / "tiny")], "status": ["status", str(copy_root / "tiny")],
                    "report": ["report", str(copy_root / "tiny"), "--quiet", "--tsne-points", "10"],
                    "run": ["run", str(cfg), "--out", str(copy_root), "--quiet"]}[command]
            cases.append(Case("record", f"{name}:link-out:{command}", argv,
                              kind="refuse" if command == "run" else "record", run_dir=run_dir, outside=outside,
                              timeout=180))
    return cases


def link_cases(work: Path) -> list[Case]:
    base = build_base(work)
    cfg = work / "record" / "base.yaml"
    cases = []
    places = {
        "output-sweep": lambda root: root / "tiny",
        "dataset": lambda root: root / "tiny" / "digits",
        "strategy": lambda root: root / "tiny" / "digits" / "random",
        "run": lambda root: root / "tiny" / "digits" / "random" / "seed-0",
        "other-run": lambda root: root / "tiny" / "digits" / "entropy" / "seed-0",
        "artifacts": lambda root: root / "tiny" / "digits" / "random" / "seed-0" / "artifacts",
        "run.log": lambda root: root / "tiny" / "digits" / "random" / "seed-0" / "run.log",
        "status.json": lambda root: root / "tiny" / "digits" / "random" / "seed-0" / "status.json",
        "checkpoint": lambda root: root / "tiny" / "digits" / "random" / "seed-0" / "checkpoint.pt",
        "tensorboard": lambda root: root / "tiny" / "digits" / "random" / "seed-0" / "tensorboard",
        ".cache": lambda root: root / ".cache",
        ".cache/pretext": lambda root: root / ".cache" / "pretext",
        ".replaced": lambda root: root / "tiny" / ".replaced",
        ".slurm": lambda root: root / "tiny" / ".slurm",
        ".submitit": lambda root: root / "tiny" / ".submitit",
        "new-sweep": lambda root: root / "fresh",
    }
    modes = {"dry-run": ["--dry-run"], "run": [], "restart-damaged": ["--restart-damaged"],
             "restart-changed": ["--set", "train.epochs=2", "--restart-changed"],
             "debug-executor": ["--executor", "debug"], "other-name": ["--set", "name=fresh"]}
    i = 0
    for place, where in places.items():
        for mode, extra in modes.items():
            if place == "new-sweep" and mode != "other-name":
                continue
            i += 1
            root = work / "link" / f"l{i}"
            if root.exists():
                shutil.rmtree(root)
            shutil.copytree(base, root, symlinks=True)
            outside = work / "link" / f"l{i}-outside"
            if outside.exists():
                shutil.rmtree(outside)
            outside.mkdir(parents=True)
            (outside / "precious.txt").write_text("keep\n")
            link = where(root)
            if os.path.lexists(link):
                if link.is_dir() and not link.is_symlink():
                    shutil.move(str(link), str(outside / "moved"))
                    link.symlink_to(outside / "moved", target_is_directory=True)
                else:
                    shutil.move(str(link), str(outside / "moved-file"))
                    link.symlink_to(outside / "moved-file")
            else:
                link.parent.mkdir(parents=True, exist_ok=True)
                target = outside / "empty"
                if place in ("run.log", "status.json", "checkpoint"):
                    target = outside / "precious.txt"
                    link.symlink_to(target)
                else:
                    target.mkdir(exist_ok=True)
                    link.symlink_to(target, target_is_directory=True)
            # another sweep under the same output root never touches this sweep's links: a control
            # (it must run, and write nothing through them); the output root's .cache is shared
            control = mode == "other-name" and place not in (".cache", ".cache/pretext", "new-sweep")
            cases.append(Case("link", f"{place}:{mode}", ["run", str(cfg), "--out", str(root), "--quiet", *extra],
                              kind="control" if control else "refuse", outside=outside, timeout=180))
        # readers never write; report's default folder is refused when linked
    for i2 in range(3):
        root = work / "link" / f"r{i2}"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(base, root, symlinks=True)
        outside = work / "link" / f"r{i2}-outside"
        if outside.exists():
            shutil.rmtree(outside)
        outside.mkdir(parents=True)
        (outside / "precious.txt").write_text("keep\n")
        target = {0: root / "tiny" / "report", 1: root / "tiny" / "report" / "figures",
                  2: root / "tiny" / "report" / "index.md"}[i2]
        target.parent.mkdir(parents=True, exist_ok=True)
        if i2 == 2:
            target.symlink_to(outside / "precious.txt")
        else:
            target.symlink_to(outside, target_is_directory=True)
        cases.append(Case("link", f"report-{target.name}", ["report", str(root / "tiny"), "--quiet", "--tsne-points",
                                                             "10"], outside=outside, timeout=180))
    return cases


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="a scratch folder (outside the repository)")
    ap.add_argument("--only", action="append", choices=["field", "config", "data", "record", "link"])
    ap.add_argument("--limit", type=int, default=0, help="at most this many cases per family (0: all)")
    ap.add_argument("--record-commands", default="show,status,run,report",
                    help="commands run on each damaged record (comma-separated)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    empty_bin = work / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    os.environ["PATH"] = str(empty_bin)  # no Slurm (nor anything else) on PATH: executor slurm must be refused
    import torch

    torch.set_num_threads(1)
    import importlib

    # imported once, before forking: each case pays only its own work, and every case runs the code
    # as it was when the probe started
    for module in ("albench.cli", "albench.validate", "albench.integrity", "albench.status", "albench.summary",
                   "albench.runner.local", "albench.runner.submit", "albench.runner.slurm", "albench.engine.loop",
                   "albench.reports.cli", "albench.reports.report", "albench.reports.verify", "albench.data.builtin",
                   "albench.models.registry", "albench.strategies.registry", "albench.tracking.mlflow_tracker",
                   "albench.tracking.tensorboard_tracker", "scipy.io", "PIL.Image", "matplotlib.pyplot",
                   "sklearn.manifold"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    import albench.strategies.registry as sr

    sr.strategy_names()
    families = args.only or ["field", "config", "data", "record", "link"]
    build = {"field": field_cases, "config": config_cases, "data": data_cases,
             "record": lambda w: record_cases(w, args.record_commands.split(",")), "link": link_cases}
    if "record" in families or "config" in families or "link" in families:
        build_base(work)
    results: list[Result] = []
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    started = time.time()
    for fam in families:
        cases = build[fam](work)
        if args.limit:
            cases = cases[: args.limit]
        print(f"{fam}: {len(cases)} cases", file=sys.stderr, flush=True)
        for n, case in enumerate(cases, 1):
            r = run_case(case, logs)
            results.append(r)
            if r.outcome in ("traceback", "hang") or r.link_write:
                print(f"  {r.outcome.upper()}{' LINK-WRITE' if r.link_write else ''} {case.name}: {r.err_tail[-300:]}",
                      file=sys.stderr, flush=True)
            if n % 100 == 0:
                print(f"  {fam}: {n}/{len(cases)} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    malformed = [r for r in results if r.case.kind != "control"]
    controls = [r for r in results if r.case.kind == "control"]
    control_link_writes = sum(r.link_write for r in controls)
    counts = {k: sum(r.outcome == k for r in malformed) for k in ("refused", "accepted", "traceback", "hang")}
    counts["link-write"] = sum(r.link_write for r in malformed)
    counts["total"] = len(malformed)
    counts["refused_pct"] = round(100 * counts["refused"] / max(1, len(malformed)), 2)
    by_family = {}
    for r in malformed:
        f = by_family.setdefault(r.case.family, {"total": 0, "refused": 0, "accepted": 0, "traceback": 0, "hang": 0,
                                                 "link-write": 0})
        f["total"] += 1
        f[r.outcome] += 1
        f["link-write"] += r.link_write
    other_field = [r for r in malformed if r.note.startswith("names another field")]
    report = {
        "counts": counts, "by_family": by_family, "seconds": round(time.time() - started, 1),
        "controls": {"total": len(controls), "passed": sum(r.outcome == "accepted" and not r.link_write for r in controls),
                     "link_writes": control_link_writes,
                     "failed": [[r.case.name, r.note] for r in controls if r.outcome != "accepted"]},
        "refused_naming_another_field": [[r.case.name, r.note] for r in other_field],
        "not_refused": [[r.case.family, r.case.name, r.outcome, r.rc, r.note, r.err_tail[-400:]]
                        for r in malformed if r.outcome != "refused" or r.link_write],
        "cases": [[r.case.family, r.case.name, r.outcome, r.rc, round(r.seconds, 2), r.note] for r in results],
    }
    (work / "probe.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("counts", "by_family", "seconds", "controls")}, indent=1))
    for fam, name, outcome, rc, note, _ in report["not_refused"]:
        print(f"{outcome:10} {fam:7} {name}: exit {rc} {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
