"""The CAM family beyond Grad-CAM: HiResCAM, XGradCAM, LayerCAM, EigenCAM, EigenGradCAM,
AblationCAM, FullGrad, and the family's aug_smooth / eigen_smooth options.

Each is checked against what its paper says it computes, by hand from captured activations and
gradients, by an SVD of our own, by ablations run through hooks of the test's own, or by an
identity that holds on the network (HiResCAM sums to the score on GAP + linear; FullGrad's
decomposition sums to the score on a piecewise-linear network). pytorch-grad-cam itself is the
reference in tests/zoo/test_cam_family.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import BadArgument
from convscope.methods.attribution import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from convscope.methods.attribution.cam_core import AUGMENTATIONS, scale01
from convscope.methods.option_specs import option_specs
from convscope.methods.registry import build_method, get_method, method_names
from convscope.model import Model, Preprocess, capture

NEW = ["hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam", "ablationcam", "fullgrad"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(batch: int = 3, size: int = 16, seed: int = 1) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _signal(model: Model, x: Tensor, layer: str, target: int) -> tuple[Tensor, Tensor, Tensor]:
    """Activation, gradient of the target's logit, logits: read by hand."""
    with torch.enable_grad(), capture(model, layer, grads=True) as record:
        logits = model(x)
    acts = record[layer]
    (grads,) = torch.autograd.grad(logits[:, target].sum(), acts)
    return acts.detach(), grads, logits.detach()


def _svd_projection(weighted: Tensor) -> Tensor:
    """First-principal-component projection, one image at a time, oriented like the channel sum."""
    out = []
    for w in weighted:
        m = w.flatten(1).T
        m = m - m.mean(0)
        _, _, vh = torch.linalg.svd(m.double(), full_matrices=True)
        p = m.double() @ vh[0]
        assert abs(float(vh[0].sum())) > 1e-3 * float(vh[0].abs().sum())  # the sum orients it
        out.append((p if (p @ m.double().sum(1)) >= 0 else -p).view(w.shape[1:]))
    return torch.stack(out)[:, None].float()


def test_registered_in_the_cam_family_with_both_smoothing_options() -> None:
    assert set(NEW) <= set(method_names())
    for name in [*NEW, "cam", "gradcam", "gradcam_pp", "scorecam"]:
        info = get_method(name)
        specs = {s.name: s for s in option_specs(info)}
        assert info.family == "cam"
        assert specs["aug_smooth"].kind == specs["eigen_smooth"].kind == "bool", name
        assert specs["aug_smooth"].default is False and specs["eigen_smooth"].default is False
    specs = {s.name: s for s in option_specs("layercam")}
    assert specs["fuse"].kind == "text" and specs["fuse"].nullable
    assert specs["fusion"].choices == ("mean", "max")
    assert not get_method("fullgrad").needs_layer


def test_hirescam_is_gradient_times_activation_and_sums_to_the_score(tiny: Model) -> None:
    x = _inputs()
    acts, grads, logits = _signal(tiny, x, "relu2", 2)
    signed = HiResCAM(tiny, layer="relu2", relu=False)(x, 2)
    torch.testing.assert_close(signed, (grads * acts).sum(1, keepdim=True))
    # GAP + linear: d y / d A_kij = w_k / Z, so the map sums to y - b exactly (its faithfulness)
    torch.testing.assert_close(signed.flatten(1).sum(1), logits[:, 2] - tiny.net.fc.bias[2].detach(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(HiResCAM(tiny, layer="relu2")(x, 2), signed.relu())


def test_xgradcam_weights_by_hand_and_equal_gradcam_on_gap_linear(tiny: Model) -> None:
    x = _inputs()
    acts, grads, _ = _signal(tiny, x, "relu1", 1)
    weights = (grads * acts).sum((2, 3), keepdim=True) / (acts.sum((2, 3), keepdim=True) + 1e-7)
    torch.testing.assert_close(XGradCAM(tiny, layer="relu1", relu=False)(x, 1),
                               (weights * acts).sum(1, keepdim=True))
    # at the pooled layer the gradient is constant per channel: XGradCAM's weighted mean of it
    # is Grad-CAM's plain mean
    torch.testing.assert_close(XGradCAM(tiny, layer="relu2")(x, 1), GradCAM(tiny, layer="relu2")(x, 1),
                               atol=1e-5, rtol=1e-4)


def test_layercam_keeps_positive_gradients_per_position(tiny: Model) -> None:
    x = _inputs()
    acts, grads, _ = _signal(tiny, x, "relu1", 3)
    assert (grads < 0).any() and (grads > 0).any()
    want = (grads.relu() * acts).sum(1, keepdim=True).relu()
    torch.testing.assert_close(LayerCAM(tiny, layer="relu1")(x, 3), want)
    # where every gradient is positive, LayerCAM is HiResCAM
    with torch.no_grad():
        tiny.net.fc.weight.abs_()
    assert (_signal(tiny, x, "relu2", 0)[1] >= 0).all()
    torch.testing.assert_close(LayerCAM(tiny, layer="relu2")(x, 0), HiResCAM(tiny, layer="relu2")(x, 0))


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_layercam_fuses_layers_in_one_pass(tiny: Model, fusion: str) -> None:
    x = _inputs()
    deep, shallow = LayerCAM(tiny, layer="relu2")(x, 1), LayerCAM(tiny, layer="relu1")(x, 1)
    fused_method = LayerCAM(tiny, layer="relu2", fuse="relu1", fusion=fusion)  # type: ignore[arg-type]
    assert fused_method.layers == ["relu2", "relu1"] and "fused with relu1" in str(fused_method.layer_reason)
    fused = fused_method(x, 1)
    assert fused.shape == shallow.shape == (3, 1, 16, 16)
    def up(m: Tensor) -> Tensor:
        return F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False)

    def tanh(m: Tensor) -> Tensor:  # the paper's Eq. 9, gamma = 2
        return torch.tanh(2 * m / m.flatten(1).amax(1)[:, None, None, None])

    if fusion == "mean":
        want = scale01((up(scale01(deep)) + scale01(shallow)) / 2)
    else:
        want = torch.maximum(up(tanh(deep)), tanh(shallow))
    torch.testing.assert_close(fused, want, atol=1e-6, rtol=1e-5)
    assert torch.equal(LayerCAM(tiny, layer="relu2", fuse=["relu1", "relu2"])(x, 1),
                       LayerCAM(tiny, layer="relu2", fuse="relu1")(x, 1))


def test_eigencam_is_the_first_principal_component(tiny: Model) -> None:
    x = _inputs()
    acts, grads, _ = _signal(tiny, x, "relu1", 2)
    torch.testing.assert_close(EigenCAM(tiny, layer="relu1", relu=False)(x, 2), _svd_projection(acts),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(EigenGradCAM(tiny, layer="relu1", relu=False)(x, 2),
                               _svd_projection(grads * acts), atol=1e-5, rtol=1e-4)
    # no class in EigenCAM: every target gives the same map
    assert torch.equal(EigenCAM(tiny, layer="relu1")(x, 0), EigenCAM(tiny, layer="relu1")(x, 3))


def test_eigen_smooth_projects_each_methods_weighted_activations(tiny: Model) -> None:
    x = _inputs()
    acts, grads, _ = _signal(tiny, x, "relu1", 1)
    gradcam = grads.mean((2, 3), keepdim=True) * acts
    torch.testing.assert_close(GradCAM(tiny, layer="relu1", eigen_smooth=True)(x, 1),
                               _svd_projection(gradcam).relu(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(HiResCAM(tiny, layer="relu1", eigen_smooth=True)(x, 1),
                               EigenGradCAM(tiny, layer="relu1")(x, 1))


@pytest.mark.parametrize("name", ["gradcam", "layercam", "scorecam", "fullgrad"])
def test_aug_smooth_averages_six_scaled_maps_of_mirrored_and_scaled_copies(tiny: Model, name: str) -> None:
    x = _inputs(batch=2)
    layer = "relu2" if get_method(name).needs_layer else None
    smoothed = build_method(name, tiny, layer, aug_smooth=True)(x, "top1")
    plain = build_method(name, tiny, layer)
    top = tiny(x).argmax(1)  # the class of the unaugmented input, for every copy
    maps = []
    for mirrored, factor in AUGMENTATIONS:
        copy = (x.flip(-1) if mirrored else x) * factor
        m = plain(copy, top)
        maps.append(scale01(m.flip(-1) if mirrored else m))
    torch.testing.assert_close(smoothed, torch.stack(maps).mean(0), atol=1e-5, rtol=1e-4)
    assert len(AUGMENTATIONS) == 6 and len(set(AUGMENTATIONS)) == 6


def _ablated_logit(model: Model, x: Tensor, layer: str, channel: int, target: int) -> Tensor:
    """The target's logit with one channel of ``layer`` zeroed, by a hook of the test's own."""
    def zero(_m: nn.Module, _i: object, out: Tensor) -> Tensor:
        out = out.clone()
        out[:, channel] = 0
        return out

    handle = getattr(model.net, layer).register_forward_hook(zero)
    try:
        with torch.no_grad():
            return model(x)[:, target]
    finally:
        handle.remove()


def test_ablationcam_weights_are_the_measured_drops(tiny: Model) -> None:
    x = _inputs()
    layer, target = "relu2", 2
    with torch.no_grad(), capture(tiny, layer) as record:
        logits = tiny(x)
    acts, y = record[layer], logits[:, target]
    drops = torch.stack([(y - _ablated_logit(tiny, x, layer, k, target)) / y
                         for k in range(acts.shape[1])], 1)
    want = (drops[:, :, None, None] * acts).sum(1, keepdim=True)
    maps = [AblationCAM(tiny, layer=layer, relu=False, batch_size=b)(x, target) for b in (1, 5, 1000)]
    for m in maps:
        torch.testing.assert_close(m, want, atol=1e-5, rtol=1e-4)
    # only the k most varied channels of each image are ablated; the others weigh 0
    k = 3
    top = acts.flatten(2).var(2).topk(k, 1).indices
    kept = torch.zeros_like(drops).scatter_(1, top, 1.0)
    torch.testing.assert_close(AblationCAM(tiny, layer=layer, relu=False, max_channels=k)(x, target),
                               (kept * drops)[:, :, None, None].mul(acts).sum(1, keepdim=True),
                               atol=1e-5, rtol=1e-4)


class BatchFromInput(nn.Module):
    """TinyCNN's layers with a forward that reads the batch size from its input: the rows an
    ablation repeats after the layer do not fit its reshape, so every row must run whole."""

    def __init__(self, tiny: nn.Module) -> None:
        super().__init__()
        self.tiny = tiny

    def forward(self, x: Tensor) -> Tensor:
        t, b = self.tiny, x.shape[0]
        h = t.relu2(t.conv2(t.relu1(t.conv1(x))))
        return t.fc(t.pool(h).reshape(b, -1))


def test_ablationcam_runs_rows_whole_where_the_forward_reads_its_batch(tiny: Model) -> None:
    x = _inputs()
    other = Model(BatchFromInput(tiny.net).eval(), preprocess=Preprocess(input_size=(16, 16)))
    torch.testing.assert_close(AblationCAM(other, layer="tiny.relu2", batch_size=7)(x, 1),
                               AblationCAM(tiny, layer="relu2", batch_size=7)(x, 1))


@pytest.mark.parametrize("cls", [AblationCAM, ScoreCAM])
def test_ablationcam_and_scorecam_report_progress(tiny: Model, cls: type[ScoreCAM]) -> None:
    seen: list[tuple[int, int]] = []
    cls(tiny, layer="relu2", batch_size=4, progress=lambda d, t: seen.append((d, t)))(_inputs(), 0)
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


class PiecewiseLinear(nn.Module):
    """conv(bias) -> BN -> ReLU -> max-pool -> conv(bias) -> ReLU -> GAP -> linear(bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(5, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        return self.fc(F.relu(self.conv2(h)).mean((2, 3)))


def _piecewise() -> Model:
    torch.manual_seed(0)
    net = PiecewiseLinear()
    with torch.no_grad():  # batch-norm statistics and affine parameters away from the identity
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.uniform_(-0.3, 0.3)
    return Model(net.eval(), preprocess=Preprocess(input_size=(16, 16)))


def test_fullgrad_decomposition_sums_to_the_score() -> None:
    """Completeness (Srinivas & Fleuret, Eq. 2): input term + every bias term = the logit."""
    model, x = _piecewise(), _inputs()
    parts = FullGrad(model).decompose(x, 1)
    assert set(parts.biases) == {"conv1", "bn1", "conv2", "fc"}
    torch.testing.assert_close(parts.total(), model(x)[:, 1].detach(), atol=1e-5, rtol=1e-5)
    # each bias term is (d score / d output) * bias, with the batch norm's effective bias
    _, grads, _ = _signal(model, x, "bn1", 1)
    bn = model.net.bn1
    bias = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    torch.testing.assert_close(parts.biases["bn1"], grads * bias[None, :, None, None])
    assert parts.biases["fc"].shape == (3, 4) and parts.biases["conv1"].shape == (3, 5, 16, 16)


def test_fullgrad_map_sums_the_scaled_terms() -> None:
    model, x = _piecewise(), _inputs()
    parts = FullGrad(model).decompose(x, 2)
    want = scale01(parts.inputs.abs()).sum(1, keepdim=True)
    for name in ("conv1", "bn1"):
        want = want + scale01(parts.biases[name].abs()).sum(1, keepdim=True)
    conv2 = scale01(parts.biases["conv2"].abs()).sum(1, keepdim=True)
    want = want + F.interpolate(conv2, size=(16, 16), mode="bilinear", align_corners=False)
    fullgrad = FullGrad(model)(x, 2)
    assert fullgrad.shape == (3, 1, 16, 16)
    torch.testing.assert_close(fullgrad, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(BadArgument, match="does not take a layer"):
        build_method("fullgrad", model, "conv1")
