"""Parsing of free-form option values shared by commands (``--target``, ``-o key=value``)."""

from __future__ import annotations

import ast
from typing import Any

from ..errors import BadArgument
from ..types import Target


def parse_target(text: str) -> Target:
    """``285`` -> class index, ``top1`` stays, anything else is a label (``"Egyptian cat"``)."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["steps=32", "baseline=blurred"]`` -> ``{"steps": 32, "baseline": "blurred"}``."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadArgument(f"option {pair!r} is not KEY=VALUE (e.g. -o steps=32)")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options
