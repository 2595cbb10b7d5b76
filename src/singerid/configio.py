"""Dataclass <-> plain-dict conversion with strict keys, YAML files and ``key.sub=value`` overrides."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON/YAML-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def reject_unknown_keys(cls: type, data: Any, where: str) -> dict:
    """``data`` as a dict after checking it is a mapping whose keys are fields of dataclass ``cls``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}.")
    return dict(data)


def from_dict(cls: type[T], data: dict | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError` naming them."""
    data = reject_unknown_keys(cls, data or {}, where)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            sub_from = getattr(hint, "from_dict", None)
            kwargs[key] = sub_from(value) if sub_from else from_dict(hint, value, f"{where}.{key}")
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            kwargs[key] = tuple(_coerce(v, float, f"{where}.{key}") if isinstance(v, str) else v for v in value)
        else:
            kwargs[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Numbers written as strings (YAML reads ``3e-4`` as text) become the declared number type."""
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, str) and str not in allowed:
        for kind in (int, float):
            if kind in allowed:
                try:
                    return kind(value)
                except ValueError:
                    continue
        raise ConfigError(f"{where}: {value!r} is not a valid {' or '.join(getattr(a, '__name__', str(a)) for a in allowed)}.")
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    return value


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level.")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, returning a copy."""
    out = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value.")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section.")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            first = (str(exc).strip().splitlines() or ["invalid YAML"])[0]
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({first}); quote it or fix it.") from None
    return out
