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
Number = int | float
CALLER_OPTIONS = frozenset({"progress"})
"""Options that the caller of a method fills in itself (a job passes its own progress)."""
_PLAIN: dict[type, Kind] = {bool: "bool", int: "int", float: "float", str: "text"}
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "steps": (1, 10_000), "samples": (1, 100_000), "masks": (1, 100_000), "cells": (1, 256),
    "segments": (1, 10_000), "window": (1, 4096), "stride": (1, 4096), "batch_size": (1, 4096),
    "max_channels": (1, 100_000), "seed": (0, 2**63 - 1), "p": (0, 1), "noise": (0, 100),
    "sigma": (0, 1000), "kernel_width": (0, 1000), "compactness": (0, 10_000), "alpha": (0, 1000),
    "beta": (0, 1000), "gamma": (0, 1000), "epsilon": (0, 1000), "stabilizer": (0, 1000),
    "draws": (1, 1000), "stdev": (0, 1000),
}
"""Bounds of numeric options by name (the same name means the same thing in every method): a
value outside is refused before any work, so one form field cannot exhaust the machine."""
MAX_DIGITS = 30
"""Longer number text is refused as too large: no option needs more digits, and Python's
``int()`` refuses thousands of them with a ValueError of its own."""


@dataclass(frozen=True)
class OptionSpec:
    """One option as a form shows it: its kind, default and, for a choice, the values."""

    name: str
    kind: Kind
    default: Any
    nullable: bool = False
    """``None`` is accepted (the method then picks a value itself, e.g. occlusion's window)."""
    choices: tuple[str, ...] = field(default_factory=tuple)
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "default": self.default,
                "nullable": self.nullable, "choices": list(self.choices), "low": self.low,
                "high": self.high}


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
    low, high = BOUNDS.get(name, (None, None)) if kind in ("int", "float") else (None, None)
    return OptionSpec(name, kind, default if plain else None, nullable or not plain, choices, low, high)


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
    where = f"option {spec.name}={shown(value)} of method {method!r}"
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
        raise BadArgument(f"{where}: {WANTED['bool']}")
    if spec.kind == "text":
        if isinstance(value, str) and value:
            return value
        raise BadArgument(f"{where}: {WANTED['text']}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadArgument(f"{where}: {WANTED[spec.kind]}")
    return check_number(where, value, "int" if spec.kind == "int" else "float", spec.low, spec.high)


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


WANTED = {"int": "must be an integer", "float": "must be a number", "bool": "must be true or false",
          "text": "must be a non-empty text"}
"""The one wording of each kind of mistake, for the web's every parameter."""


def parse_number(name: str, text: str, kind: Literal["int", "float"]) -> Number:
    """Number text from a URL or a form -> int or float (``name=text: give ...`` otherwise;
    thousands of digits are a clear error, not Python's ValueError)."""
    text = text.strip()
    if len(text) > MAX_DIGITS:
        raise BadArgument(f"{name}={shown(text)}: too long; {WANTED[kind]}")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise BadArgument(f"{name}={text!r}: {WANTED[kind]}") from None


def check_number(where: str, value: Number, kind: Literal["int", "float"], low: float | None = None,
                 high: float | None = None, *, strict: bool = False) -> Number:
    """``value`` as ``kind`` within [low, high] (``strict``: excluding both), finite; ``where``
    starts every message (``steps=0`` or ``option steps=0 of method 'ig'``)."""
    if kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
        raise BadArgument(f"{where}: {WANTED['int']}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadArgument(f"{where}: must be a finite number")
    low_bad = low is not None and (value <= low if strict else value < low)
    high_bad = high is not None and (value >= high if strict else value > high)
    if low_bad or high_bad:
        parts = [f"{'>' if strict else '>='} {low:g}" if low is not None else "",
                 f"{'<' if strict else '<='} {high:g}" if high is not None else ""]
        raise BadArgument(f"{where}: must be {' and '.join(p for p in parts if p)}")
    return int(value) if kind == "int" else float(value)
