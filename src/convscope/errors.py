"""The few exception types convscope raises, and the one way it warns (:func:`warn`).

Every message is one line that names the offending input (file, argument, layer, ...) and says
what to do instead. The CLI prints ``str(error)`` alone and exits with code 2, so a message must
make sense without a traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, TypeVar, get_args

if TYPE_CHECKING:
    from typing_extensions import TypeForm

T = TypeVar("T")


class ConvscopeError(Exception):
    """Base class: a problem with the user's input that the user can fix."""


class BadImage(ConvscopeError):
    """An image source that cannot be read, or whose pixels cannot be trusted."""


class BadLayer(ConvscopeError):
    """A layer name that does not resolve in the model (the message lists the closest names)."""


class BadTarget(ConvscopeError):
    """A target (class index, label, callable, ...) that does not fit the model's output."""


class BadModel(ConvscopeError):
    """A model name, checkpoint or factory that cannot be loaded, or a model that cannot do it."""


class MethodFailed(ConvscopeError):
    """A method failed inside the model's own code; the message names the model, method, layer and
    input, the original exception is chained as ``__cause__``."""


class BadArgument(ConvscopeError, ValueError):
    """Any other option with a value outside what it accepts."""


class MissingDependency(ConvscopeError, ImportError):
    """An optional package is needed for this feature; the message says how to install it."""


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """The shared option check: a clear error instead of a silent empty result, a NaN map or a
    size of 0 quietly taken for "the default"."""
    if value <= 0 or (integer and int(value) != value):
        kind = "a positive integer" if integer else "positive"
        raise BadArgument(f"{name}={value!r}: must be {kind}")


def check_choice(name: str, value: object, choices: TypeForm[T]) -> T:
    """Reject a value outside a ``Literal`` (the accepted values are in the message) and return it
    typed as that ``Literal``: ``mode = check_choice("mode", mode, Mode)``."""
    allowed = get_args(choices)
    if value not in allowed:
        raise BadArgument(f"{name}={value!r}: choose from {', '.join(map(repr, allowed))}")
    return value  # type: ignore[return-value]  # value is one of the Literal's members


def _ours(frame: object) -> bool:
    name = getattr(frame, "f_globals", {}).get("__name__", "")
    return name == "convscope" or name.startswith("convscope.")


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the code that called into convscope: the caller of the
    outermost convscope frame on the stack (through ``explain()``, the user's line, not a frame
    of convscope's own, however deep the warning was raised, and across torch's frames of a hook
    in between). Every warning of the package goes through here instead of a hand-counted
    ``stacklevel``."""
    frame = sys._getframe(1)
    level = outer = 1  # level 1: warn()'s caller, which warnings.warn calls stacklevel 2
    while frame is not None:
        if _ours(frame):
            outer = level
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=outer + 2)
