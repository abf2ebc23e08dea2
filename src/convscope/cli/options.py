"""Parsing of free-form option values shared by commands (``--target``, ``-o key=value``)."""

from __future__ import annotations

import argparse
import ast
from typing import Any

from ..errors import BadArgument


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


def add_target(parser: argparse.ArgumentParser, default: str | None = "top1") -> None:
    """``--target``: a class index, a label, or top1 (parsed by :func:`parse_target`)."""
    parser.add_argument("--target", default=default,
                        help="class index, label or top1 (default)" if default == "top1"
                        else "class index or label")


def add_layer(parser: argparse.ArgumentParser) -> None:
    """``--layer`` of the CAM-family methods."""
    parser.add_argument("--layer", default="auto", help="layer for CAM-family methods (default auto)")


def add_method_options(parser: argparse.ArgumentParser, example: str = "steps=32") -> None:
    """``-o KEY=VALUE``, repeatable: keyword options of a method (parsed by :func:`parse_options`)."""
    parser.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                        help=f"method option, repeatable (e.g. -o {example})")


def add_json(parser: argparse.ArgumentParser, text: str = "print a machine-readable summary") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def add_run_options(parser: argparse.ArgumentParser, *, steps: int, size_help: str) -> None:
    """``--steps --size --seed --out --json`` of the commands that optimize a picture."""
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    parser.add_argument("--size", type=int, help=size_help)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", help="PNG to write (a JSON summary goes next to it)")
    add_json(parser, "print the JSON summary")
