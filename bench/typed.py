"""Turn plain YAML data into typed dataclasses, with errors that name the field and the fix.

This is the boundary check for every config: it rejects unknown keys (suggesting the nearest known
one), wrong types and bad literals, and lets each dataclass add range checks in ``check(path)``.

Bounds are declared next to the type, ``Annotated[int, Bounds(ge=1)]``, and enforced by
:func:`coerce` (a ``None`` allowed by an ``Optional`` passes unchecked).

What every value gets from :func:`coerce`, declared bounds or not (so a field added anywhere inherits
it): a float must be finite (NaN and +-inf are refused); an integer must fit in 64 bits and, unless
its field declares an upper (lower) bound of its own, lie at most :data:`MAX_COUNT` above (below)
zero, a sane maximum for any count (epochs, steps, batch sizes, widths); a string must be valid
Unicode text without NUL bytes. Values under an untyped ``dict``, ``list`` or ``Any`` (free-form
params) get the same checks (:func:`check_plain`). A field whose values may legitimately exceed
:data:`MAX_COUNT` (a seed, a memory cap in bytes) declares its own ``le``.
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

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
# The default ceiling of a declared integer without an upper bound of its own: far above any real
# count (epochs, optimizer steps, batch size, hidden width, MC passes), far below the values that
# make a run never end or a buffer overflow (a typo such as 1e30, or 10**9 epochs).
MAX_COUNT = 1_000_000
# A count of images (a labeled budget, a pool subset) may exceed MAX_COUNT (ImageNet's train set holds
# 1.28 M); such fields declare this ceiling instead (:data:`IMAGES`): more images than any dataset.
MAX_IMAGES = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A numeric range for an ``Annotated`` config field: ``ge``/``gt`` below, ``le``/``lt`` above.
    ``finite`` is kept for older declarations: :func:`coerce` refuses NaN and +-inf in every float.
    Declaring ``le``/``lt`` (``ge``/``gt``) on an integer replaces the default :data:`MAX_COUNT`
    ceiling (floor)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = False

    @property
    def has_upper(self) -> bool:
        return self.le is not None or self.lt is not None

    @property
    def has_lower(self) -> bool:
        return self.ge is not None or self.gt is not None

    def describe(self) -> str:
        """The range in words, e.g. ``>= 1 and < 10``."""
        parts = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
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


def _num(v: float) -> str:
    """A bound in words: whole numbers in full (``9223372036854775807``), others by %g."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e19 else f"{v:g}"


# The type of every seed: any non-negative 64-bit integer (a seed is a name, not a count).
SEED = Annotated[int, Bounds(ge=0, le=INT64_MAX)]
# The type of a count of images: at least 1, at most MAX_IMAGES.
IMAGES = Annotated[int, Bounds(ge=1, le=MAX_IMAGES)]


def check_plain(value: Any, path: str) -> None:
    """ConfigError naming ``path`` (or the nested key) unless every number in ``value`` (a plain YAML
    value, nested lists and mappings included) is a finite float or an integer that fits in 64 bits,
    and every string (keys included) is valid Unicode without NUL bytes: the checks :func:`coerce`
    makes of typed fields, for free-form values (``model.params``, ``dataset.params``, ...)."""
    stack = [(value, path)]
    while stack:  # explicit stack: a deeply nested value cannot exhaust the recursion limit
        v, where = stack.pop()
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            _check_int64(v, where)
        elif isinstance(v, float):
            _check_finite(v, where)
        elif isinstance(v, str):
            _check_text(v, where)
        elif isinstance(v, dict):
            for k, item in v.items():
                stack.append((k, f"{where} key {str(k)[:40]!r}"))
                stack.append((item, f"{where}.{k}"))
        elif isinstance(v, (list, tuple)):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))


def _check_int64(value: int, path: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ConfigError(path, "is too large: integers must fit in 64 bits (|value| < 2**63)",
                          f"set {path} to a realistic value", value)


def _check_finite(value: float, path: str) -> None:
    if not math.isfinite(value):
        raise ConfigError(path, "must be a finite number (NaN and infinity are refused)",
                          f"set {path} to a finite number", value)


def _check_text(value: str, path: str) -> None:
    if "\0" in value:
        raise ConfigError(path, "holds a NUL byte", f"remove it from {path}", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise ConfigError(path, f"holds {bad!r} (U+{ord(bad):04X}, a lone surrogate), which is not valid Unicode "
                          "text and cannot be written to a record or a folder name",
                          f"remove it from {path}", value.encode("utf-8", "backslashreplace").decode()) from None


def _check_count(value: int, path: str, lower: bool, upper: bool) -> None:
    """The bounds every integer gets: 64 bits, and +-MAX_COUNT on each side its field leaves undeclared."""
    _check_int64(value, path)
    if not upper and value > MAX_COUNT:
        raise ConfigError(path, f"must be at most {MAX_COUNT} (a sane maximum for a count)",
                          f"set {path} to a smaller value", value)
    if not lower and value < -MAX_COUNT:
        raise ConfigError(path, f"must be at least -{MAX_COUNT}", f"set {path} to a larger value", value)


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
        if not get_args(tp):
            return "a list"
        item = _describe(get_args(tp)[0])
        for article in ("a ", "an "):
            if item.startswith(article) and " or " not in item:
                return f"a list of {item[len(article):]}s"
        return f"a list of items each {item}"
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


def _has_shape(tp: Any, value: Any) -> bool:
    """Whether ``value`` is of the plain kind type ``tp`` takes (a number for a number, text for
    text), so that refusing it is about its value, not its kind."""
    if get_origin(tp) is Annotated:
        return _has_shape(get_args(tp)[0], value)
    if isinstance(value, bool):
        return tp is bool
    if tp is int:
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if tp is float:
        return isinstance(value, (int, float))
    if tp is str:
        return isinstance(value, str)
    return False


def coerce(tp: Any, value: Any, path: str, *, _declared: tuple[bool, bool] = (False, False)) -> Any:
    """Return ``value`` converted to type ``tp``; raise ConfigError naming ``path`` otherwise.

    Beyond ``tp`` and its declared bounds, every value gets the checks of the module docstring
    (finite floats, 64-bit integers within :data:`MAX_COUNT` unless bounded otherwise, clean text).
    ``_declared``: whether an enclosing ``Annotated`` declares a (lower, upper) bound."""
    origin = get_origin(tp)
    if tp is Any:
        check_plain(value, path)
        return value
    if origin is Annotated:
        base, *meta = get_args(tp)
        declared = (any(getattr(m, "has_lower", False) for m in meta) or _declared[0],
                    any(getattr(m, "has_upper", False) for m in meta) or _declared[1])
        value = coerce(base, value, path, _declared=declared)
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
                return coerce(arg, value, path, _declared=_declared)
            except ConfigError as exc:
                errors.append(exc)
        # the value had the shape of one arm and failed inside it (a nested key, or a number out of
        # range): that arm's own message names the field and the fix best
        nested = [e for e in errors if e.field != path]
        if nested:
            raise nested[0]
        shaped = [e for arm, e in zip([a for a in args if a is not type(None)], errors) if _has_shape(arm, value)]
        if shaped:
            raise shaped[0]
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
            check_plain(value, path)
            return dict(value)
        return {coerce(args[0], k, f"{path} key {k!r}"): coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, "must be true or false", f"set {path} to true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(path, "must be an integer", f"set {path} to a whole number", value)
        _check_count(value, path, *_declared)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, "must be a number", f"set {path} to a number such as 0.1", value)
        if isinstance(value, int):
            _check_int64(value, path)
        _check_finite(float(value), path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, "must be a string", f"set {path} to a quoted string", value)
        _check_text(value, path)
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
