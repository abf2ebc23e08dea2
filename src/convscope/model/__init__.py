"""Model access: the only code that touches modules, hooks and autograd rules."""

from .capture import Captured, capture, forward_until
from .fast import FastForward, default_batch_size, fast_forward
from .fold import FoldInfo, fold_batchnorm
from .guard import evaluating, frozen, guarded
from .layers import LayerInfo, auto_layer, get_layer, layer_names, list_layers, resolve_layer
from .receptive import Box, FieldGeometry, field_geometry, receptive_field, receptive_fields
from .rules import (
    DECONV,
    GUIDED,
    LINEAR,
    ActivationCall,
    BackwardRule,
    RuleBlock,
    active_rule,
    backward_rule,
)
from .targets import select, target_indices
from .wrapped import Model, Preprocess
from .zoo import DEFAULT_MODEL, available_models, load_model

__all__ = [
    "DECONV",
    "DEFAULT_MODEL",
    "GUIDED",
    "LINEAR",
    "ActivationCall",
    "BackwardRule",
    "Box",
    "Captured",
    "FastForward",
    "FieldGeometry",
    "FoldInfo",
    "LayerInfo",
    "Model",
    "Preprocess",
    "RuleBlock",
    "active_rule",
    "auto_layer",
    "available_models",
    "backward_rule",
    "capture",
    "default_batch_size",
    "evaluating",
    "fast_forward",
    "field_geometry",
    "fold_batchnorm",
    "forward_until",
    "frozen",
    "get_layer",
    "guarded",
    "layer_names",
    "list_layers",
    "load_model",
    "receptive_field",
    "receptive_fields",
    "resolve_layer",
    "select",
    "target_indices",
]
