"""The torchvision zoo with random weights, one architecture at a time, for tests/zoo.

torchvision is imported unconditionally: where it is missing (beside torch 2.13.0 it does not
import) collecting tests/zoo fails loudly instead of skipping. The main suite ignores this folder
(pyproject's ``addopts``); the README's test command runs it in its own venv.

``zoo_model`` is parametrized over :data:`ZOO` with module scope, so each test module builds each
architecture once, and pytest runs a module's tests grouped by architecture (one model in memory
at a time). The inputs are the two sample photos at a small size, seeded models in eval mode.
Fixture names start with ``zoo_`` so that self-contained test files here are not affected.
The ``timm_`` fixtures do the same for the timm architectures of :mod:`tests.zoo.timm_archs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
import torchvision  # noqa: F401  (no importorskip: a missing torchvision must fail, not skip)
from torch import Tensor, nn
from torchvision.models import get_model

import convscope
from convscope.model import Model, Preprocess
from convscope.model.labels import imagenet_labels
from tests.zoo.timm_archs import TIMM, TimmArch
from tests.zoo.timm_archs import build as build_timm


@dataclass(frozen=True)
class Arch:
    """One architecture: its input side, its last spatial stage and what its rules promise."""

    name: str
    side: int
    layer: str
    """The output its forward uses from the last spatial stage (what "auto" should pick)."""
    relu_after: bool = False
    """The forward applies a functional ReLU to ``layer``'s output (DenseNet's ``F.relu``)."""
    relu_only: bool = False
    """Only rectifiers (ReLU/ReLU6), affine layers, pooling, adds and concatenations: LRP's epsilon
    rule conserves relevance once biases are removed."""
    deeplift_exact: bool = False
    """Every nonlinearity is a routed rectifier and there is no max-pool: DeepLIFT's rescale rule
    sums to delta up to float error."""
    gap_linear: bool = False
    """Ends in global average pooling + one linear layer: CAM applies."""
    options: tuple[tuple[str, object], ...] = ()
    """Constructor options for get_model besides ``weights=None``."""


ZOO: dict[str, Arch] = {a.name: a for a in [
    Arch("resnet18", 64, "layer4", relu_only=True, gap_linear=True),
    Arch("resnet50", 64, "layer4", relu_only=True, gap_linear=True),
    Arch("vgg11_bn", 64, "features", relu_only=True),
    Arch("densenet121", 64, "features", relu_after=True, relu_only=True),
    Arch("mobilenet_v2", 64, "features", relu_only=True, deeplift_exact=True, gap_linear=True),
    Arch("mobilenet_v3_small", 64, "features"),
    Arch("efficientnet_b0", 64, "features", gap_linear=True),
    Arch("convnext_tiny", 64, "features"),
    Arch("regnet_y_400mf", 64, "trunk_output", gap_linear=True),
    Arch("squeezenet1_1", 64, "features", relu_only=True),
    Arch("shufflenet_v2_x0_5", 64, "conv5", relu_only=True, gap_linear=True),
    Arch("googlenet", 64, "inception5b", relu_only=True, gap_linear=True,
         options=(("init_weights", True), ("aux_logits", False))),
    Arch("inception_v3", 107, "Mixed_7c", relu_only=True, gap_linear=True,
         options=(("init_weights", True), ("aux_logits", False))),
    Arch("alexnet", 96, "features", relu_only=True),
]}


CALIBRATION = ("astronaut", "rocket", "motorcycle", "horse", "grass", "gravel", "brick", "cat_and_coffee")
"""Sample photos that set the batch-norm statistics; the test inputs (cat, coffee) are not among them."""


def calibrate(model: Model) -> None:
    """Batch-norm statistics measured on photos, as training leaves them.

    At initialization every BatchNorm has mean 0 and variance 1, so in eval mode it is the identity
    and the signal shrinks or grows layer after layer: the logits of MobileNet or EfficientNet then
    move by 1e-10 between two photos, those of Inception-v3 reach 1e8. One pass over a few photos
    in train mode (cumulative averages) gives each layer the statistics of its actual input, as in a
    trained network; the weights stay random.
    """
    norms = [m for m in model.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    images = model.preprocess([convscope.load_image(f"sample:{name}") for name in CALIBRATION])
    model.net.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.net(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.net.eval()


def build(arch: Arch, calibrated: bool = True) -> Model:
    """The architecture with seeded random weights (and calibrated batch norms), in eval mode."""
    torch.manual_seed(0)
    net = get_model(arch.name, weights=None, **dict(arch.options))
    # stretched, not centre-cropped: the photos' full content, as the suite's numbers were set
    model = Model(net, preprocess=Preprocess(input_size=(arch.side, arch.side), resize="stretch"),
                  labels=imagenet_labels(), name=arch.name)
    if calibrated:
        calibrate(model)
    return model.eval()


@pytest.fixture(scope="module", params=list(ZOO))
def zoo_arch(request: pytest.FixtureRequest) -> Arch:
    return ZOO[request.param]


@pytest.fixture(scope="module")
def zoo_model(zoo_arch: Arch) -> Iterator[Model]:
    threads = torch.get_num_threads()
    yield build(zoo_arch)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def zoo_initial_model(zoo_arch: Arch) -> Model:
    """The architecture exactly as ``get_model(name, weights=None)`` makes it (in eval mode)."""
    return build(zoo_arch, calibrated=False)


@pytest.fixture(scope="module")
def zoo_inputs(zoo_model: Model) -> Tensor:
    """The cat and the espresso at the model's input size, (2, 3, side, side)."""
    images = [convscope.load_image("sample:cat"), convscope.load_image("sample:coffee")]
    return zoo_model.preprocess(images)


@pytest.fixture(scope="module", params=list(TIMM))
def timm_arch(request: pytest.FixtureRequest) -> TimmArch:
    """One timm architecture of tests/zoo/timm_archs.py (the module's tests grouped by it)."""
    return TIMM[request.param]


@pytest.fixture(scope="module")
def timm_model(timm_arch: TimmArch) -> Iterator[Model]:
    """The timm architecture built once per test module, calibrated, in eval mode."""
    threads = torch.get_num_threads()
    yield build_timm(timm_arch)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def timm_inputs(timm_model: Model) -> Tensor:
    """The cat and the espresso at the timm model's (square) input size, (2, 3, side, side)."""
    images = [convscope.load_image("sample:cat"), convscope.load_image("sample:coffee")]
    return timm_model.preprocess(images)


def finite_nonzero(values: Tensor, what: str) -> None:
    """A map the user can look at: finite everywhere, not empty, not all zero in any sample."""
    assert values.numel() > 0, f"{what}: empty map"
    assert torch.isfinite(values).all(), f"{what}: NaN or infinite values"
    flat = values.detach().flatten(1).abs().amax(1)
    assert (flat > 0).all(), f"{what}: all-zero map for samples {(flat == 0).nonzero().flatten().tolist()}"
