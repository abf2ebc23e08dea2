"""Several threads explaining with one model, or with two: every call succeeds with the result it
gives alone, and the model comes out unharmed (guard.py's per-model lock, fold.py's thread-local
dry pass). Before, torch.fx tracing on one thread broke the others' forwards with a raw
``NameError``, and interleaved flag restores could leave the model in the wrong mode."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from convscope import explain
from convscope.methods.features import activation_mask, feature_maps, filter_tiles
from convscope.methods.features.classes import channel_effect
from convscope.model import Model, Preprocess, auto_layer, capture, forward_until, guarded, list_layers
from tests.as_detections import CLASS_METHODS
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


# Calls counted per call (issue 23): "auto" and `name:i` resolve from the calls of the resolving
# call's own forward, never from another thread's forward of the same module.

class SharedReLU(nn.Module):
    """conv-BN-relu-conv-relu-GAP-linear with ONE ReLU module called twice (ResNet's shared
    ``relu``): "auto" is ``relu:1``, and a wrong count names a call that does not exist."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.relu = nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.conv2(h))
        return self.fc(h.mean((2, 3)))


def shared_relu_model() -> Model:
    torch.manual_seed(0)
    return Model(SharedReLU().eval(), preprocess=Preprocess(input_size=(12, 12)), name="shared")


FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 16}, "smoothgrad": {"samples": 3},
    "occlusion": {"window": 4, "stride": 4}, "rise": {"masks": 8}, "lime": {"samples": 8, "segments": 4},
    "kernel_shap": {"samples": 8, "segments": 4}, "gradient_shap": {"samples": 3, "draws": 2},
    "deeplift_shap": {"draws": 2},
}


def _explained(method: str, layer: str | None = None) -> Job:
    def run(model: Model, x: Tensor) -> Any:
        options = FAST.get(method, {}) | ({"layer": layer} if layer else {})
        got = explain(model, x, method=method, target=1, **options)
        return got.values, got.layer

    return run


def _captured(model: Model, x: Tensor) -> Any:
    with guarded(model), capture(model, ["relu:0", "auto"]) as acts:
        model(x)
    return acts["relu:0"], acts["relu:1"]


Job = Callable[[Model, Tensor], Any]
JOBS: dict[str, Job] = {
    **{name: _explained(name) for name in CLASS_METHODS},  # layer methods: "auto" (= relu:1)
    "gradcam relu:0": _explained("gradcam", "relu:0"),
    "auto_layer": lambda m, x: auto_layer(m),
    "list_layers": lambda m, x: [(r.name, r.output_shape) for r in list_layers(m)],
    "feature_maps auto": lambda m, x: feature_maps(m, x, "auto").maps,
    "feature_maps relu:0": lambda m, x: feature_maps(m, x, "relu:0", sort="max", top=3).maps,
    "activation_mask": lambda m, x: activation_mask(m, x, "relu:1", 1, quantile=0.5).mask,
    "filter_tiles": lambda m, x: filter_tiles(m, "conv2").tiles,
    "channel_effect": lambda m, x: channel_effect(m, x, "auto", 1).scores,
    "forward_until": lambda m, x: forward_until(m, x, "relu:0")["relu:0"],
    "capture": _captured,
}


def _same(got: Any, want: Any, msg: str) -> None:
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), msg
        for g, w in zip(got, want):
            _same(g, w, msg)
    elif isinstance(want, Tensor):
        torch.testing.assert_close(got, want, msg=msg)
    else:
        assert got == want, msg


def test_every_method_and_inside_view_from_six_threads_gives_its_solo_result() -> None:
    model = shared_relu_model()
    x = flat_inputs(1)
    assert auto_layer(model) == "relu:1"
    alone = {name: job(model, x) for name, job in JOBS.items()}
    names = list(JOBS) * 2  # every job twice, interleaved across six threads
    start, results = threading.Barrier(6), {}

    def run(worker: int) -> None:
        start.wait(WAIT)
        for i in range(worker, len(names), 6):
            try:
                results[(i, names[i])] = JOBS[names[i]](model, x)
            except Exception as err:  # reported below with its job
                results[(i, names[i])] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    with switching_often():
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a thread is still running (deadlock?)"
    failed = {k: v for k, v in results.items() if isinstance(v, Exception)}
    assert not failed, failed
    assert len(results) == len(names)
    for (_, name), got in results.items():
        _same(got, alone[name], name)


def test_a_forward_of_the_users_own_in_another_thread_is_not_counted() -> None:
    """The user's thread runs the model (no convscope, no lock) while convscope resolves "auto"
    and `name:i` and captures calls: the counts are those of convscope's own forward."""
    model = shared_relu_model()
    x = flat_inputs(1)
    want = {name: JOBS[name](model, x) for name in ("auto_layer", "feature_maps relu:0", "capture",
                                                    "gradcam", "list_layers")}
    stop = threading.Event()

    def users_loop() -> None:
        with torch.no_grad():
            while not stop.is_set():
                model.net(x)

    user = threading.Thread(target=users_loop)
    with switching_often():
        user.start()
        try:
            for _ in range(5):
                for name, expected in want.items():
                    _same(JOBS[name](model, x), expected, name)
        finally:
            stop.set()
            user.join(WAIT)


@contextmanager
def switching_often() -> Iterator[None]:
    """Threads take turns every 10 us instead of every 5 ms, so their forwards interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_threads_on_the_embedded_model(lite0: Model) -> None:
    """The issue's report, short: Grad-CAM ("auto"), saliency, guided backprop and occlusion from
    four threads on Lite0 (an "auto" layer and `_relu_head` resolved while the others run)."""
    x = lite0.normalize(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("gradcam", {}), ("saliency", {}), ("guided_backprop", {}),
        ("occlusion", {"window": 112, "stride": 112})]
    alone = [explain(lite0, x, method=m, target=1, **o) for m, o in calls]
    together = _run_together([(lite0, m, o) for m, o in calls], x)
    for (method, _), got, want in zip(calls, together, alone):
        torch.testing.assert_close(got, want.values, msg=method)
