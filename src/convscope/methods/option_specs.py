"""Method options as plain types, for callers that speak JSON rather than Python (the web app).

The registry knows each method's keyword options from its constructor signature
(:meth:`MethodInfo.options`); this module reads their type hints once more and keeps what a form
or a JSON body can carry: integers, numbers, booleans, text and the values of a ``Literal``
(``magnitude: Literal["abs", "square"]`` becomes a choice). Parts that only Python can pass (a
baseline tensor, a callable, a progress callback) are left out; an option with no plain part at
all is not offered, and setting it from JSON is refused with a message that says so.
:func:`check_options` turns JSON values into the option values the constructor expects, so a bad
value is refused before any work is queued, with the same kind of one-line message as the CLI.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ..errors import BadArgument
from .registry import MethodInfo, get_method

Kind = Literal["int", "float", "bool", "choice", "text"]
CALLER_OPTIONS = frozenset({"progress"})
"""Options that the caller of a method fills in itself (a job passes its own progress)."""
_PLAIN: dict[type, Kind] = {bool: "bool", int: "int", float: "float", str: "text"}


@dataclass(frozen=True)
class OptionSpec:
    """One option as a form shows it: its kind, default and, for a choice, the values."""

    name: str
    kind: Kind
    default: Any
    nullable: bool = False
    """``None`` is accepted (the method then picks a value itself, e.g. occlusion's window)."""
    choices: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "default": self.default,
                "nullable": self.nullable, "choices": list(self.choices)}


def _parts(hint: Any) -> list[Any]:
    """A union's members, nested unions flattened."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [p for arg in typing.get_args(hint) for p in _parts(arg)]
    return [hint]


def _spec(name: str, hint: Any, default: Any) -> OptionSpec | None:
    """The plain part of one option's type, or ``None`` when only Python can set it."""
    parts = _parts(hint)
    nullable = type(None) in parts or default is None
    choices = tuple(str(v) for p in parts if typing.get_origin(p) is Literal for v in typing.get_args(p))
    kinds = [_PLAIN[p] for p in parts if p in _PLAIN]
    kind: Kind | None = "choice" if choices else (kinds[0] if kinds else None)
    if kind is None:
        return None
    plain = default is None or isinstance(default, (bool, int, float, str))
    return OptionSpec(name, kind, default if plain else None, nullable or not plain, choices)


def option_specs(method: str | MethodInfo) -> list[OptionSpec]:
    """The options of ``method`` that plain values can set, in signature order."""
    info = get_method(method) if isinstance(method, str) else method
    return [s for s in _all_specs(info).values() if s is not None]


def _all_specs(info: MethodInfo) -> dict[str, OptionSpec | None]:
    params = info.options()
    hints = typing.get_type_hints(info.cls.__init__)
    return {name: _spec(name, hints.get(name, Any), _default(p))
            for name, p in params.items() if name not in CALLER_OPTIONS}


def _default(param: inspect.Parameter) -> Any:
    return None if param.default is inspect.Parameter.empty else param.default


def describe(method: str | MethodInfo) -> dict[str, Any]:
    """A method as JSON: name, summary, family, whether it takes a layer, signed maps, options."""
    info = get_method(method) if isinstance(method, str) else method
    return {"name": info.name, "summary": info.summary, "family": info.family,
            "needs_layer": info.needs_layer, "signed": info.signed,
            "options": [s.as_dict() for s in option_specs(info)]}


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """JSON option values for ``method`` -> the values to pass it; a one-line ``BadArgument``
    names the option and what it accepts when a value does not fit."""
    info = get_method(method)
    specs = _all_specs(info)
    checked = {}
    for name, value in options.items():
        if name not in specs:
            offered = ", ".join(n for n, s in specs.items() if s is not None) or "none"
            raise BadArgument(f"method {method!r} has no option {name!r}; its options: {offered}")
        spec = specs[name]
        if spec is None:
            raise BadArgument(f"option {name!r} of method {method!r} takes a tensor or a callable; "
                              "set it from Python (convscope.explain)")
        checked[name] = _value(method, spec, value)
    return checked


def _value(method: str, spec: OptionSpec, value: Any) -> Any:
    where = f"option {spec.name}={value!r} of method {method!r}"
    if value is None:
        if spec.nullable:
            return None
        raise BadArgument(f"{where}: give a value (default {spec.default!r})")
    if spec.kind == "choice":
        if isinstance(value, str) and value in spec.choices:
            return value
        raise BadArgument(f"{where}: choose from {', '.join(map(repr, spec.choices))}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise BadArgument(f"{where}: must be true or false")
    if spec.kind == "text":
        if isinstance(value, str) and value:
            return value
        raise BadArgument(f"{where}: must be a non-empty text")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind == "int":
        if number and float(value).is_integer():
            return int(value)
        raise BadArgument(f"{where}: must be an integer")
    if number and math.isfinite(value):
        return float(value)
    raise BadArgument(f"{where}: must be a finite number")
