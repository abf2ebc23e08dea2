"""Attribution beyond one RGB image batch: tables, signals, several inputs, extra forward
arguments, dict outputs and 4-channel images (issue 13, items 2 and 5).

Every check is a property the numbers must satisfy whatever the implementation: integrated
gradients' completeness, DeepLIFT's summation-to-delta and LRP's conservation on rectifier
networks, saliency against central finite differences, and feature ablation / LIME against the
exact contributions of a linear model. Image-only methods must refuse these inputs in one line.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import BadArgument, BadImage, BadModel, BadTarget, ConvscopeError
from convscope.methods.attribution import (
    LRP,
    DeepLift,
    GradientXInput,
    IntegratedGradients,
    Lime,
    Occlusion,
    Saliency,
    SmoothGrad,
)
from convscope.methods.registry import REGISTRY, build_method, method_names
from convscope.model import Model, Preprocess
from convscope.types import Detection
from tests.as_detections import DETECTION_METHODS, as_detections

STRUCTURED = ["saliency", "gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift", "lrp",
              "occlusion", "lime", "guided_backprop", "deconvnet", "gradient_shap", "deeplift_shap",
              "kernel_shap"]
"""Methods that take any input structure; every other registered method needs image batches."""
FAST = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 3},
        "lime": {"samples": 40}, "rise": {"masks": 8}, "occlusion": {}, "kernel_shap": {"samples": 40},
        "gradient_shap": {"samples": 4, "draws": 2}, "deeplift_shap": {"draws": 2}}


class TableNet(nn.Module):
    def __init__(self, features: int = 5, classes: int = 3, bias: bool = True, act=F.relu) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(features, 8, bias=bias), nn.Linear(8, classes, bias=bias)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SignalNet(nn.Module):
    """A 1-D conv net on (B, C, L) signals: conv, ReLU, average pool, conv, global mean, linear."""

    def __init__(self, act=F.relu) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(2, 4, 3, padding=1), nn.Conv1d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool1d(self.act(self.conv1(x)), 2)
        return self.fc(self.act(self.conv2(h)).mean(2))


class TwoInputNet(nn.Module):
    """A table and a signal, and a keyword argument the forward needs."""

    def __init__(self) -> None:
        super().__init__()
        self.table, self.signal = nn.Linear(4, 6), nn.Conv1d(2, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, table: Tensor, signal: Tensor, *, scale: float) -> Tensor:
        h = F.relu(self.table(table)) + F.relu(self.signal(signal)).mean(2)
        return self.fc(h) * scale


class DictNet(nn.Module):
    """Returns a dict, as many detection and multi-task models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TableNet()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.body(x)
        return {"logits": logits, "aux": logits.sum(1)}


class FourChannelNet(nn.Module):
    """An RGB + depth image model: 4 input channels, GAP + linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.relu2, self.fc = nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu2(self.conv2(F.relu(self.conv1(x)))).mean((2, 3)))


def _model(net: nn.Module, size: tuple[int, int] = (12, 12)) -> Model:
    torch.manual_seed(0)
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return Model(net.double().eval(), preprocess=Preprocess(input_size=size))


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture
def table() -> tuple[Model, Tensor]:
    return _model(TableNet()), _randn(3, 5)


@pytest.fixture
def signal() -> tuple[Model, Tensor]:
    return _model(SignalNet()), _randn(2, 2, 16)


@pytest.fixture
def two() -> tuple[Model, tuple[Tensor, Tensor]]:
    return _model(TwoInputNet()), (_randn(3, 4), _randn(3, 2, 8, seed=1))


def _central_differences(fn, x: Tensor, h: float = 1e-6) -> Tensor:
    grad = torch.zeros_like(x)
    flat = grad.view(-1)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        flat[i] = ((fn(x + e.view_as(x)) - fn(x - e.view_as(x))) / (2 * h)).sum()
    return grad


def _score(model: Model, cls: int, **kwargs):
    return lambda x: model.net(x, **kwargs)[:, cls]


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("case", ["table", "signal"])
def test_every_structured_method_returns_one_map_per_element(name: str, case: str,
                                                             request: pytest.FixtureRequest) -> None:
    model, x = request.getfixturevalue(case)
    out = build_method(name, model, None, **FAST.get(name, {}))(x, 1)
    reduced = name == "saliency" or (name == "smoothgrad")  # channels reduced like an image's
    want = (x.shape[0], 1, *x.shape[2:]) if reduced and x.ndim == 3 else x.shape
    assert isinstance(out, Tensor) and out.shape == want and torch.isfinite(out).all()
    assert out.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - set(STRUCTURED)) if REGISTRY else [])
def test_image_only_methods_refuse_tables_in_one_line(name: str, table: tuple[Model, Tensor]) -> None:
    model, x = table
    with pytest.raises(ConvscopeError) as err:
        build_method(name, model, "fc1" if REGISTRY[name].needs_layer else None, **FAST.get(name, {}))(x, 1)
    message = str(err.value)
    assert name in message and "\n" not in message
    assert isinstance(err.value, (BadImage, BadArgument))


def test_registry_is_loaded_for_the_refusal_cases() -> None:
    assert set(STRUCTURED) < set(method_names())


def test_saliency_is_the_gradient_magnitude_by_finite_differences(table, signal) -> None:
    for model, x in (table, signal):
        grad = _central_differences(_score(model, 2), x)
        assert torch.allclose(GradientXInput(model)(x, 2), grad * x, atol=1e-7)
        sal = Saliency(model)(x, 2)
        want = grad.abs() if x.ndim == 2 else grad.abs().amax(1, keepdim=True)
        assert torch.allclose(sal, want, atol=1e-7)


def _complete(ig: IntegratedGradients, x, attr, target, tol: float = 1e-6, **options) -> bool:
    """|sum(IG) - (F(x) - F(x'))| small against the score changes of the batch."""
    change = ig.score_change(x, target, **options)
    gap = ig.completeness_gap(x, attr, target, **options)
    return bool(change.abs().max() > 1e-2 and gap.abs().max() < tol * change.abs().max())


@pytest.mark.parametrize("net, shape", [(TableNet(act=torch.tanh), (3, 5)),
                                        (SignalNet(act=F.softplus), (2, 2, 16))], ids=["table", "signal"])
def test_integrated_gradients_is_complete(net: nn.Module, shape: tuple[int, ...]) -> None:
    """Smooth networks, so that Gauss-Legendre quadrature converges to the exact integral."""
    model, x = _model(net), _randn(*shape)
    ig = IntegratedGradients(model, steps=64, rule="gausslegendre")
    assert _complete(ig, x, ig(x, 0), 0)


@pytest.mark.parametrize("case", ["table", "signal"])
def test_deeplift_sums_to_delta_on_rectifier_nets(case: str, request: pytest.FixtureRequest) -> None:
    model, x = request.getfixturevalue(case)
    dl = DeepLift(model)  # "black" is model-input 0 for inputs that are not images
    attr = dl(x, 1)
    change = dl.score_change(x, 1)
    assert (dl.completeness_gap(x, attr, 1).abs() / change.abs()).max() < 1e-4
    ref = _randn(*x.shape[1:], seed=5)
    dl_ref = DeepLift(model, reference=ref)
    assert (dl_ref.completeness_gap(x, dl_ref(x, 1), 1).abs()).max() < 1e-8


def test_lrp_epsilon_conserves_the_logit_on_a_bias_free_table_net() -> None:
    model, x = _model(TableNet(bias=False)), _randn(3, 5)
    relevance = LRP(model, composite="epsilon")(x, 0)
    assert torch.allclose(relevance.sum(1), model.net(x)[:, 0], rtol=1e-4)


def test_feature_ablation_and_lime_recover_a_linear_model() -> None:
    """On f(x) = W x + b, hiding feature i (baseline 0) drops the score by exactly W_ci x_i, and
    LIME's regression of the logit on group presence is exactly linear, so it finds it too."""
    model, x = _model(nn.Linear(5, 3)), _randn(2, 5)
    exact = model.net.weight[1] * x
    assert torch.allclose(Occlusion(model)(x, 1), exact, atol=1e-10)
    lime = Lime(model, samples=400, score="logit", alpha=1e-6)(x, 1)
    assert torch.allclose(lime, exact, atol=1e-4)
    groups = torch.tensor([0, 0, 1, 1, 2])
    grouped = Occlusion(model, groups=groups)(x, 1)
    assert torch.allclose(grouped[:, 0], exact[:, :2].sum(1), atol=1e-10)
    assert torch.equal(grouped[:, 0], grouped[:, 1])


def test_signal_occlusion_hides_windows_along_the_signal(signal) -> None:
    model, x = signal
    out = Occlusion(model, window=4)(x, 0)
    assert out.shape == x.shape
    blocks = out.view(2, 2, 4, 4)  # (B, C, L / 4 windows, 4): one value per window, all channels
    assert torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks))


def test_two_inputs_and_a_keyword_argument(two) -> None:
    model, (a, b) = two
    kwargs = {"forward_kwargs": {"scale": 2.0}}
    ig = IntegratedGradients(model, steps=256, rule="riemann_middle")
    attr = ig((a, b), 2, **kwargs)
    assert isinstance(attr, tuple) and attr[0].shape == a.shape and attr[1].shape == b.shape
    assert _complete(ig, (a, b), attr, 2, tol=1e-2, **kwargs)  # ReLU kinks: midpoint rule, O(1/steps)
    grads = torch.autograd.grad(model.net(a.requires_grad_(), b.requires_grad_(), scale=2.0)[:, 2].sum(),
                                (a, b))
    a, b = a.detach(), b.detach()
    fd = _central_differences(lambda t: model.net(t, b, scale=2.0)[:, 2], a)
    assert torch.allclose(grads[0], fd, atol=1e-6)
    sal = Saliency(model)((a, b), 2, **kwargs)
    assert torch.allclose(sal[0], grads[0].abs())
    assert torch.allclose(sal[1], grads[1].abs().amax(1, keepdim=True))
    dl = DeepLift(model)
    contributions = dl((a, b), 2, **kwargs)
    assert (dl.completeness_gap((a, b), contributions, 2, **kwargs).abs()
            / dl.score_change((a, b), 2, **kwargs).abs()).max() < 1e-4
    # extra positional arguments pass through the same way
    positional = GradientXInput(model)((a,), 2, additional_forward_args=(b,), forward_kwargs={"scale": 2.0})
    assert isinstance(positional, tuple) and torch.allclose(positional[0], grads[0] * a)
    for name in STRUCTURED:
        out = build_method(name, model, None, **FAST.get(name, {}))((a, b), 2, **kwargs)
        assert len(out) == 2 and all(torch.isfinite(o).all() for o in out), name


def test_a_missing_keyword_argument_is_one_clear_line(two) -> None:
    model, inputs = two
    with pytest.raises(BadModel, match=r"TypeError.*forward_kwargs") as err:
        Saliency(model)(inputs, 0)
    assert "\n" not in str(err.value)


def test_dict_outputs_through_model_output_or_a_callable_target() -> None:
    model, x = _model(DictNet()), _randn(3, 5)
    logits = model.net(x)["logits"]
    grad = torch.autograd.grad(model.net(x.requires_grad_())["logits"][:, 1].sum(), x)[0]
    x = x.detach()
    by_key = GradientXInput(model)(x, 1, model_output="logits")
    by_callable = GradientXInput(model)(x, lambda out: out["logits"][:, 1])
    by_picker = GradientXInput(model)(x, 1, model_output=lambda out: out["logits"])
    for out in (by_key, by_callable, by_picker):
        assert torch.allclose(out, grad * x)
    ig = IntegratedGradients(model, steps=256, rule="riemann_middle")
    attr = ig(x, "top1", model_output="logits")
    at_zero = model.net(torch.zeros(1, 5, dtype=torch.float64))["logits"][0]
    change = logits.max(1).values - at_zero[logits.argmax(1)]
    assert torch.allclose(ig.score_change(x, "top1", model_output="logits"), change)
    assert _complete(ig, x, attr, "top1", tol=1e-2, model_output="logits")
    for name in STRUCTURED:
        out = build_method(name, model, None, **FAST.get(name, {}))(x, 1, model_output="logits")
        assert torch.isfinite(out).all(), name
    with pytest.raises(BadTarget, match=r"dict with keys 'logits', 'aux'.*model_output"):
        Saliency(model)(x, 1)
    with pytest.raises(BadArgument, match=r"model_output='scores'.*'logits', 'aux'"):
        Saliency(model)(x, 1, model_output="scores")
    with pytest.raises(BadArgument, match="probability"):  # probabilities need logits
        Lime(model, samples=8)(x, lambda out: out["aux"])


def test_four_channel_images_get_every_method() -> None:
    model, x = _model(FourChannelNet()), _randn(2, 4, 12, 12)
    for name in method_names():
        info = REGISTRY[name]
        options = dict(FAST.get(name, {}))
        if name in ("lime", "kernel_shap"):
            options["segments"] = 4
        if name == "occlusion":
            options.update(window=4, stride=4)
        # "auto" runs the model on a (1, 3, H, W) example: a 4-channel model names its layer
        method = build_method(name, model, "relu2" if info.needs_layer else None, **options)
        out = (method(x, Detection((0, 0, 12, 12), 1), model_output=as_detections)
               if name in DETECTION_METHODS else method(x, 1))
        assert out.shape[0] == 2 and torch.isfinite(out).all(), name
    ig = IntegratedGradients(model, steps=256, rule="riemann_middle")
    attr = ig(x, 1)
    assert attr.shape == x.shape
    assert _complete(ig, x, attr, 1, tol=1e-2)
    dl = DeepLift(model)
    assert (dl.completeness_gap(x, dl(x, 1), 1).abs() / dl.score_change(x, 1).abs()).max() < 1e-4
    with pytest.raises(BadImage, match="gradcam explains one"):  # a tuple is several inputs
        build_method("gradcam", model, "relu2")((x,), 1)
    assert Saliency(model)((x,), 1)[0].shape == (2, 1, 12, 12)


def test_smoothgrad_noise_follows_each_input_range(two) -> None:
    model, (a, b) = two
    sg = SmoothGrad(model, base="gradient_x_input", noise=0.0, samples=2)
    out = sg((a, b * 100), 0, forward_kwargs={"scale": 1.0})
    exact = GradientXInput(model)((a, b * 100), 0, forward_kwargs={"scale": 1.0})
    assert all(torch.allclose(o, e) for o, e in zip(out, exact))


@pytest.mark.parametrize("bad, match", [
    (torch.randn(5), "no batch dimension"),
    (torch.ones(3, 5, dtype=torch.long), "float inputs"),
    ((torch.randn(3, 4), torch.randn(2, 2, 8)), "batch sizes 3, 2"),
    (torch.full((3, 5), float("nan")), "NaN"),
    ("table.csv", "inputs of type str"),
])
def test_bad_inputs_are_one_line(bad: object, match: str, table) -> None:
    model, _ = table
    with pytest.raises(BadImage, match=match) as err:
        Saliency(model)(bad, 0)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_image_only_baselines_refuse_tables(table) -> None:
    model, x = table
    with pytest.raises(BadArgument, match=r"^baseline='blur' needs inputs with a spatial axis"):
        IntegratedGradients(model, baseline="blurred", steps=4)(x, 0)


def test_explain_takes_tables_and_several_inputs(table, two) -> None:
    from convscope import explain

    model, x = table
    result = explain(model, x, "integrated_gradients", target=1, steps=8)
    assert isinstance(result.values, Tensor) and result.values.shape == x.shape and result.images is None
    assert result.summary()["shape"] == [3, 5] and len(result) == 3
    with pytest.raises(BadArgument, match="not images"):
        result.overlay(0)
    model, inputs = two
    both = explain(model, inputs, "saliency", target=0, forward_kwargs={"scale": 1.0})
    assert [tuple(v.shape) for v in both.values] == [(3, 4), (3, 1, 8)]
    assert torch.allclose(both.scores, model.net(*inputs, scale=1.0)[:, 0])
    dict_model = _model(DictNet())
    picked = explain(dict_model, x, "gradient_x_input", model_output="logits")
    assert torch.equal(picked.targets, dict_model.net(x)["logits"].argmax(1))


def test_explain_still_reads_an_image_tensor_as_an_image() -> None:
    from convscope import explain

    model = Model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                nn.Linear(4, 2)), preprocess=Preprocess(input_size=(12, 12)))
    image = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))  # as load_image gives
    result = explain(model, image, "saliency", target=1)
    assert result.values.shape == (1, 1, 12, 12) and result.images.shape == (1, 3, 12, 12)


def test_explain_refuses_an_image_method_on_a_table_before_running_the_model() -> None:
    from convscope import explain

    with pytest.raises(BadImage, match=r"gradcam explains one .B, C, H, W. image batch"):
        explain(_model(FourChannelNet()), _randn(2, 5), "gradcam", layer="relu2")
    with pytest.raises(BadModel, match=r"failed on inputs of shapes .2, 5."):
        explain(_model(FourChannelNet()), _randn(2, 5), "saliency")
