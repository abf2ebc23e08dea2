"""The CLI's spelling of feature-visualization objectives: ``channel:_blocks.8:3 + 20*diversity:_blocks.8``.

The library takes :class:`~convscope.methods.features.objectives.Objective` objects (``channel``,
``neuron``, ``logit``, ... composed with ``+`` and ``*``); only the command line, which receives
text, parses it here into those objects.
"""

from __future__ import annotations

from ..errors import BadArgument
from ..methods.features.objectives import (
    Logit,
    Objective,
    channel,
    deepdream,
    direction,
    diversity,
    neuron,
)
from ..types import Target

KINDS = ("channel", "neuron", "layer", "logit", "prob", "logprob", "direction", "diversity")


def _target(text: str) -> Target:
    """``285`` -> index, ``285,281`` -> one per image, anything else is a label."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 1 and all(p.isdigit() for p in parts):
        return [int(p) for p in parts]
    return int(text) if text.strip().isdigit() else text.strip()


def _ints(text: str, what: str) -> list[int]:
    """``3`` / ``3,7,9`` / ``0-7`` (inclusive) -> list of ints."""
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise BadArgument(f"{what} {text!r}: give a number, a list 3,7,9 or a range 0-7")
        out.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return out


def _parse_term(text: str) -> Objective:
    weight, star, rest = text.partition("*")
    try:
        w = float(weight) if star else 1.0
    except ValueError:
        star = ""
    if not star:  # no weight (or a '*' that is not one: the kind check complains)
        w, rest = 1.0, text
    kind, _, body = rest.strip().partition(":")
    kind, parts = kind.strip().lower(), body.split(":")
    obj: Objective
    if kind not in KINDS or not body:
        raise BadArgument(f"objective {text.strip()!r}: expected KIND:ARGS with KIND one of "
                          f"{', '.join(KINDS)} (e.g. channel:_blocks.8:3, logit:285)")
    if kind in ("logit", "prob", "logprob"):
        obj = Logit(_target(body), kind=kind)
    elif kind in ("channel", "direction") and len(parts) >= 2:
        layer, arg = ":".join(parts[:-1]), parts[-1]
        if kind == "channel":
            units = _ints(arg, "channel")
            obj = channel(layer, units[0] if len(units) == 1 else units)
        else:
            try:
                obj = direction(layer, [float(v) for v in arg.split(",")])
            except ValueError:
                raise BadArgument(f"direction {arg!r}: give comma-separated numbers") from None
    elif kind == "neuron" and len(parts) >= 2:
        tail = 3 if len(parts) >= 4 and all(p.strip().isdigit() for p in parts[-2:]) else 1
        layer, units = ":".join(parts[:-tail]), _ints(parts[-tail], "neuron channel")
        yx = [int(p) for p in parts[-2:]] if tail == 3 else [None, None]
        obj = neuron(layer, units[0] if len(units) == 1 else units, yx[0], yx[1])
    elif kind == "layer":
        moded = len(parts) > 1 and parts[-1] in ("square", "l2")
        obj = deepdream(":".join(parts[:-1]), parts[-1]) if moded else deepdream(body)
    elif kind == "diversity":
        obj = diversity(body)
    else:
        args = "LAYER:V1,V2,..." if kind == "direction" else "LAYER:C"
        raise BadArgument(f"objective {text.strip()!r}: {kind} needs {args}")
    return obj if w == 1.0 else w * obj


def parse_objective(text: str) -> Objective:
    """An objective from its CLI spelling; terms joined by ``+``, each optionally ``W*``.

    ``channel:LAYER:C`` (C may be ``3,7,9`` or ``0-7``: one image per channel),
    ``neuron:LAYER:C[:Y:X]``, ``layer:LAYER[:l2]``, ``logit:285`` or ``logit:Egyptian cat``,
    ``prob:285``, ``logprob:285``, ``direction:LAYER:v1,v2,...``, ``diversity:LAYER``;
    e.g. ``channel:_blocks.8:3,4,5 + 20*diversity:_blocks.8``.
    """
    terms = text.split("+")
    if not text.strip() or any(not t.strip() for t in terms):
        raise BadArgument(f"objective {text!r} is empty or has an empty term")
    return sum((_parse_term(t) for t in terms), start=0)  # type: ignore[return-value]
