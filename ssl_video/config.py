"""Typed configs: dataclass schemas filled from YAML files and dotted ``key=value`` overrides.

Every value is checked against the schema's type annotation while loading, so an unknown key,
a wrong type or a missing path fails at once with a :class:`ConfigError` naming the full dotted key.

Schemas are plain dataclasses. A field whose metadata has ``{"path": "file"}``, ``{"path": "dir"}``
or ``{"path": "any"}`` must name an existing path (unless it is ``None`` or empty).

Sections validate themselves: a schema derived from :class:`Section` checks the bounds its fields declare
(:func:`bounded`: ``ge``/``gt``/``le``/``lt``) and then runs its own ``check()`` for rules between fields,
whenever it is built, from YAML or in code. A section raises :class:`ConfigError` with the key relative to
itself; the loader prefixes it with where the section sits (``crops.x`` -> ``stica.crops.x``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ssl_video.errors import ConfigError, UserError

T = TypeVar("T")

__all__ = ["load_config", "from_dict", "to_dict", "parse_overrides", "apply_overrides", "read_yaml", "dump_yaml",
           "Section", "bounded"]

_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def bounded(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, **kwargs: Any) -> Any:
    """A dataclass field whose numeric value (``None`` is always allowed where the type allows it) must lie
    within the given bounds; checked by :class:`Section`."""
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if value is not None}
    metadata = {**kwargs.pop("metadata", {}), "bounds": bounds}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_bounds(field: dataclasses.Field, value: Any, key: str) -> None:
    bounds = field.metadata.get("bounds") if field.metadata else None
    if not bounds or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for name, limit in bounds.items():
        test, symbol = _BOUNDS[name]
        if not test(value, limit):
            rule = " and ".join(f"{_BOUNDS[n][1]} {b:g}" for n, b in bounds.items())
            raise ConfigError(key, f"must be {rule}, got {value:g}")


class Section:
    """Base of self-validating schema dataclasses: field bounds, then :meth:`check` (rules between fields)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_bounds(field, getattr(self, field.name), field.name)
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` (key relative to this section) when values do not fit together."""


def read_yaml(path: str | Path, allow_empty: bool = False) -> dict:
    """The mapping in a YAML file; an empty file is refused unless ``allow_empty``; errors are one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context = getattr(exc, "context", None)
        what = f"{' '.join(context.split())}: {problem}" if context else problem
        raise UserError(f"config file {path} is not valid YAML at{where}: {what}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a text file (not UTF-8)") from None
    if data is None:
        if not allow_empty:
            raise UserError(f"config file {path} is empty (it must hold a mapping of keys; see "
                            "`ssl-video config defaults`)")
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return data


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=1", "c=[1, 2]"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value (e.g. optim.lr=0.1)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override '{item}' conflicts with an earlier override of '{part}'")
            node = child
        node[parts[-1]] = value
    return out


def apply_overrides(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = apply_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> T:
    """Build a ``schema`` instance from ``base`` <- YAML ``path`` <- dotted ``overrides``."""
    data = dict(base or {})
    if path is not None:
        data = apply_overrides(data, read_yaml(path))
    if overrides:
        data = apply_overrides(data, parse_overrides(overrides))
    return from_dict(schema, data)


def from_dict(schema: type[T], data: Any, prefix: str = "") -> T:
    """Validate ``data`` against the dataclass ``schema`` and build it; errors name the dotted key."""
    if isinstance(data, schema):
        return data
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {_describe(data)}")
    hints = get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(prefix, str(key)), f"unknown key (known keys here: {known})")
    kwargs = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in data:
            value = _coerce(hints[name], data[name], key)
        elif field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
            continue
        else:
            raise ConfigError(key, "missing required value")
        _check_path(field, value, key)
        kwargs[name] = value
    try:
        obj = schema(**kwargs)
    except ConfigError as exc:  # a section's own check names its key relative to the section
        raise exc.under(prefix) from None
    for name, field in fields.items():  # defaults may name paths too
        if name not in kwargs:
            _check_path(field, getattr(obj, name), _join(prefix, name))
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list/scalars (YAML/JSON safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _check_path(field: dataclasses.Field, value: Any, key: str) -> None:
    kind = field.metadata.get("path") if field.metadata else None
    if kind is None or value in (None, ""):
        return
    path = Path(value).expanduser()
    ok = {"file": path.is_file, "dir": path.is_dir, "any": path.exists}[kind]()
    if not ok:
        what = {"file": "file", "dir": "directory", "any": "path"}[kind]
        raise ConfigError(key, f"{what} does not exist: {value}")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error says more than "expected X"
            return _coerce(options[0], value, key)
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(exc)
        names = " or ".join(_type_name(o) for o in options)
        raise ConfigError(key, f"expected {names}, got {_describe(value)}")
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(key, f"expected one of {', '.join(map(repr, args))}, got {value!r}{hint}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_describe(value)}")
        (item_tp,) = args or (Any,)
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple):  # noqa: UP006
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(key, f"expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {_describe(value)}")
        vt = args[1] if args else Any
        return {k: _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, f"expected a string, got {_describe(value)}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(key, f"expected a path, got {_describe(value)}")
    raise ConfigError(key, f"unsupported type {tp!r} in the schema")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    return getattr(tp, "__name__", str(tp))
