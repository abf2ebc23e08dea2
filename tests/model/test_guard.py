"""guarded(): flags restored on the way out, and one model's calls from several threads take turns.

Without the per-model lock, thread A restoring train mode while thread B still runs (and B then
restoring A's eval flags) left the user's model in the wrong mode.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from convscope.model import Model, evaluating, frozen, guarded
from tests.model_safety import assert_unharmed, snapshot

WAIT = 10.0
"""Seconds any event may take (a deadlock fails the test instead of hanging it)."""


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    net[1].weight.requires_grad_(False)  # mixed flags: each must come back as it was
    return net


def _flags(net: nn.Module) -> list[tuple[bool, list[bool]]]:
    return [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in net.modules()]


def test_guarded_restores_every_flag_also_after_an_exception() -> None:
    net = _net()
    before, flags = snapshot(net), _flags(net)
    with pytest.raises(ValueError), guarded(net):
        assert not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
        raise ValueError("a method failed")
    assert _flags(net) == flags
    assert_unharmed(net, before)  # no attribute left on the model either


def test_a_second_thread_waits_until_the_first_has_restored_the_model() -> None:
    net = _net()
    flags = _flags(net)
    a_inside, b_trying, b_inside = threading.Event(), threading.Event(), threading.Event()
    release = threading.Event()
    seen: list[object] = []

    def first() -> None:
        with guarded(net):
            a_inside.set()
            release.wait(WAIT)

    def second() -> None:
        a_inside.wait(WAIT)
        b_trying.set()
        with guarded(Model(net)):  # a wrapper of the same net shares its lock
            b_inside.set()
            seen.append(net.training)
        seen.append(_flags(net))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert b_trying.wait(WAIT)
    assert not b_inside.wait(0.2), "the second call ran while the first held the model"
    release.set()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert seen == [False, flags]  # B ran in eval mode, and left the model as it found it
    assert _flags(net) == flags


def test_calls_on_different_models_do_not_wait_for_each_other() -> None:
    one, two = _net(), _net()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with guarded(one):
            inside.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(WAIT)
        done = threading.Event()

        def use_two() -> None:
            with guarded(two), evaluating(two), frozen(two):  # re-entrant within one thread
                done.set()

        other = threading.Thread(target=use_two)
        other.start()
        assert done.wait(WAIT), "a call on another model waited"
        other.join(WAIT)
    finally:
        release.set()
        holder.join(WAIT)
