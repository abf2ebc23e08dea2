"""Several threads explaining with one model, or with two: every call succeeds with the result it
gives alone, and the model comes out unharmed (guard.py's per-model lock, fold.py's thread-local
dry pass). Before, torch.fx tracing on one thread broke the others' forwards with a raw
``NameError``, and interleaved flag restores could leave the model in the wrong mode."""

from __future__ import annotations

import threading
from typing import Any

import torch

from convscope import explain
from convscope.model import Model
from tests.model.flat_nets import flat_inputs, flat_model
from tests.model_safety import assert_unharmed, snapshot

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("gradcam", {"layer": "conv1"}),
    ("saliency", {}),
    ("guided_backprop", {}),
    ("occlusion", {"window": 4, "stride": 4}),
    ("rise", {"masks": 16, "cells": 3}),
    ("scorecam", {"layer": "conv1"}),
]
WAIT = 120.0
"""Seconds all threads together may take (a deadlock fails the test instead of hanging it)."""


def _run_together(jobs: list[tuple[Model, str, dict[str, Any]]], x: torch.Tensor) -> list[torch.Tensor]:
    """Each job's ``explain(...).values``, all jobs started at once, one thread each."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        model, method, options = jobs[i]
        try:
            start.wait(WAIT)
            results[i] = explain(model, x, method=method, target=1, **options).values
        except Exception as err:  # reported by the assertion below, with its method
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a thread is still running (deadlock?)"
    failed = [(jobs[i][1], r) for i, r in enumerate(results) if isinstance(r, Exception)]
    assert not failed, failed
    return results


def test_six_threads_explaining_with_one_model() -> None:
    model = flat_model("view")  # also the model whose view() needs the fast path's fallback
    model.train()  # flags that a wrongly interleaved restore would break
    model.net.bn1.weight.requires_grad_(False)
    x = flat_inputs(1)
    before = snapshot(model)
    alone = [explain(model, x, method=m, target=1, **o).values for m, o in CALLS]
    assert_unharmed(model, before)
    together = _run_together([(model, m, o) for m, o in CALLS], x)
    for (method, _), got, want in zip(CALLS, together, alone):
        torch.testing.assert_close(got, want, msg=method)
    assert_unharmed(model, before)


def test_threads_on_two_models_run_side_by_side() -> None:
    """Different models do not wait for each other: one thread builds fast paths (the dry pass
    with its TorchFunctionMode) while others run backward rules (rules.py's mode) and hooks."""
    one, two = flat_model("flatten"), flat_model("einsum", seed=1)
    x = flat_inputs(1)
    jobs = [(one, "occlusion", {"window": 4, "stride": 4}), (one, "rise", {"masks": 16, "cells": 3}),
            (two, "guided_backprop", {}), (two, "gradcam", {"layer": "conv2"})]
    before = [snapshot(one), snapshot(two)]
    alone = [explain(m, x, method=name, target=1, **o).values for m, name, o in jobs]
    together = _run_together(jobs, x)
    for (_, method, _), got, want in zip(jobs, together, alone):
        torch.testing.assert_close(got, want, msg=method)
    assert_unharmed(one, before[0])
    assert_unharmed(two, before[1])
