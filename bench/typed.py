"""Turn plain YAML data into typed dataclasses, with errors that name the field and the fix.

This is the boundary check for every config: it rejects unknown keys (suggesting the nearest known
one), wrong types and bad literals, and lets each dataclass add range checks in ``check(path)``.

Bounds are declared next to the type, ``Annotated[int, Bounds(ge=1)]``, and enforced by
:func:`coerce` (a ``None`` allowed by an ``Optional`` passes unchecked).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from albench.errors import ConfigError

@dataclasses.dataclass(frozen=True)
class Bounds:
    """A numeric range for an ``Annotated`` config field: ``ge``/``gt`` below, ``le``/``lt`` above;
    ``finite`` also refuses +-inf (NaN is refused by every bound)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = False

    def describe(self) -> str:
        """The range in words, e.g. ``>= 1 and < 10``."""
        parts = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        if self.finite:
            parts.append("finite")
        return " and ".join(parts) or "a number (not NaN)"

    def check(self, value: Any, path: str) -> None:
        """ConfigError naming ``path`` unless ``value`` lies in the range."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
              and value == value and not (self.finite and math.isinf(value)))
        if not ok:  # NaN fails every comparison and the self-equality, so it is refused here too
            raise ConfigError(path, f"must be {self.describe()}", f"set {path} to a value {self.describe()}", value)


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _describe(get_args(tp)[0])
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null" for a in get_args(tp))
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}s" if get_args(tp) else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _example(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _example(get_args(tp)[0])
    if origin is Literal:
        return repr(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return _example([a for a in get_args(tp) if a is not type(None)][0])
    return {int: "1", float: "0.1", bool: "true", str: "'name'"}.get(tp, "a value of that type")


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Return ``value`` converted to type ``tp``; raise ConfigError naming ``path`` otherwise."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *meta = get_args(tp)
        value = coerce(base, value, path)
        for m in meta:
            if hasattr(m, "check"):
                try:
                    m.check(value, path)
                except ConfigError as exc:
                    if get_origin(base) in (Union, types.UnionType) and type(None) in get_args(base):
                        raise ConfigError(exc.field, f"{exc.problem} or null", f"{exc.fix}, or null",
                                          exc.value) from None
                    raise
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        # the value had the shape of one arm and failed inside it (a nested key): that arm's own
        # message names the field and the fix best
        nested = [e for e in errors if e.field != path]
        if nested:
            raise nested[0]
        raise ConfigError(path, f"must be {_describe(tp)}", f"set {path} to e.g. {_example(tp)}", value)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(path, f"must be one of {', '.join(map(repr, allowed))}",
                              f"{hint}set {path} to one of them", value)
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"must be {_describe(tp)}", f"write {path} as a YAML list", value)
        (item,) = get_args(tp) or (Any,)
        return [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, "must be a mapping", f"write {path} as 'key: value' lines", value)
        args = get_args(tp)
        if not args:
            return dict(value)
        return {coerce(args[0], k, f"{path} key {k!r}"): coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, "must be true or false", f"set {path} to true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, "must be an integer", f"set {path} to a whole number", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, "must be a number", f"set {path} to a number such as 0.1", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, "must be a string", f"set {path} to a quoted string", value)
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in our schema, not user input


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``; unknown keys and bad types raise ConfigError.

    After construction, ``cls.check(self, path)`` runs if defined (range and cross-field checks).
    """
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(where, "must be a mapping of keys to values",
                          f"write {where} as 'key: value' lines", data)
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:  # unknown keys first: a typo is the likeliest cause of anything else failing
        if key not in fields:
            sub = f"{path}.{key}" if path else str(key)
            prefix = f"{path}." if path else ""
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            nested = [f"{prefix}{name}.{key}" for name in fields if dataclasses.is_dataclass(hints[name])
                      and key in {f.name for f in dataclasses.fields(hints[name])}]
            if close:
                fix = f"did you mean '{prefix}{close[0]}'?"
            elif nested:
                fix = f"did you mean '{nested[0]}'?"
            else:
                fix = f"remove it; known keys here: {', '.join(fields)}"
            raise ConfigError(sub, "unknown config key", fix)
    kwargs = {key: coerce(hints[key], value, f"{path}.{key}" if path else str(key)) for key, value in data.items()}
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            sub = f"{path}.{name}" if path else name
            raise ConfigError(sub, "is required", f"add '{name}:' to {where}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check(path)
    return obj


NO_DEFAULT = inspect.Parameter.empty  # a declared param without a default (it must be given)


def param_spec(cls: type) -> dict[str, tuple[Any, Any]]:
    """``{field: (type, default)}`` of a params dataclass, bounds kept in the ``Annotated`` types;
    a field without a default maps to :data:`NO_DEFAULT`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = NO_DEFAULT
        out[f.name] = (hints.get(f.name, Any), default)
    return out


def signature_spec(fn: Any, skip: tuple[str, ...] = ("self",)) -> dict[str, tuple[Any, Any]]:
    """``{param: (type, default)}`` of a function's named parameters (``*args``/``**kwargs`` and
    ``skip`` left out), ``Annotated`` bounds kept: the params a plugin declares in its signature."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    return {name: (hints.get(name, Any), p.default) for name, p in sig.parameters.items()
            if name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def validate_params(spec: dict[str, tuple[Any, Any]], params: Any, path: str, owner: str) -> dict:
    """Typed copy of the ``params`` mapping given for ``owner`` (e.g. ``strategy 'vaal'``), checked
    against ``spec`` (see :func:`param_spec`): ConfigError naming ``path.key`` for an unknown key
    (with the nearest known one), a wrong type or a value outside the declared bounds. Only the
    given keys are returned; defaults are not filled in."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(path, "must be a mapping", f"write {path} as 'key: value' lines", params)
    out = {}
    for key, value in params.items():
        if key not in spec:
            known = ", ".join(spec) or "none"
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = f"did you mean '{path}.{close[0]}'? " if close else ""
            raise ConfigError(f"{path}.{key}", f"unknown parameter for {owner}",
                              f"{hint}remove it; known parameters: {known}")
        tp, default = spec[key]
        try:
            out[key] = coerce(tp, value, f"{path}.{key}")
        except ConfigError as exc:
            if default is NO_DEFAULT:
                raise
            shown = "null" if default is None else repr(default)
            raise ConfigError(exc.field, exc.problem, f"{exc.fix} (default: {shown})", exc.value) from None
    return out


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML-safe) form of a config dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
