"""Temporary changes to a user's model that are always undone (DESIGN.md convention 1).

Methods need eval mode and frozen parameters while they run, but the user's module must come out
exactly as it went in, also when the method raises. Each context manager here records what it
changes and restores it in ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's own flag."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in flags:  # set flags directly: some modules (exported programs) refuse eval()
            m.training = False
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Stop gradients into parameters (methods want input gradients only), then restore flags."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def guarded(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters together: the state every read-only method runs in."""
    with evaluating(module), frozen(module):
        yield module
