"""load_model: the embedded model's predictions, user modules, factories and checkpoints."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from convscope.errors import BadModel, MissingDependency
from convscope.model import Model, load_model
from convscope.model.zoo import ARCHITECTURES


@pytest.mark.parametrize(("sample", "index", "label"),
                         [("cat", 285, "Egyptian cat"), ("coffee", 967, "espresso")])
def test_embedded_model_top1(lite0: Model, sample: str, index: int, label: str) -> None:
    from convscope.tasks.predict import predict

    (best, *_), = predict(lite0, f"sample:{sample}", top=3)
    assert (best.index, best.label) == (index, label)
    assert best.probability > 0.35  # the cat: 0.42 (its tabby and tiger-cat classes share 0.49)


def test_embedded_model_is_ready(lite0: Model) -> None:
    assert not lite0.training and not lite0.net.training
    assert lite0.spec.mean == (0.5, 0.5, 0.5) and lite0.input_size == (224, 224)
    assert len(lite0.labels or []) == 1000 and lite0.label(285) == "Egyptian cat"


def test_user_module_is_wrapped_untouched() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 3)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = load_model(net, labels=["a", "b", "c"], preprocess={"input_size": [8, 8]})
    assert model.net is net and net.training
    assert model.input_size == (8, 8) and model.labels == ["a", "b", "c"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_labels_count_checked() -> None:
    with pytest.raises(BadModel, match="2 names but the model outputs 3"):
        load_model(nn.Linear(4, 3), labels=["a", "b"])


def _factory() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))


def test_factory_spec_and_weights(tmp_path) -> None:
    module = type(sys)("cs_factory_mod")
    module.make = _factory
    sys.modules["cs_factory_mod"] = module
    try:
        reference = _factory()
        torch.save(reference.state_dict(), tmp_path / "w.pth")
        model = load_model("cs_factory_mod:make", weights=tmp_path / "w.pth")
        x = torch.randn(1, 3, 8, 8)
        assert torch.allclose(model(x), reference(x))
        with pytest.raises(BadModel, match="cannot import 'nope'"):
            load_model("cs_factory_mod:nope")
    finally:
        del sys.modules["cs_factory_mod"]


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(BadModel, match="efficientnet_lite0"):
        load_model("resnet9000")


def test_state_dict_checkpoint_recognized(tmp_path, lite0: Model) -> None:
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": lite0.net.state_dict()}, path)
    model = load_model(str(path))
    assert model.labels == lite0.labels and model.spec == lite0.spec
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), lite0(x), atol=1e-5)


def test_pickled_checkpoint_refused_unless_trusted(tmp_path) -> None:
    path = tmp_path / "full.pt"
    torch.save(_factory(), path)
    with pytest.raises(BadModel, match="trust-checkpoint"):
        load_model(str(path))
    model = load_model(str(path), trust_checkpoint=True)
    assert isinstance(model.net, nn.Sequential)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_checkpoint(tmp_path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(_factory()).save(str(path))
    model = load_model(str(path))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_exported_program_checkpoint(tmp_path) -> None:
    net = _factory().eval()
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(net, (x,)), str(path))
    model = load_model(str(path))
    assert torch.allclose(model(x), net(x), atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken"])
def test_corrupt_checkpoint(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(BadModel, match=r"bad\.pth"):
        load_model(str(path))


def test_unknown_state_dict(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(BadModel, match="unknown architecture"):
        load_model(str(path))


def test_missing_checkpoint() -> None:
    with pytest.raises(BadModel, match="does not exist"):
        load_model("no/such/file.pth")


def test_optional_packages_fail_clearly(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import of a None entry raises ImportError
    with pytest.raises(MissingDependency, match="pip install timm"):
        load_model("timm:resnet18")


def test_every_architecture_builds() -> None:
    for build in ARCHITECTURES.values():
        assert isinstance(build(), nn.Module)


def test_exported_program_runs_under_methods(tmp_path) -> None:
    from convscope.tasks.predict import predict

    net = _factory().eval()
    path = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 8, 8),)), str(path))
    model = load_model(str(path), labels=["a", "b"], preprocess={"input_size": (8, 8)})
    (preds,) = predict(model, torch.rand(1, 3, 8, 8), top=2)
    assert {p.label for p in preds} == {"a", "b"}


def test_resize_of_a_ready_batch_is_a_new_tensor_equal_to_the_per_image_path() -> None:
    from convscope.model import Preprocess

    model = Model(nn.Conv2d(3, 1, 1), preprocess=Preprocess((5, 4)))
    for channels in (1, 3):
        batch = torch.rand(2, channels, 5, 4)
        fast = model.resize(batch)
        slow = model.resize(list(batch))
        assert torch.equal(fast, slow) and fast.shape == (2, 3, 5, 4) and fast.is_contiguous()
        assert fast.data_ptr() != batch.data_ptr()


def _export(tmp_path, net: nn.Module, example: torch.Tensor, name: str = "exported.pt2", **kw):
    path = tmp_path / name
    torch.export.save(torch.export.export(net, (example,), **kw), str(path))
    return path


def test_exported_program_uses_its_own_input_size_and_any_batch(tmp_path) -> None:
    from convscope.model.formats import ExportedNet

    net = _factory().eval()
    model = load_model(str(_export(tmp_path, net, torch.randn(1, 3, 64, 48))), labels=["a", "b"])
    assert model.input_size == (64, 48) and model.channels == 3
    assert isinstance(model.net, ExportedNet) and model.net.batch == 1
    x = torch.randn(5, 3, 64, 48)  # five rows through a program fixed at batch 1: in chunks
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 1].sum(), x)  # gradients flow through the chunks
    (want,) = torch.autograd.grad(net(x)[:, 1].sum(), x)
    assert torch.allclose(grad, want, atol=1e-5)
    with pytest.raises(BadModel, match="exported for input_size"):
        load_model(str(_export(tmp_path, net, torch.randn(1, 3, 64, 48))), preprocess={"input_size": 32})


def test_exported_program_with_a_dynamic_batch_runs_whole_batches(tmp_path) -> None:
    net = _factory().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    path = _export(tmp_path, net, torch.randn(2, 3, 16, 16), dynamic_shapes=({0: batch},))
    model = load_model(str(path))
    assert model.net.batch is None and model.input_size == (16, 16)  # type: ignore[union-attr]
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)


def test_exported_layers_are_hookable_with_original_types(tmp_path) -> None:
    from convscope.model import capture, list_layers

    net = _factory().eval()
    model = load_model(str(_export(tmp_path, net, torch.randn(1, 3, 8, 8))))
    infos = {i.name: i for i in list_layers(model)}
    assert infos["0"].type == "Conv2d" and infos["0"].output_shape == (4, 6, 6)
    x = torch.randn(1, 3, 8, 8)
    with capture(model, "1") as acts:
        model(x)
    assert torch.allclose(acts["1"], net[1](net[0](x)), atol=1e-6)
    with pytest.raises(BadModel, match="batches of exactly 1"), capture(model, "1"):
        model(torch.randn(2, 3, 8, 8))  # one hook call per chunk would be wrong: refused
    assert not any(m._forward_hooks for m in model.net.modules())


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_labels_are_counted_for_compiled_formats(tmp_path) -> None:
    path = _export(tmp_path, _factory().eval(), torch.randn(1, 3, 8, 8))
    with pytest.raises(BadModel, match="3 names but the model outputs 2"):
        load_model(str(path), labels=["a", "b", "c"])
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(_factory()).save(str(scripted))
    with pytest.raises(BadModel, match="3 names but the model outputs 2"):
        load_model(str(scripted), labels=["a", "b", "c"])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_layers_without_hooks(tmp_path) -> None:
    from convscope.errors import ConvscopeError
    from convscope.model import capture, list_layers

    path = tmp_path / "scripted.pt"
    torch.jit.script(_factory()).save(str(path))
    model = load_model(str(path), preprocess={"input_size": 8})
    infos = {i.name: i for i in list_layers(model)}
    assert infos["0"].type == "Conv2d" and infos["0"].params == 4 * 27 + 4
    assert infos["0"].output_shape is None  # nothing can watch a TorchScript layer run
    with pytest.raises(ConvscopeError, match="TorchScript"), capture(model, "0"):
        pass


def test_factory_in_a_file_needs_no_pythonpath(tmp_path) -> None:
    (tmp_path / "helpers.py").write_text("WIDTH = 5\n")
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\nfrom helpers import WIDTH\n\n"
        "def make():\n    return nn.Linear(WIDTH, 2)\n")
    model = load_model(f"{tmp_path / 'mynet.py'}:make", labels=["x", "y"])
    assert isinstance(model.net, nn.Linear) and model.net.in_features == 5
    assert str(tmp_path) not in sys.path  # its folder was searchable only while it ran


def test_zoo_model_takes_given_preprocessing_and_labels() -> None:
    model = load_model("digits_cnn", preprocess={"resize": "letterbox"},
                       labels=[f"digit {d}" for d in range(10)])
    assert model.spec.resize == "letterbox" and model.spec.input_size == (28, 28)
    assert model.label(3) == "digit 3"


def test_gray_exported_program_takes_one_mean_and_unknown_fields_are_refused(tmp_path) -> None:
    from convscope.errors import BadArgument

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    path = _export(tmp_path, net.eval(), torch.randn(1, 1, 12, 12))
    model = load_model(str(path), preprocess={"mean": [0.5], "std": [0.25]})
    assert model.channels == 1 and model.spec.mean == (0.5,) and model.input_size == (12, 12)
    with pytest.raises(BadArgument, match="no field 'size'"):
        load_model(net, preprocess={"size": 8})


def test_timm_data_config_becomes_preprocessing() -> None:
    """timm's resolved data config as Preprocess fields (the zoo suite checks it on timm itself)."""
    from convscope.model.zoo import timm_preprocess

    config = {"input_size": (3, 256, 240), "interpolation": "bicubic", "mean": (0.0, 0.0, 0.0),
              "std": (1.0, 1.0, 1.0), "crop_pct": 0.95, "crop_mode": "squash"}
    fields, unmet = timm_preprocess(config)
    assert fields == {"input_size": (256, 240), "channels": 3, "mean": (0.0, 0.0, 0.0),
                      "std": (1.0, 1.0, 1.0), "crop_fraction": 0.95, "resize": "stretch"}
    assert unmet == "its 'bicubic' interpolation is done bilinearly"
    fields, unmet = timm_preprocess(config | {"interpolation": "bilinear", "crop_pct": None,
                                              "crop_mode": "center"})
    assert (fields["crop_fraction"], fields["resize"], unmet) == (1.0, "crop", "")
