"""Method names for the CLI, the web app and ``explain(method=...)``.

Code that knows which class it wants imports the class; string names exist only here, so a
typo in a name fails in one place with a did-you-mean message.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import BadArgument

if TYPE_CHECKING:
    from .attribution.base import Attribution

Family = Literal["gradient", "cam", "perturbation", "decomposition"]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its class and what callers need to know before calling it."""

    name: str
    cls: type[Attribution]
    family: Family
    needs_layer: bool
    signed: bool
    """Whether maps carry meaningful signs (drawn with a diverging colour map)."""

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.splitlines()[0] if doc else self.name

    def options(self) -> dict[str, inspect.Parameter]:
        """Keyword options of the method's constructor (besides model and layer)."""
        params = inspect.signature(self.cls).parameters
        return {n: p for n, p in params.items() if n not in {"self", "model", "layer"}
                and p.kind is inspect.Parameter.KEYWORD_ONLY}


REGISTRY: dict[str, MethodInfo] = {}
C = TypeVar("C", bound=type)


def register(name: str, *, family: Family, needs_layer: bool = False,
             signed: bool = False) -> Callable[[C], C]:
    """Class decorator that makes a method available by name."""

    def decorate(cls: C) -> C:
        if name in REGISTRY:
            raise RuntimeError(f"method {name!r} registered twice")
        REGISTRY[name] = MethodInfo(name, cls, family, needs_layer, signed)
        cls.method_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def _load_all() -> None:
    from . import attribution  # noqa: F401  (importing registers every method)


def method_names() -> list[str]:
    """Names of every registered method, in registration order."""
    _load_all()
    return list(REGISTRY)


def get_method(name: str) -> MethodInfo:
    """The registered method called ``name`` (did-you-mean error otherwise)."""
    _load_all()
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose from {', '.join(REGISTRY)}"
    raise BadArgument(f"method {name!r} is not known; {hint}")


def build_method(name: str, model: Any, layer: str | None = None, **options: Any) -> Attribution:
    """Instantiate a registered method, checking option names against its constructor."""
    info = get_method(name)
    allowed = info.options()
    unknown = sorted(set(options) - set(allowed))
    params = inspect.signature(info.cls).parameters.values()
    passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if unknown and not passes_on:  # wrappers (smoothgrad) hand extra options to what they wrap
        accepted = ", ".join(allowed) or "none"
        raise BadArgument(f"method {name!r} has no option {unknown[0]!r}; its options: {accepted}")
    if info.needs_layer:
        return info.cls(model, layer=layer or "auto", **options)
    if layer not in (None, "auto"):
        raise BadArgument(f"method {name!r} does not take a layer (got layer={layer!r})")
    return info.cls(model, **options)


def method_list(methods: str | Sequence[str]) -> list[str]:
    """``"all"``, ``"a,b"`` or a list -> checked method names (a typo fails before any work).
    ``"all"`` is every method that explains a class score (not D-RISE, which explains detections)."""
    if isinstance(methods, str):
        names = [n for n in method_names() if not getattr(REGISTRY[n].cls, "detections_only", False)
                 ] if methods == "all" else [
            m.strip() for m in methods.split(",") if m.strip()]
    else:
        names = list(methods)
    for name in names:
        get_method(name)
    if not names:
        raise BadArgument("no method given; name one, several, or all")
    return names
