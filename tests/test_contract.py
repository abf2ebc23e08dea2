"""The model-safety contract (docs/architecture.md, convention 1): nothing convscope runs may harm the model.

Each entry of ``CASES`` uses one part of the library the way a method does, on a tiny seeded
network in *train* mode with some parameters frozen and a user hook of its own, wrapped in a
``Model`` or bare. Afterwards the model must be exactly as before: same hooks, no torch-function
mode left, bitwise-equal ``state_dict``, same module tree and parameter objects, same training and
``requires_grad`` flags, no ``.grad``, no new instance attributes. The same must hold when the
forward pass raises halfway (the ``Trap`` module). New methods join by adding one entry to CASES.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import ConvscopeError
from convscope.methods.attribution.baselines import make_baseline
from convscope.methods.dataset import crop_patches, embed, scan
from convscope.methods.features import activation_mask, channel, feature_maps, filter_tiles, logit, visualize
from convscope.methods.features.classes import channel_effect
from convscope.methods.synthesis import (
    fgsm,
    fool,
    invert,
    pgd,
    synthesize_texture,
    train_fast_style,
    transfer_style,
)
from convscope.model import (
    Model,
    Preprocess,
    auto_layer,
    capture,
    forward_until,
    guarded,
    list_layers,
)
from convscope.model.receptive import field_geometry, receptive_field
from convscope.model.rules import DECONV, GUIDED, BackwardRule, backward_rule
from convscope.types import Detection, ProgressFn
from convscope.web.cache import DiskCache, JobResult
from convscope.web.jobs import JobManager
from tests.as_detections import DETECTION_METHODS, as_detections
from tests.model_safety import assert_unharmed, snapshot
from tests.rep_blocks import RepNet

Case = Callable[[nn.Module, Tensor], None]


def _capture(model: nn.Module, x: Tensor) -> None:
    with guarded(model), capture(model, ["conv1", "conv3"]) as acts:
        model(x)
    acts["conv3"]


def _capture_grads(model: nn.Module, x: Tensor) -> None:
    with guarded(model), capture(model, ["conv2", "conv3"], grads=True) as acts:
        out = model(x)
        acts.gradients(out[:, 0])


def _guarded(fn: Callable[..., object]) -> Callable[..., None]:
    """``fn`` run in eval mode with frozen parameters, as every method runs primitives."""

    def run(model: nn.Module, *args: Any, **kwargs: Any) -> None:
        with guarded(model):
            fn(model, *args, **kwargs)

    return run


def _rule(rule: BackwardRule) -> Case:
    def run(model: nn.Module, x: Tensor) -> None:
        x = x.clone().requires_grad_(True)
        with guarded(model), backward_rule(rule):
            out = model(x)
            torch.autograd.grad(out[:, 1].sum(), x)

    return run


CASES: dict[str, Case] = {
    "capture": _capture,
    "capture_grads": _capture_grads,
    "forward_until": lambda m, x: _guarded(forward_until)(m, x, "conv3", grads=True),
    "rules_guided": _rule(GUIDED),
    "rules_deconv": _rule(DECONV),
    "lrp_relative_stabilizers": lambda m, x: _registered_method("lrp", relative_stabilizers=True)(m, x),
    # the CAM family's options: test-time augmentation, eigen smoothing, LayerCAM's fused layers
    "gradcam_aug_eigen": lambda m, x: _registered_method("gradcam", aug_smooth=True, eigen_smooth=True)(m, x),
    "scorecam_aug": lambda m, x: _registered_method("scorecam", aug_smooth=True)(m, x),
    "ablationcam_aug": lambda m, x: _registered_method("ablationcam", aug_smooth=True, batch_size=5)(m, x),
    "fullgrad_aug_eigen": lambda m, x: _registered_method("fullgrad", aug_smooth=True,
                                                          eigen_smooth=True)(m, x),
    "layercam_fused": lambda m, x: _registered_method("layercam", fuse="conv2,relu1", fusion="max")(m, x),
    "make_baseline": lambda m, x: make_baseline(m, x, "uniform").sum() and None,
    "receptive": lambda m, x: receptive_field(m, "conv3", (0, 2, 2), input_size=(12, 12)) and None,
    "field_geometry": lambda m, x: field_geometry(m, "conv3", input_size=(12, 12)) and None,
    "list_layers": lambda m, x: list_layers(m, x[:1]) and None,
    "auto_layer": lambda m, x: auto_layer(m) and None,
    # inside the network: the optimizer hooks only the layers its objective reads
    "filter_tiles": lambda m, x: filter_tiles(m, "conv2") and None,
    "feature_maps": lambda m, x: feature_maps(m, x, "conv3", sort="max", top=4) and None,
    "activation_mask": lambda m, x: activation_mask(m, x, "conv3", 1, quantile=0.9) and None,
    "channel_effect_gradient": lambda m, x: channel_effect(m, x, "conv3", 1) and None,
    "channel_effect_weights": lambda m, x: channel_effect(m, x, "relu3", 1) and None,
    "visualize_channel": lambda m, x: visualize(m, channel("conv3", 0), steps=2, size=12) and None,
    "visualize_logit_regularized": lambda m, x: visualize(
        m, logit(1), param="pixel", steps=3, size=12, l2=1.0, tv=1.0, blur_every=2, batch=2) and None,
    # synthesis: the feature network stays untouched while another network trains on its features
    "fast_style_train": lambda m, x: train_fast_style(
        x[0].sigmoid(), list(x.sigmoid()), model=m, style_layers=["relu1", "conv3"], content_layer="conv2",
        steps=2, batch_size=2, size=8, width=2, blocks=1) and None,
    "pgd": lambda m, x: pgd(m, x.sigmoid(), eps=0.1, target=1, steps=2, refine_steps=1) and None,
    "pgd_margin": lambda m, x: pgd(m, x.sigmoid(), eps=0.1, target=1, steps=2, margin=0.5) and None,
    "fgsm_l2": lambda m, x: fgsm(m, x.sigmoid(), eps=0.5, norm="l2") and None,
    "fool": lambda m, x: fool(m, 1, steps=2, size=12) and None,
    "invert": lambda m, x: invert(m, x[0].sigmoid(), ["conv2", "conv3"], steps=2, optimizer="lbfgs") and None,
    "texture": lambda m, x: synthesize_texture(m, x[0].sigmoid(), layers=["conv2", "relu3"], steps=2,
                                               size=10) and None,
    "style": lambda m, x: transfer_style(m, x[0].sigmoid(), x[1].sigmoid(), content_layer="conv3",
                                         style_layers=["conv2", "relu3"], steps=2) and None,
    # dataset analyses (bn1 is followed by an in-place ReLU: the scan's clobber check runs too)
    "dataset_scan": lambda m, x: scan(m, x, ["bn1", "conv3"], k=2, batch_size=1) and None,
    "dataset_patches": lambda m, x: crop_patches(m, "conv3", x.clamp(0, 1), [(1, 2), (0, 0)]) and None,
    "dataset_embed": lambda m, x: embed(m, x, "conv3", batch_size=1).shape and None,
}

WEIGHTS_ONLY = {"filter_tiles", "make_baseline"}
"""Cases that read parameters and never run the model."""


def _task(run: Callable[[Model, Tensor], object]) -> Case:
    """A task of ``convscope.tasks`` (they take a ``Model``: a bare network is wrapped first)."""

    def case(model: nn.Module, x: Tensor) -> None:
        if not isinstance(model, Model):
            model = Model(model, preprocess=Preprocess(input_size=(12, 12)))
        run(model, x)

    return case


def _unit_classes(model: Model, x: Tensor) -> None:
    from convscope.tasks.inside import unit_classes

    unit_classes(model, "conv3", 1, k=2, image=x[0].sigmoid())


def _layer_page_tasks(model: Model, x: Tensor) -> None:
    """What the web's layer pages call: a layer's row, all its maps, one channel's picture."""
    from convscope.tasks.inside import activations, find_layer
    from convscope.tasks.visualize import channel_visualization

    find_layer(model, "conv3")
    activations(model, x[0].sigmoid(), "conv3")
    channel_visualization(model, "conv3", 1, steps=2, size=12)


CASES |= {"task_unit_classes": _task(_unit_classes), "task_layer_pages": _task(_layer_page_tasks)}


def _explain_twice(model: Model, x: Tensor) -> None:
    """The second call reuses the first call's method object (and its logits hook)."""
    from convscope.tasks.explain import explain

    for method in ("gradcam", "gradcam", "occlusion"):
        explain(model, x, method=method, target=1, **({"window": 4} if method == "occlusion" else {}))


def _web_explain_job(model: Model, x: Tensor) -> None:
    """What the web app's worker runs for ``POST /api/explain``: map, levels, faithfulness."""
    from convscope.web.explainer import explain_job

    job = explain_job(model, x[0].sigmoid(), "gradcam", 1, "auto", {}, True, ("ref", "digest", "key"))
    job(lambda done, total: None)


CASES["web_explain_job"] = _task(_web_explain_job)


def _report(model: Model, x: Tensor) -> None:
    from convscope.tasks.report import report

    report(model, list(x.sigmoid()), ["saliency", "cam"], target=1, faithfulness_steps=2)


def _evaluate(model: Model, x: Tensor) -> None:
    from convscope.tasks.evaluate import evaluate

    evaluate(model, x.sigmoid(), "gradcam", target="top1", steps=2, boxes=[[0, 0, 6, 6]] * 2)


def _leaderboard(model: Model, x: Tensor) -> None:
    from convscope.tasks.leaderboard import leaderboard

    leaderboard(model, list(x.sigmoid()), "saliency,gradcam", "deletion_auc", target="top1", steps=2,
                batch_size=1, resamples=10)


def _layer_table(model: Model, x: Tensor) -> None:
    from convscope.tasks.layers import layer_table

    layer_table(model)


CASES |= {"task_explain": _task(_explain_twice), "task_report": _task(_report),
          "task_evaluate": _task(_evaluate), "task_layer_table": _task(_layer_table),
          "task_leaderboard": _task(_leaderboard)}


@pytest.mark.parametrize("raises", [False, True], ids=["ok", "raises"])
def test_show_app_leaves_the_model_unharmed(raises: bool, tmp_path: Any) -> None:
    """The notebook app serves the user's own model object: its pages run the model on the
    server's worker thread, and stopping the app leaves the model as it was (also after a
    forward that raised, which the page answers with a 400)."""
    import httpx

    from convscope.web.notebook import show_app

    net = make_model(False)
    model = Model(net, preprocess=Preprocess(input_size=(12, 12)), name="contract")
    next(m for m in net.modules() if isinstance(m, Trap)).armed = raises
    before = snapshot(model)
    app = show_app(model, cache_dir=tmp_path)
    try:
        answer = httpx.get(app.url + "api/model/layers", timeout=30)
        page = httpx.get(app.url, headers={"accept": "text/html"}, timeout=30)
    finally:
        app.stop()
    expected = 400 if raises else 200
    assert (answer.status_code, page.status_code) == (expected, expected), answer.text
    assert_unharmed(model, before)


class Explode(RuntimeError):
    """Raised by an armed Trap in the middle of the forward pass."""


class Trap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: Tensor) -> Tensor:
        if self.armed:
            raise Explode("trap fired")
        return x


class ContractNet(nn.Module):
    """Module, functional and in-place rectifiers, BN, dropout, max-pool and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(True)
        self.trap = Trap()
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.pool, self.drop = nn.MaxPool2d(2), nn.Dropout(0.5)
        self.conv3, self.relu3 = nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.trap(self.relu1(self.bn1(self.conv1(x))))
        h = F.relu6(self.bn2(self.conv2(h))) + h
        h = self.drop(self.pool(h))
        h.relu_()
        h = self.relu3(self.conv3(h))
        return self.fc(h.mean((2, 3)))  # GAP + linear: CAM applies


def make_model(wrapped: bool) -> nn.Module:
    torch.manual_seed(0)
    net = ContractNet().train()
    net.conv1.weight.requires_grad_(False)
    net.bn2.bias.requires_grad_(False)
    net.conv3.register_forward_hook(lambda m, i, o: None)  # the user's own hook must survive
    return Model(net, preprocess=Preprocess(input_size=(12, 12))) if wrapped else net


def _lab_tasks(model: Model, x: Tensor) -> None:
    """What the web lab's jobs run: the adversarial task with its saved-PNG verdict, fooling,
    inversion and texture (fast style's training is the method case fast_style_train)."""
    from convscope.tasks.adversarial import adversarial, fooling
    from convscope.tasks.synthesis import inversion, texture

    adversarial(model, x[0].sigmoid(), eps=0.1, target=1, steps=2)
    fooling(model, 1, steps=2, size=12)
    inversion(model, x[0].sigmoid(), ["conv3"], steps=2, optimizer="adam")
    texture(model, x[0].sigmoid(), layers=["conv2"], source_size=12, size=10, steps=2)


CASES["web_lab_tasks"] = _task(_lab_tasks)


@pytest.fixture
def x() -> Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
@pytest.mark.parametrize("name", list(CASES))
def test_case_leaves_the_model_unharmed(name: str, wrapped: bool, x: Tensor) -> None:
    model = make_model(wrapped)
    before = snapshot(model)
    CASES[name](model, x)
    assert_unharmed(model, before)


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
@pytest.mark.parametrize("name", list(CASES))
def test_case_leaves_the_model_unharmed_when_the_forward_raises(name: str, wrapped: bool,
                                                                x: Tensor) -> None:
    model = make_model(wrapped)
    trap = next(m for m in model.modules() if isinstance(m, Trap))
    trap.armed = True
    before = snapshot(model)
    if name in WEIGHTS_ONLY:  # no forward pass to interrupt: it must simply succeed
        CASES[name](model, x)
    else:  # the model's own exception, or a convscope error caused by it (MethodFailed)
        with pytest.raises((Explode, ConvscopeError)) as failure:
            CASES[name](model, x)
        assert isinstance(failure.value, Explode) or isinstance(failure.value.__cause__, Explode)
    assert_unharmed(model, before)


def test_forward_until_alone_on_a_train_mode_model(x: Tensor) -> None:
    model = make_model(False)
    before = snapshot(model)
    forward_until(model, x, "conv3")
    assert_unharmed(model, before)


def test_the_contract_catches_harm(x: Tensor) -> None:
    """The checks are not vacuous: a plain train-mode forward already changes BN statistics."""
    model = make_model(False)
    before = snapshot(model)
    model(x)
    with pytest.raises(AssertionError):
        assert_unharmed(model, before)


# Every registered method joins the contract through the registry: no method can be forgotten.
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "occlusion": {"window": 4, "stride": 4},
    "rise": {"masks": 8},
    "drise": {"masks": 8},
    "lime": {"samples": 8, "segments": 4},
    "kernel_shap": {"samples": 8, "segments": 4},
    "gradient_shap": {"samples": 3, "draws": 2},
    "deeplift_shap": {"draws": 2},
}


def _registered_method(name: str, **options: Any) -> Case:
    def run(model: nn.Module, x: Tensor) -> None:
        from convscope.methods.registry import build_method, get_method

        wrapped = model if isinstance(model, Model) else Model(model, preprocess=Preprocess((12, 12)))
        layer = "auto" if get_method(name).needs_layer else None
        method = build_method(name, wrapped, layer, **{**FAST_OPTIONS.get(name, {}), **options})
        if name in DETECTION_METHODS:  # the classifier's output read as one whole-image detection
            method(x, Detection((0, 0, x.shape[-1], x.shape[-2]), 1), model_output=as_detections)
        else:
            method(x, 1)

    return run


def _method_names() -> list[str]:
    from convscope.methods.registry import method_names

    return method_names()


@pytest.mark.parametrize("raises", [False, True], ids=["ok", "raises"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
@pytest.mark.parametrize("name", _method_names())
def test_registered_method_leaves_the_model_unharmed(name: str, wrapped: bool, raises: bool,
                                                     x: Tensor) -> None:
    model = make_model(wrapped)
    before = snapshot(model)
    if raises:  # the method says so in one line, with the model's own exception chained
        next(m for m in model.modules() if isinstance(m, Trap)).armed = True
        # MethodFailed, or BadLayer when "auto"'s trial forward pass is what raised
        with pytest.raises(ConvscopeError) as failure:
            _registered_method(name)(model, x)
        assert isinstance(failure.value.__cause__, Explode)
        next(m for m in model.modules() if isinstance(m, Trap)).armed = False
    else:
        _registered_method(name)(model, x)
    assert_unharmed(model, before)


@pytest.mark.parametrize("raises", [False, True], ids=["ok", "raises"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
def test_lrp_merging_parallel_branches_leaves_the_model_unharmed(wrapped: bool, raises: bool,
                                                                 x: Tensor) -> None:
    """LRP merges re-parameterizable branches (RepVGG's ``reparameterize()``) in its own copy for
    the call: the user's blocks keep their branches, statistics, flags and hooks."""
    torch.manual_seed(0)
    trap = Trap()
    net = nn.Sequential(trap, RepNet()).train()
    net[1].stem.weight.requires_grad_(False)
    net[1].blocks[1].register_forward_hook(lambda m, i, o: None)
    model = Model(net, preprocess=Preprocess(input_size=(12, 12))) if wrapped else net
    before = snapshot(model)
    if raises:
        trap.armed = True
        with pytest.raises(ConvscopeError) as failure:
            _registered_method("lrp")(model, x)
        assert isinstance(failure.value.__cause__, Explode)
    else:
        _registered_method("lrp")(model, x)
    assert_unharmed(model, before)


# Inputs beyond one image batch (issue 13): two inputs, a keyword argument and a dict output, with
# batch norm in train mode, a frozen parameter and a user hook; methods run on the packed inputs.
STRUCTURED_METHODS = ["saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift",
                      "lrp", "occlusion", "lime", "guided_backprop", "deconvnet", "gradient_shap",
                      "deeplift_shap", "kernel_shap"]


class StructuredNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table, self.bn = nn.Linear(4, 6), nn.BatchNorm1d(6)
        self.signal, self.trap, self.fc = nn.Conv1d(2, 6, 3, padding=1), Trap(), nn.Linear(6, 3)

    def forward(self, table: Tensor, signal: Tensor, *, scale: float) -> dict[str, Tensor]:
        h = F.relu(self.bn(self.table(table))) + self.trap(F.relu(self.signal(signal)).mean(2))
        return {"logits": self.fc(h) * scale, "features": h}


def make_structured_model() -> Model:
    torch.manual_seed(0)
    net = StructuredNet().train()
    net.table.weight.requires_grad_(False)
    net.fc.register_forward_hook(lambda m, i, o: None)
    return Model(net, preprocess=Preprocess(input_size=(8, 8)))


@pytest.mark.parametrize("raw", [False, True], ids=["model_output", "callable_target"])
@pytest.mark.parametrize("raises", [False, True], ids=["ok", "raises"])
@pytest.mark.parametrize("name", STRUCTURED_METHODS)
def test_structured_inputs_leave_the_model_unharmed(name: str, raises: bool, raw: bool) -> None:
    from convscope.errors import BadModel
    from convscope.methods.registry import build_method

    model = make_structured_model()
    gen = torch.Generator().manual_seed(0)
    inputs = (torch.randn(3, 4, generator=gen), torch.randn(3, 2, 8, generator=gen))
    method = build_method(name, model, None, **FAST_OPTIONS.get(name, {}))
    before = snapshot(model)
    call: dict[str, Any] = {"forward_kwargs": {"scale": 2.0}}
    if raw:  # the target reads the raw dict (probabilities need logits: LIME scores logits)
        target: Any = lambda out: out["logits"][:, 1]  # noqa: E731
        if name in ("lime", "kernel_shap"):
            method.score = "logit"
    else:
        target, call["model_output"] = 1, "logits"
    if raises:
        model.net.trap.armed = True
        with pytest.raises(BadModel, match="'custom' failed") as err:
            method(inputs, target, **call)
        assert isinstance(err.value.__cause__, Explode)
        model.net.trap.armed = False
    else:
        out = method(inputs, target, **call)
        assert [o.shape[0] for o in out] == [3, 3]
    assert_unharmed(model, before)


# Web jobs cancelled mid-forward (issue 15, item 6): a method or task runs as a job of the web
# app's JobManager on the contract network, whose forward is held at a gate until the test has
# cancelled the job; the cancel then lands inside the forward (the job's TorchFunctionMode raises
# at the next torch call, or its module pre-hook at the next module call), and the model must come
# out as from any failure.
GATE_TIMEOUT_S = 60.0


class Gate(nn.Module):
    """Takes the trap's place and holds the forward pass there until released. The events live on
    the class, so the copies the fast path makes of the model (deepcopy) hold at the same gate."""

    entered = threading.Event()
    release = threading.Event()

    def forward(self, x: Tensor) -> Tensor:
        if not Gate.release.is_set():
            Gate.entered.set()
            Gate.release.wait(GATE_TIMEOUT_S)
        return x


JobCase = Callable[[Model, Tensor, ProgressFn], object]


def _visualization_job(model: Model, x: Tensor, progress: ProgressFn) -> object:
    from convscope.tasks.visualize import visualization

    return visualization(model, channel("conv3", 0), steps=3, size=12, progress=progress)


def _inversion_job(model: Model, x: Tensor, progress: ProgressFn) -> object:
    from convscope.tasks.synthesis import inversion

    return inversion(model, x[0].sigmoid(), ["conv2", "conv3"], steps=3, size=12, progress=progress)


def _method_job(name: str) -> JobCase:
    return lambda model, x, progress: _registered_method(name)(model, x)


JOB_CASES: dict[str, JobCase] = {
    **{f"method_{name}": _method_job(name) for name in _method_names()},
    "task_visualization": _visualization_job,
    "task_inversion": _inversion_job,
}


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[JobManager]:
    manager = JobManager(DiskCache(tmp_path / "cache"))
    yield manager
    manager.close()


def _job(case: JobCase, model: Model, x: Tensor) -> Callable[[ProgressFn], JobResult]:
    def fn(progress: ProgressFn) -> JobResult:
        case(model, x, progress)
        return JobResult({"ran": True})

    return fn


@pytest.mark.parametrize("per_module", [False, True], ids=["per-torch-call", "per-module"])
@pytest.mark.parametrize("name", list(JOB_CASES))
def test_job_cancelled_mid_forward_leaves_the_model_unharmed(name: str, per_module: bool, x: Tensor,
                                                             jobs: JobManager) -> None:
    model = make_model(True)
    assert isinstance(model, Model)
    model.net.trap = Gate()
    Gate.entered.clear()
    Gate.release.clear()
    modes = jobs.run(torch._C._len_torch_function_stack)  # the worker's own, inside a job
    before = snapshot(model)
    job = jobs.submit("contract", name, _job(JOB_CASES[name], model, x), per_module=per_module)
    try:
        assert Gate.entered.wait(GATE_TIMEOUT_S), "the job never reached the model's forward"
        assert job.status == "running"
        jobs.cancel(job.id)
    finally:
        Gate.release.set()
    assert job.wait(GATE_TIMEOUT_S), "the cancelled job did not stop"
    assert (job.status, job.error) == ("cancelled", None)
    assert_unharmed(model, before)
    assert jobs.run(torch._C._len_torch_function_stack) == modes, "a torch mode stayed on the worker"
    # the worker takes the next job, on the same model, and finishes it
    after = jobs.submit("contract", name, _job(JOB_CASES[name], model, x), per_module=per_module)
    assert after.wait(GATE_TIMEOUT_S)
    assert (after.status, after.error, after.result.data) == ("done", None, {"ran": True})
    assert_unharmed(model, before)


# Clips (issue 20): a 3-D CNN with batch norm in train mode, an in-place ReLU, a frozen parameter and
# a user hook; every method that takes (B, C, T, H, W) clips runs on them.
class ClipNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.trap, self.pool, self.drop = Trap(), nn.MaxPool3d((1, 2, 2)), nn.Dropout(0.5)
        self.conv2, self.relu2 = nn.Conv3d(4, 6, 3, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool3d(1), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(self.pool(self.trap(F.relu(self.bn1(self.conv1(x)), inplace=True))))
        return self.fc(self.gap(self.relu2(self.conv2(h))).flatten(1))


def _clip_method_names() -> list[str]:
    from convscope.methods.attribution.base import clip_methods

    return clip_methods()


@pytest.mark.parametrize("raises", [False, True], ids=["ok", "raises"])
@pytest.mark.parametrize("name", _clip_method_names())
def test_clip_methods_leave_the_model_unharmed(name: str, raises: bool) -> None:
    from convscope.methods.registry import build_method, get_method

    torch.manual_seed(0)
    net = ClipNet().train()
    net.conv1.weight.requires_grad_(False)
    net.conv2.register_forward_hook(lambda m, i, o: None)
    model = Model(net, preprocess=Preprocess(input_size=(8, 8), frames=4))
    clips = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    method = build_method(name, model, "auto" if get_method(name).needs_layer else None,
                          **FAST_OPTIONS.get(name, {}))
    before = snapshot(model)
    if raises:
        net.trap.armed = True
        with pytest.raises(ConvscopeError) as failure:
            method(clips, 1)
        assert isinstance(failure.value.__cause__, Explode)
    else:
        maps = method(clips, 1)
        assert maps.ndim == 5 and maps.shape[0] == 2 and bool(torch.isfinite(maps).all())
    assert_unharmed(model, before)
