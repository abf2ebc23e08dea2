"""Inside the network: what layers hold (weights, feature maps, activation masks) and what
their units respond to (feature visualization by optimization).

Tensors in, tensors out; pictures are drawn by ``convscope.render``. Each section below belongs
to one module; add a line to your own section only.
"""

# --- filters and activations (filters.py, activations.py) ---
from .activations import ActivationMask, FeatureMaps, activation_mask, feature_maps
from .filters import FilterTiles, conv_layers, filter_tiles

# --- feature visualization (objectives.py, params.py, transforms.py, optimize.py) ---
from .objectives import (
    Context,
    Objective,
    channel,
    deepdream,
    direction,
    diversity,
    logit,
    neuron,
    probability,
)
from .optimize import Optimized, Step, Visualization, evaluate, optimize_images, visualize
from .params import FourierImage, ImageParam, PixelImage, image_param
from .transforms import (
    Blur,
    Compose,
    Jitter,
    Pad,
    RandomAffine,
    RandomRotate,
    RandomScale,
    Transform,
    gaussian_blur,
    standard_transforms,
)

__all__ = [
    # filters and activations
    "ActivationMask",
    "FeatureMaps",
    "FilterTiles",
    "activation_mask",
    "conv_layers",
    "feature_maps",
    "filter_tiles",
]
__all__ += [  # feature visualization
    "Blur",
    "Compose",
    "Context",
    "FourierImage",
    "ImageParam",
    "Jitter",
    "Objective",
    "Optimized",
    "Pad",
    "PixelImage",
    "RandomAffine",
    "RandomRotate",
    "RandomScale",
    "Step",
    "Transform",
    "Visualization",
    "channel",
    "deepdream",
    "direction",
    "diversity",
    "evaluate",
    "gaussian_blur",
    "image_param",
    "logit",
    "neuron",
    "optimize_images",
    "probability",
    "standard_transforms",
    "visualize",
]
