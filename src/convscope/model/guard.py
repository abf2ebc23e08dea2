"""Temporary changes to a user's model that are always undone (docs/architecture.md, convention 1).

Methods need eval mode and frozen parameters while they run, but the user's module must come out
exactly as it went in, also when the method raises. Each context manager here records what it
changes and restores it in ``finally``.

Threads: the flags live on the model itself, so two threads changing and restoring them
interleaved would leave it wrong (thread A restores train mode while thread B still runs; B then
restores A's eval flags). Every context manager here therefore holds the model's own re-entrant
lock (:func:`exclusive`) for its whole block: a second thread's call on the same model waits for
the first to finish, and calls on different models run in parallel. The lock also covers the
hooks that convscope registers inside such a block, so a fast path's deep copy taken under it
(:class:`~convscope.model.fast.FastForward`) never copies another call's hooks. The locks are kept
in a weak dictionary: nothing is stored on the user's module.

convscope's own hooks (:func:`own_hook`) belong to the call that registered them: they act only on
forwards run by that call's thread (the lock makes other convscope calls wait, but a user's forward
in another thread still runs, and a hook registered before the lock was taken sees the forwards of
the call holding it), so the calls a hook counts are its own call's. While one of them runs, the
fast path's dry pass (:mod:`~convscope.model.fold`) does not record what it reads: convscope's
checks never count as data-dependence of the user's model (docs/architecture.md, convention 9).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_UNREFERENCEABLE = threading.RLock()
"""The lock of every module that cannot be weakly referenced (none of torch's own)."""
_IN_OWN_HOOK = threading.local()

Hook = TypeVar("Hook", bound=Callable[..., Any])


def model_lock(module: nn.Module) -> threading.RLock:
    """The re-entrant lock of the user's network (a convscope ``Model`` shares its net's lock)."""
    from .layers import unwrap  # layers imports this module

    root = unwrap(module)
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(root)
            if lock is None:
                lock = _LOCKS[root] = threading.RLock()
        except TypeError:  # not weakly referenceable
            return _UNREFERENCEABLE
    return lock


@contextmanager
def exclusive(module: nn.Module) -> Iterator[nn.Module]:
    """Hold the model's lock for the block: other threads' convscope calls on it wait."""
    with model_lock(module):
        yield module


def submodules(module: nn.Module) -> list[nn.Module]:
    """``module`` and every submodule, each once, in the order of ``module.modules()``: one walk
    of the ``_modules`` dicts, without the names and generators of ``named_modules()`` (it runs
    on every method call)."""
    found: list[nn.Module] = []
    seen: set[int] = set()
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        found.append(m)
        stack.extend(c for c in reversed(m._modules.values()) if c is not None)
    return found


def _trainable(modules: list[nn.Module]) -> list[nn.Parameter]:
    """The parameters of ``modules`` that require grad, each once."""
    params: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m._parameters.values():
            if p is not None and p.requires_grad:
                params[id(p)] = p
    return list(params.values())


@contextmanager
def _restoring(module: nn.Module, eval_mode: bool, freeze: bool) -> Iterator[nn.Module]:
    """Eval mode and/or frozen parameters for the block, from one walk of the tree; only the
    modules in train mode and the parameters that require grad are touched (most models arrive
    in eval mode: then this costs the walk), and exactly those are restored. Flags are set
    directly: exported programs refuse eval()."""
    with exclusive(module):
        modules = submodules(module)
        training = [m for m in modules if m.training] if eval_mode else []
        params = _trainable(modules) if freeze else []
        try:
            for m in training:
                m.training = False
            for p in params:
                p.requires_grad_(False)
            yield module
        finally:
            for p in params:
                p.requires_grad_(True)
            for m in training:
                m.training = True


def evaluating(module: nn.Module) -> AbstractContextManager[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's own flag."""
    return _restoring(module, eval_mode=True, freeze=False)


def frozen(module: nn.Module) -> AbstractContextManager[nn.Module]:
    """Stop gradients into parameters (methods want input gradients only), then restore flags."""
    return _restoring(module, eval_mode=False, freeze=True)


def guarded(module: nn.Module) -> AbstractContextManager[nn.Module]:
    """Eval mode and frozen parameters together: the state every read-only method runs in."""
    return _restoring(module, eval_mode=True, freeze=True)


def own_hook(fn: Hook) -> Hook:
    """``fn`` as a hook of convscope's own: it runs only for forwards in the thread that made it
    (other threads' forwards pass it by, returning ``None``: nothing changed), and while it runs
    :func:`in_own_hook` is true. Wrap every hook convscope registers on a user's module."""
    thread = threading.get_ident()

    @functools.wraps(fn)
    def hook(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != thread:
            return None
        depth = getattr(_IN_OWN_HOOK, "depth", 0)
        _IN_OWN_HOOK.depth = depth + 1
        try:
            return fn(*args, **kwargs)
        finally:
            _IN_OWN_HOOK.depth = depth

    return hook  # type: ignore[return-value]


def in_own_hook() -> bool:
    """Whether one of convscope's own hooks (:func:`own_hook`) is running in this thread."""
    return getattr(_IN_OWN_HOOK, "depth", 0) > 0
