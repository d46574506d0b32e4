"""The declared-params reader (albench.typed) refuses, in one place and for every declared field:
non-finite floats, integers beyond 64 bits, counts beyond a sane maximum (unless the field declares
its own ceiling), text that is not valid Unicode; and the same for free-form values under
model.params / dataset.params (issue 29). Every field is enumerated from the schema itself, so a
field added later is covered without editing this file."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Union, get_args, get_origin

import pytest

from albench.cli import main
from albench.config import Config, build_config
from albench.errors import ConfigError
from albench.typed import INT64_MAX, MAX_COUNT, Bounds, coerce, param_spec


def _arms(tp: Any) -> tuple[set, float | None]:
    """(the scalar kinds ``tp`` takes, its declared upper bound or None) through Annotated/Optional/list."""
    kinds, upper = set(), None
    stack = [tp]
    while stack:
        t = stack.pop()
        origin = get_origin(t)
        if origin is Annotated:
            base, *meta = get_args(t)
            for m in meta:
                if isinstance(m, Bounds) and m.has_upper:
                    upper = m.le if m.le is not None else m.lt
            stack.append(base)
        elif origin in (Union, types.UnionType):
            stack.extend(a for a in get_args(t) if a is not type(None))
        elif origin is list:
            kinds.add("list")
            stack.extend(get_args(t))
        elif t in (int, float):
            kinds.add(t)
    return kinds, upper


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, (tp, _) in param_spec(cls).items():
        base = get_args(tp)[0] if get_origin(tp) is Annotated else tp
        if dataclasses.is_dataclass(base):
            out += _leaves(base, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", tp))
    return out


def _strategy_params() -> list[tuple[str, str, Any]]:
    from albench.strategies.registry import get_strategy, strategy_names

    return [(n, k, tp) for n in strategy_names() for k, (tp, _) in get_strategy(n).param_types().items()]


def _model_params() -> list[tuple[str, str, Any]]:
    from albench.models.registry import model_entry, model_names

    return [(n, k, tp) for n in model_names() for k, (tp, _) in model_entry(n).param_types().items()]


def _wrap(tp: Any, value: Any) -> Any:
    return [value] if "list" in _arms(tp)[0] else value


def _cases(kind, values) -> list[tuple[str, list[str], str]]:
    """(test id, --set overrides, the field the refusal must name) for every declared field of ``kind``."""
    cases = []
    for key, tp in _leaves(Config):
        kinds, upper = _arms(tp)
        for v, label in values(kinds, upper):
            wrapped = _wrap(tp, v)
            field = f"{key}[0]" if isinstance(wrapped, list) else key
            text = yaml_text(wrapped)
            cases.append((f"{key}={label}", [f"{key}={text}"], field))
    for name, key, tp in _strategy_params():
        kinds, upper = _arms(tp)
        for v, label in values(kinds, upper):
            wrapped = _wrap(tp, v)
            field = f"strategies[0].params.{key}" + ("[0]" if isinstance(wrapped, list) else "")
            cases.append((f"{name}.{key}={label}",
                          [f"strategies=[{{name: {name}, params: {{{key}: {yaml_text(wrapped)}}}}}]"], field))
    for name, key, tp in _model_params():
        kinds, upper = _arms(tp)
        for v, label in values(kinds, upper):
            cases.append((f"model:{name}.{key}={label}", [f"model={{name: '{name}', params: {{{key}: {yaml_text(v)}}}}}"],
                          f"model.params.{key}"))
    return cases


def yaml_text(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(yaml_text(x) for x in v) + "]"
    if isinstance(v, float):
        return ".nan" if v != v else (".inf" if v > 0 else "-.inf") if v in (float("inf"), float("-inf")) else repr(v)
    return str(v)


def _non_finite(kinds, upper):
    if float in kinds:
        yield float("inf"), "inf"
        yield float("-inf"), "-inf"
        yield float("nan"), "nan"


def _too_large(kinds, upper):
    if int in kinds:
        yield 10 ** 30, "1e30"
        yield 2 ** 63, "2^63"
        if upper is None or upper > MAX_COUNT:
            if upper is None:
                yield MAX_COUNT + 1, "MAX_COUNT+1"
            else:
                yield int(upper) + 1, "upper+1"


NON_FINITE = _cases(float, _non_finite)
TOO_LARGE = _cases(int, _too_large)


def _refused(overrides: list[str], field: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_config({"dataset": "digits"}, overrides)
    assert info.value.field.startswith(field), (info.value.field, field, str(info.value))
    return info.value


def test_the_enumeration_covers_the_fields_the_issue_named():
    ids = {c[0] for c in NON_FINITE} | {c[0] for c in TOO_LARGE}
    for need in ("coregcn.lr=inf", "pal.lr=inf", "uncertaingcn.lr=inf", "vaal.lr=inf", "learning-loss.margin=inf",
                 "learning-loss.weight=inf", "pt4al.pretext_lr=inf", "vaal.epochs=inf", "probcover.delta=inf",
                 "train.epochs=1e30", "train.min_steps=MAX_COUNT+1", "bald.passes=MAX_COUNT+1",
                 "coregcn.steps=1e30", "pt4al.pretext_epochs=MAX_COUNT+1", "vaal.iterations=MAX_COUNT+1",
                 "seeds=2^63", "executor.workers=1e30", "train.validation.size=inf"):
        assert need in ids, need
    assert len(NON_FINITE) > 100 and len(TOO_LARGE) > 100


@pytest.mark.parametrize("overrides,field", [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_every_declared_float_refuses_non_finite_values(overrides, field):
    err = _refused(overrides, field)
    assert "finite" in err.problem or "must be" in err.problem


@pytest.mark.parametrize("overrides,field", [c[1:] for c in TOO_LARGE], ids=[c[0] for c in TOO_LARGE])
def test_every_declared_integer_is_bounded(overrides, field):
    _refused(overrides, field)


def test_the_defaults_pass_and_declared_ceilings_hold():
    cfg = build_config({"dataset": "digits"}, ["seeds=[9223372036854775807]", "al.initial=1281167"])
    assert cfg.seeds == [INT64_MAX] and cfg.al.initial == 1281167  # a seed is a name; ImageNet's pool a count
    build_config({"dataset": "digits"}, ["strategies=[{name: probcover, params: {max_edges: 10000000000}}]"])
    build_config({"dataset": "digits"}, [f"train.epochs={MAX_COUNT}"])


def test_free_form_values_get_the_same_checks():
    for overrides, field in [(["datasets.0.params={subsample: {total: 10, seed: .inf}}"], "datasets[0].params"),
                             (["datasets.0.params.subsample={total: 1000000000000000000000000000000}"],
                              "datasets[0].params.subsample.total"),
                             (["executor.slurm.additional={exclude: \"a\\0b\"}"], "executor.slurm.additional.exclude")]:
        _refused(overrides, field)


def test_text_must_be_valid_unicode():
    for overrides, field in [(['strategies=[{name: random, label: "\\uDC80"}]'], "strategies[0].label"),
                             (['name="\\uDC80"'], "name"),
                             (['datasets.0.params={x: "\\uD800"}'], "datasets[0].params.x")]:
        err = _refused(overrides, field)
        assert "lone surrogate" in err.problem


def test_validation_size_is_a_fraction_below_1_or_a_whole_count():
    with pytest.raises(ConfigError, match=r"train.validation.size: .*whole number"):
        build_config({"dataset": "digits"}, ["train.validation.size=2.5"])
    assert build_config({"dataset": "digits"}, ["train.validation.size=3.0"]).train.validation.size == 3
    assert build_config({"dataset": "digits"}, ["train.validation.size=0.25"]).train.validation.size == 0.25


def test_coerce_names_the_field_and_keeps_declared_ranges_first():
    with pytest.raises(ConfigError, match=r"x: must be at most 1000000 \(a sane maximum"):
        coerce(Annotated[int | None, Bounds(ge=1)], MAX_COUNT + 1, "x")
    with pytest.raises(ConfigError, match=r"x: must be >= 1 or null"):
        coerce(Annotated[int | None, Bounds(ge=1)], 0, "x")
    with pytest.raises(ConfigError, match=r"x: is too large: integers must fit in 64 bits"):
        coerce(float, 10 ** 400, "x")
    assert coerce(Annotated[int, Bounds(ge=0, le=10 ** 12)], 10 ** 12, "x") == 10 ** 12


@pytest.mark.parametrize("argv,needle", [
    (["--set", "train.epochs=1e30"], "train.epochs"),
    (["--set", "strategies=[{name: vaal, params: {lr: .inf}}]"], "strategies[0].params.lr"),
    (["--workers", str(10 ** 30)], "executor.workers"),
    (["--workers", "5000"], "executor.workers"),
    (["--set", "datasets.0.params.subsample={total: 10, seed: 1000000000000000000000000000000}"],
     # the packaged quickstart says `dataset:`, so the error names that key (issue 27)
     "dataset.params.subsample.seed"),
])
def test_the_cli_refuses_them_at_load_with_exit_2(tmp_path, capsys, argv, needle):
    assert main(["run", "--dry-run", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"albench: error: {needle}") and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
