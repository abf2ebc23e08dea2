"""Fast style transfer: the network, training, checkpoints, resume, stylize, model safety.

Everything trains a tiny transformer (width 4-8) on 24-32 px crops against a tiny seeded feature
network, so each test takes a second or less; one test uses the embedded EfficientNet-Lite0 with
its default style layers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.data import load_image
from convscope.errors import BadArgument, BadImage, BadModel
from convscope.methods.synthesis.checkpoint import load_train_state
from convscope.methods.synthesis.fast_style import (
    FastStyleNet,
    PerceptualLoss,
    load_fast_style,
    save_fast_style,
    stylize,
    train_fast_style,
)
from convscope.model import Model, Preprocess

LAYERS = {"style_layers": ["r1", "r2", "r3"], "content_layer": "r2"}


class Features(nn.Module):
    """A tiny seeded feature network with batch norm and a frozen parameter (train mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn, self.r1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU()
        self.c3, self.r3 = nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r3(self.c3(self.r2(self.c2(self.r1(self.bn(self.c1(x)))))))
        return self.fc(h.mean((2, 3)))


def features_model() -> Model:
    torch.manual_seed(0)
    net = Features().train()
    net.c2.bias.requires_grad_(False)
    return Model(net, preprocess=Preprocess((32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), name="feat")


def _small(name: str, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(load_image(f"sample:{name}")[None], size=size, mode="area")[0]


def pictures() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A small style image (the coffee photo) and two small content photos of different sizes."""
    return _small("coffee", (32, 48)), [_small("cat", (40, 60)), _small("astronaut", (40, 40))]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: see conftest


def train(model: Model, **options: object) -> FastStyleNet:
    style, contents = pictures()
    base = {"model": model, "steps": 4, "batch_size": 2, "size": 24, "width": 4, "blocks": 1, **LAYERS}
    return train_fast_style(style, contents, **{**base, **options})  # type: ignore[arg-type]


def test_net_maps_images_to_images_in_unit_range() -> None:
    net = FastStyleNet(width=4, blocks=2)
    y = net(torch.rand(2, 3, 16, 20)).detach()
    assert y.shape == (2, 3, 16, 20) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert net.config == {"width": 4, "blocks": 2}
    with pytest.raises(BadArgument, match="multiples of 4"):
        net(torch.rand(1, 3, 18, 20))
    with pytest.raises(BadArgument):
        FastStyleNet(width=0)


def test_nearest_upsampling_not_transposed_convolution() -> None:
    net = FastStyleNet(width=4, blocks=1)
    kinds = {type(m) for m in net.modules()}
    assert nn.ConvTranspose2d not in kinds and nn.Upsample in kinds and nn.InstanceNorm2d in kinds


@pytest.mark.parametrize("shape", [(3, 13, 17), (3, 5, 3), (2, 3, 9, 31)])
def test_stylize_keeps_any_size(shape: tuple[int, ...]) -> None:
    net = FastStyleNet(width=4, blocks=1)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    y = stylize(net, x, batch_size=1)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and not y.is_inference()
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_stylize_batches_equal_one_by_one_and_lists_keep_order() -> None:
    """Instance norm makes every image independent of its batch mates."""
    net = FastStyleNet(width=4, blocks=1)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 12, 16, generator=g)
    c = torch.rand(3, 9, 7, generator=g)
    together = stylize(net, torch.stack([a, b]), batch_size=2)
    assert torch.allclose(together[0], stylize(net, a), atol=1e-6)
    listed = stylize(net, [a, c, b], batch_size=4)
    assert [t.shape for t in listed] == [a.shape, c.shape, b.shape]
    assert torch.allclose(listed[2], together[1], atol=1e-6)
    assert torch.equal(stylize(net, torch.ones(1, 3, 8, 8)), net(torch.ones(1, 3, 8, 8)).detach())
    with pytest.raises(BadImage):
        stylize(net, torch.rand(3, 8))


def test_training_lowers_the_perceptual_loss() -> None:
    model = features_model()
    style, contents = pictures()
    criterion = PerceptualLoss(model, style, **LAYERS, style_weight=3.0, content_weight=1.0,
                               tv_weight=0.0, style_size=32)  # type: ignore[arg-type]
    held_out = torch.stack([contents[0][:, :32, :32], contents[1][:, 4:36, 4:36]])

    def loss(net: FastStyleNet) -> float:
        with torch.no_grad():
            return float(criterion(net(held_out), held_out).mean())

    options = {"width": 8, "size": 32, "style_size": 32, "lr": 3e-3}
    before, after = train(model, steps=0, **options), train(model, steps=30, **options)
    assert loss(after) < 0.3 * loss(before)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = train(features_model(), steps=2, checkpoint_path=tmp_path / "net.pt")
    loaded = load_fast_style(tmp_path / "net.pt")
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    assert torch.equal(stylize(loaded, x), stylize(net, x))
    raw = torch.load(tmp_path / "net.pt", weights_only=True)  # plain data only
    assert raw["config"] == {"width": 4, "blocks": 1} and raw["train"]["step"] == 2
    save_fast_style(net, tmp_path / "plain.pt")
    assert torch.equal(stylize(load_fast_style(tmp_path / "plain.pt"), x), stylize(net, x))


def test_resume_continues_to_the_uninterrupted_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = features_model()
    straight = train(model, steps=6, seed=5)
    path = tmp_path / "half.pt"
    train(model, steps=3, seed=5, checkpoint_path=path)
    resumed = train(model, steps=6, seed=5, resume_from=path, checkpoint_path=path)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_train_state(path).step == 6
    with pytest.raises(BadArgument, match="width"):
        train(model, steps=7, width=8, resume_from=path)


def test_checkpoint_every_saves_along_the_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, seen = tmp_path / "every.pt", {}

    def callback(step: int, losses: torch.Tensor) -> None:
        seen[step] = load_train_state(path).step if path.exists() else None
        assert losses.shape == (2,)

    train(features_model(), steps=5, checkpoint_every=2, checkpoint_path=path, callback=callback)
    assert seen == {1: None, 2: 2, 3: 2, 4: 4, 5: 4} and load_train_state(path).step == 5
    with pytest.raises(BadArgument, match="checkpoint_path"):
        train(features_model(), checkpoint_every=2)


def test_feature_network_is_unharmed_by_training() -> None:
    model = features_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    modes = [m.training for m in model.modules()]
    net = train(model, steps=3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.requires_grad for p in net.parameters())


def test_default_layers_of_the_embedded_model_train(lite0: Model) -> None:
    style, contents = pictures()
    log: list[float] = []
    net = train_fast_style(style, contents, model=lite0, steps=2, batch_size=1, size=32, width=4,
                           blocks=1, callback=lambda _s, loss: log.append(float(loss.mean())))
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(log)))
    assert stylize(net, contents[0]).shape == contents[0].shape


def _write(path, data: bytes) -> str:  # type: ignore[no-untyped-def]
    path.write_bytes(data)
    return str(path)


def test_bad_network_files_are_refused_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.pt"
    save_fast_style(FastStyleNet(4, 1), good)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # needs pickle
    wrong = torch.load(good, weights_only=True)
    wrong["config"]["width"] = 8
    torch.save(wrong, tmp_path / "wrong.pt")
    cases = {
        str(tmp_path / "missing.pt"): "does not exist",
        _write(tmp_path / "text.pt", b"not a checkpoint"): "cannot be read",
        _write(tmp_path / "cut.pt", good.read_bytes()[:200]): "cannot be read",
        str(tmp_path / "other.pt"): "not a fast-style network",
        str(tmp_path / "module.pt"): "cannot be read safely",
        str(tmp_path / "wrong.pt"): "do not fit",
    }
    for path, needle in cases.items():
        with pytest.raises(BadModel, match=needle):
            load_fast_style(path)


@pytest.mark.parametrize("options", [{"steps": -1}, {"batch_size": 0}, {"size": 4}, {"lr": 0.0},
                                     {"style_weight": -1.0}])
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(BadArgument):
        train(features_model(), **options)
