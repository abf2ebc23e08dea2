"""Every value a request carries, checked when it arrives (a 400 before anything is queued), with
the option specs' wording (:mod:`convscope.methods.option_specs`), and a job's estimated peak
memory against the budget per job (docs/architecture.md, section 6, "Parameters").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import BadArgument
from ..methods.option_specs import WANTED, check_number, option_specs, parse_number, shown
from ..model import Model, default_batch_size
from ..tasks.adversarial import parse_budget

FieldType = Literal["int", "float", "budget", "text", "choice", "bool", "image", "layers", "target"]
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")
MAX_TEXT = 2000
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.I)
FORM_KEYS = frozenset({"model", "run", "wait", "token", "embed"})
"""Keys of a form page's address or body that are not its settings (the model, run=1, ...)."""
BYTES_PER_PIXEL = 2048
"""What a job keeps per input pixel of each image of one pass: about twice the most measured (a
gradient pass kept 1.06 KB per pixel through digits_cnn, 0.54 KB through EfficientNet-Lite0;
tests/web/test_service.py measures a job at the bound)."""
BUFFERS = (("masks", "cells", "cells"), ("samples", "segments"))
"""Options whose product is a float32 buffer a method keeps whole (RISE's grids, LIME's bits)."""


@dataclass(frozen=True)
class Field:
    """One setting of a form, a URL or a JSON body, and what is allowed."""

    name: str
    type: FieldType
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    strict: bool = False
    """Bounds exclude ``low``/``high`` themselves (``lr > 0``, ``0 < threshold < 1``)."""
    required: bool = False

    @property
    def shown_default(self) -> str:
        """The default as a form shows it (a boolean as 1 or 0)."""
        default = self.default
        return "" if default is None else str(int(default)) if isinstance(default, bool) else str(default)

    def parse(self, raw: object) -> Any:
        """The typed value of ``raw`` (text, or a JSON value); absent (None) or empty: the default
        (a required setting may be absent only when it has one)."""
        text = "" if raw is None else ("1" if raw is True else "0" if raw is False else str(raw).strip())
        if len(text) > MAX_TEXT:
            raise BadArgument(f"{self.name}: at most {MAX_TEXT} characters")
        if text == "":
            if self.required and (raw is not None or self.default is None):
                raise BadArgument(f"{self.name} is required: {self.help}")
            default = self.default
            return self.parse(default) if isinstance(default, str) and default else default
        where = f"{self.name}={text if len(text) <= 40 else shown(text)}"
        if self.type == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise BadArgument(f"{where}: {WANTED['bool']}")
            return text.lower() in _TRUE
        if self.type == "choice":
            if text not in self.choices:
                raise BadArgument(f"{where}: choose from {', '.join(self.choices)}")
            return text
        if self.type in ("int", "float", "budget"):
            kind: Literal["int", "float"] = "int" if self.type == "int" else "float"
            value = (parse_budget(text, self.name) if self.type == "budget"
                     else raw if isinstance(raw, (int, float)) and not isinstance(raw, bool)
                     else parse_number(self.name, text, kind))
            return check_number(where, value, kind, self.low, self.high, strict=self.strict)
        return text


def parse_int(name: str, text: str | None, low: int, high: int, default: int | None = None) -> int:
    return int(Field(name, "int", default, low=low, high=high, required=default is None).parse(text))


def parse_choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    return str(Field(name, "choice", choices=choices).parse(text))


def parse_settings(fields: tuple[Field, ...], params: Mapping[str, Any], not_settings: Set[str],
                   owner: str, *, partial: bool = False) -> dict[str, Any]:
    """Typed settings from a query or JSON body (absent: the default); an unknown name is
    refused, since a typo would otherwise silently run the default. ``partial``: check only the
    settings given (a form opened without them is not an error)."""
    names = [f.name for f in fields]
    unknown = sorted(set(params) - set(names) - not_settings)
    if unknown:
        raise BadArgument(f"{owner} has no setting {unknown[0]!r}; its settings: {', '.join(names)}")
    return {f.name: f.parse(params.get(f.name)) for f in fields if not partial or f.name in params}


def parse_text(name: str, text: str) -> Any:
    """A method option's value from a URL: true/false, none, an integer, a number, else the text
    (the option's spec then checks it)."""
    value = text.strip()
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.lower() in ("", "none", "null"):
        return None
    if _INT.fullmatch(value):
        return parse_number(name, value, "int")
    if _FLOAT.fullmatch(value):
        return parse_number(name, value, "float")
    return value


def check_memory(limit: float, what: str, pixels: float, rows: float = 1, buffers: float = 0) -> None:
    """Refuse a job whose estimated peak memory, ``rows`` images of ``pixels`` in one pass
    (:data:`BYTES_PER_PIXEL` each) and ``buffers`` floats kept whole, is over ``limit`` bytes;
    ``what`` names the settings to lower."""
    need = rows * pixels * BYTES_PER_PIXEL + 4 * buffers
    if not need <= limit:
        raise BadArgument(f"{what} would need about {need / 2**30:.3g} GB of memory; the limit per job is "
                          f"{limit / 2**30:.3g} GB: lower {what.partition(' with ')[2] or 'the size'}")


def check_explain_memory(limit: float, model: Model, method: str, options: dict[str, Any]) -> None:
    """An explanation's memory: its batch (the device's default when not given) at the model's
    input size per pass, and the :data:`BUFFERS` its options ask for (defaults included)."""
    values = {s.name: s.default for s in option_specs(method)} | options
    if "batch_size" in values:
        values["batch_size"] = values["batch_size"] or default_batch_size(model.device)
    named = {n: values[n] for n in ("batch_size", *(n for b in BUFFERS for n in b)) if values.get(n)}
    buffers = sum(math.prod(named[n] for n in b) for b in BUFFERS if all(n in named for n in b))
    check_memory(limit, f"{method} with " + ", ".join(f"{k}={v}" for k, v in named.items()),
                 math.prod(model.input_size or (224, 224)), named.get("batch_size", 1), buffers)
