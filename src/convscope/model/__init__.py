"""Model access: the only code that touches modules, hooks and autograd rules."""

from .capture import Captured, capture, forward_until
from .guard import evaluating, frozen, guarded
from .layers import LayerInfo, auto_layer, get_layer, layer_names, list_layers, resolve_layer
from .targets import select, target_indices
from .wrapped import Model, Preprocess
from .zoo import DEFAULT_MODEL, available_models, load_model

__all__ = [
    "DEFAULT_MODEL",
    "Captured",
    "LayerInfo",
    "Model",
    "Preprocess",
    "auto_layer",
    "available_models",
    "capture",
    "evaluating",
    "forward_until",
    "frozen",
    "get_layer",
    "guarded",
    "layer_names",
    "list_layers",
    "load_model",
    "resolve_layer",
    "select",
    "target_indices",
]
