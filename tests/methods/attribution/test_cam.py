"""CAM family: known identities, class sensitivity on a two-object image, errors, no side effects."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.data import load_image
from convscope.errors import BadLayer, BadModel
from convscope.methods.attribution.cam import CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM
from convscope.methods.evaluation import localize
from convscope.methods.registry import build_method, get_method
from convscope.model import Model, Preprocess, auto_layer, capture

CAM_NAMES = ["cam", "gradcam", "gradcam_pp", "guided_gradcam"]


class FlattenHead(nn.Module):
    """conv -> relu -> flatten -> linear: no global average pooling, so no CAM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


class MLPHead(nn.Module):
    """conv -> relu -> GAP -> linear -> relu -> linear: pooled, but the head is not one linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.hidden = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.relu(self.conv(x)).mean((2, 3))
        return self.fc(F.relu(self.hidden(pooled)))


def _wrap(net: nn.Module) -> Model:
    torch.manual_seed(0)
    return Model(net.eval(), preprocess=Preprocess(input_size=(16, 16)))


def _inputs(batch: int = 3, size: int = 16) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_registered_with_layer_and_options() -> None:
    for name in CAM_NAMES:
        info = get_method(name)
        assert info.family == "cam" and info.needs_layer
    assert set(get_method("gradcam").options()) == {"relu", "reshape", "aug_smooth", "eigen_smooth"}
    assert set(get_method("guided_gradcam").options()) == {"aug_smooth", "eigen_smooth"}


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam_equals_cam_times_area_on_tiny(tiny: Model, relu: bool) -> None:
    x = _inputs()
    cam = CAM(tiny, relu=relu)(x, [0, 1, 3])
    grad = GradCAM(tiny, relu=relu)(x, [0, 1, 3])
    assert cam.shape == grad.shape == (3, 1, 8, 8)
    # dy/dA = w / Z on GAP + linear, so Grad-CAM = CAM / Z with Z = h * w (a positive scale).
    torch.testing.assert_close(grad * 64, cam, atol=1e-6, rtol=1e-5)
    assert cam.abs().amax() > 0


def test_cam_weights_follow_any_target_linearly(tiny: Model) -> None:
    x = _inputs()

    def contrast(logits: Tensor) -> Tensor:
        return logits[:, 1] - logits[:, 2]

    both = CAM(tiny, relu=False)(x, contrast)
    one, two = CAM(tiny, relu=False)(x, 1), CAM(tiny, relu=False)(x, 2)
    torch.testing.assert_close(both, one - two, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(GradCAM(tiny, relu=False)(x, contrast) * 64, both, atol=1e-6, rtol=1e-5)


def test_gradcam_equals_cam_on_embedded_model(lite0: Model) -> None:
    x = lite0.preprocess(load_image("sample:cat"))
    method = CAM(lite0)
    assert method.layer == "_relu_head"
    cam = method(x, 285)
    grad = GradCAM(lite0)(x, 285)
    assert cam.shape == (1, 1, 7, 7)
    torch.testing.assert_close(grad * 49, cam, atol=1e-4 * float(cam.max()), rtol=1e-4)


def test_gradcam_pp_closed_form_on_gap_linear(tiny: Model) -> None:
    """With g = w/Z everywhere, alpha = 1/(2 + w mean(A)) and weights = relu(w) / (2 + w mean(A))."""
    x = _inputs()
    with torch.no_grad():
        net = tiny.net
        acts = net.relu2(net.conv2(net.relu1(net.conv1(x))))
    w = net.fc.weight[2][None, :, None, None]
    m = acts.mean((2, 3), keepdim=True)
    expected = ((w.relu() / (2 + w * m)) * acts).sum(1, keepdim=True).relu()
    torch.testing.assert_close(GradCAMPlusPlus(tiny)(x, 2), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("smooth", [{}, {"aug_smooth": True}, {"eigen_smooth": True}])
def test_guided_gradcam_is_guided_times_upsampled_gradcam(tiny: Model, smooth: dict[str, bool]) -> None:
    x = _inputs()
    out = GuidedGradCAM(tiny, **smooth)(x, 2)
    assert out.shape == x.shape  # input resolution, input channels: unlike the other CAMs
    guided = build_method("guided_backprop", tiny)(x, 2)
    cam = F.interpolate(GradCAM(tiny, **smooth)(x, 2), size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, guided * cam)


@pytest.mark.parametrize("cls", [CAM, GradCAM, GradCAMPlusPlus])
def test_maps_move_with_the_target(lite0: Model, two_objects: Tensor, cls: type) -> None:
    maps = cls(lite0, layer="_relu_head")(two_objects.expand(2, -1, -1, -1), [285, 967])[:, 0]
    columns = maps.sum(1)  # (2, 7, 7) maps -> (2, 7) mass per column; column 3 straddles the seam
    centers = (columns * torch.arange(7.0)).sum(1) / columns.sum(1)
    peaks = maps.flatten(1).argmax(1) % 7
    left = (columns * torch.tensor([1, 1, 1, 0.5, 0, 0, 0])).sum(1) / columns.sum(1)
    assert centers[0] < 3 < centers[1], centers
    assert peaks[0] < 3 < peaks[1], peaks
    assert left[0] > left[1] + 0.25, left  # Grad-CAM++ is the least class-selective of the three


def test_cam_boxes_find_each_object(lite0: Model, two_objects: Tensor) -> None:
    maps = CAM(lite0, layer="_relu_head")(two_objects.expand(2, -1, -1, -1), [285, 967])
    up = F.interpolate(maps, size=(224, 224), mode="bilinear", align_corners=False)
    boxes = localize(up).boxes  # (top, left, bottom, right)
    centers = (boxes[:, 1] + boxes[:, 3]) / 2
    assert centers[0] < 112 < centers[1], boxes


def test_guided_gradcam_moves_with_the_target(lite0: Model, two_objects: Tensor) -> None:
    batch = two_objects.expand(2, -1, -1, -1)
    maps = GuidedGradCAM(lite0, layer="_relu_head")(batch, [285, 967]).abs().sum(1)
    left = maps[:, :, :112].sum((1, 2)) / maps.sum((1, 2))
    assert left[0] > 0.5 > left[1], left


class TwoHeads(nn.Module):
    """conv -> relu -> GAP -> the mean of two linear heads (LeViT's head and head_dist), with
    weights small enough that the logits are ~1e-4, as at LeViT's random init."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.head, self.head_dist = nn.Linear(8, 5), nn.Linear(8, 5)
        with torch.no_grad():
            for head in (self.head, self.head_dist):
                head.weight.normal_(0, scale)
                head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.relu(self.conv(x)).mean((2, 3))
        return (self.head(pooled) + self.head_dist(pooled)) / 2


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_cam_refuses_a_head_that_is_not_the_one_making_the_logits(scale: float) -> None:
    """Neither head alone gives the averaged logits; tiny logits must not hide it."""
    model = _wrap(TwoHeads(scale))
    with torch.no_grad():
        assert (model(_inputs()).abs().max() < 1e-3) == (scale < 1)
    with pytest.raises(BadModel, match="does not reproduce"):
        CAM(model, layer="relu")(_inputs(), 0)


def test_cam_accepts_its_head_however_small_the_logits() -> None:
    """A one-head model with logits ~1e-4 is still CAM's: the check is relative, not absolute."""
    net = TwoHeads(1e-4)
    net.head_dist = net.head  # the mean of one head twice: the head itself
    model = _wrap(net)
    x = _inputs()
    with torch.no_grad():
        acts = model.net.relu(model.net.conv(x))
        reference = torch.einsum("k,bkhw->bhw", net.head.weight[2], acts)[:, None]
    torch.testing.assert_close(CAM(model, layer="relu", relu=False)(x, 2), reference)


@pytest.mark.parametrize("net", [FlattenHead(), MLPHead()], ids=["flatten", "mlp"])
def test_cam_without_gap_linear_head_says_what_to_do(net: nn.Module) -> None:
    model = _wrap(net)
    with pytest.raises(BadModel, match=r"gradcam.*retrofit_cam"):
        CAM(model)(_inputs(), 0)
    assert GradCAM(model)(_inputs(), 0).ndim == 4  # the first way out works


def test_cam_at_a_layer_the_head_does_not_pool(tiny: Model) -> None:
    # conv2 has the head's 8 channels, but the head pools relu(conv2): the check is numerical.
    with pytest.raises(BadModel, match="does not reproduce"):
        CAM(tiny, layer="conv2")(_inputs(), 0)
    assert CAM(tiny, layer="relu2")(_inputs(), 0).shape == (3, 1, 8, 8)


@pytest.mark.parametrize("name", CAM_NAMES)
def test_bad_layer_names(tiny: Model, name: str) -> None:
    with pytest.raises(BadLayer, match="did you mean"):
        build_method(name, tiny, layer="relu3")


def test_layer_without_a_spatial_map(tiny: Model) -> None:
    with pytest.raises(BadLayer, match="convolutional layer"):
        GradCAM(tiny, layer="fc")(_inputs(), 0)


@pytest.mark.parametrize("name", CAM_NAMES)
def test_model_left_as_it_was(tiny: Model, name: str) -> None:
    tiny.net.train()
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    out = build_method(name, tiny)(_inputs(), "top1")
    assert torch.isfinite(out).all()
    assert all(m.training for m in tiny.net.modules())
    assert all(p.requires_grad and p.grad is None for p in tiny.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in tiny.modules())
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())


def test_gradcam_differentiates_nothing_below_its_layer(tiny: Model) -> None:
    called: list[str] = []
    handle = tiny.net.conv1.register_full_backward_hook(lambda *_: called.append("conv1"))
    try:
        GradCAM(tiny, layer="relu2")(_inputs(), 1)
    finally:
        handle.remove()
    assert called == []


class SqueezeStyle(nn.Module):
    """SqueezeNet's shape: conv features, then Dropout, 1x1 conv to the classes, ReLU, GAP."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 12, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(12, classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).flatten(1)


class NiNStyle(nn.Module):
    """Network-in-Network's head without a final rectifier: features, 1x1 conv to classes, GAP."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(12, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.head(self.features(x)), 1).flatten(1)


def _head_map(model: Model, layer: str, x: Tensor) -> Tensor:
    with torch.no_grad(), capture(model, layer) as record:
        model(x)
    return record[layer]


@pytest.mark.parametrize("relu", [True, False])
def test_cam_on_a_1x1_conv_head_is_the_class_channel_before_pooling(relu: bool) -> None:
    """CAM returns the unnormalized (B, 1, h, w) map at the layer; on SqueezeNet's head "auto"
    picks the feature stage, which has no head of its own, so CAM reads the map the pooling
    averages, and CAM of class k is exactly its channel k."""
    model = _wrap(SqueezeStyle())
    assert auto_layer(model) == "features"
    x = _inputs()
    cam = CAM(model, relu=relu)
    maps = cam(x, [0, 3, 4])
    assert cam.layer == "classifier.2"
    head = _head_map(model, "classifier.2", x)
    assert maps.shape == (3, 1, 8, 8)
    torch.testing.assert_close(maps[:, 0], head[[0, 1, 2], [0, 3, 4]], rtol=0, atol=0)


def test_cam_through_a_1x1_conv_reads_its_kernel() -> None:
    """At the features of a NiN head, CAM's weights are the 1x1 kernel: map + bias = head channel."""
    model = _wrap(NiNStyle())
    x = _inputs()
    maps = CAM(model, layer="features", relu=False)(x, 2)
    head = _head_map(model, "head", x)[:, 2:3]
    torch.testing.assert_close(maps + model.net.head.bias[2], head, rtol=1e-5, atol=1e-6)
    at_head = CAM(model, layer="head", relu=False)(x, 2)
    torch.testing.assert_close(at_head, head, rtol=0, atol=0)
    gradcam = GradCAM(model, layer="features", relu=False)(x, 2)  # the known identity holds too
    torch.testing.assert_close(gradcam * 64, maps, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layer", ["features", "classifier.1"])
def test_cam_refuses_where_a_rectifier_sits_between_head_and_pooling(layer: str) -> None:
    with pytest.raises(BadModel, match="1x1 convolution"):
        CAM(_wrap(SqueezeStyle()), layer=layer)(_inputs(), 0)
