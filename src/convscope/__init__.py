"""convscope: see inside a convolutional network and explain its decisions.

    import convscope
    model = convscope.load_model()                      # EfficientNet-Lite0, ImageNet
    x = model.preprocess(convscope.load_image("sample:cat"))
    result = convscope.explain(model, x, method="gradcam", target="Egyptian cat")
    result.save("cat_gradcam.png")
"""

from .api import Prediction, load_cam_head, predict, retrofit_cam, save_cam_head
from .atlas_tools import find_neighbors, top_patches
from .data import list_samples, load_folder, load_image, load_images
from .data.atlas import Atlas
from .data.datasets import open_dataset
from .errors import (
    BadArgument,
    BadImage,
    BadLayer,
    BadModel,
    BadTarget,
    ConvscopeError,
    MethodFailed,
    MissingDependency,
)
from .explanation import Explanation, explain
from .methods.dataset import project
from .methods.features import visualize
from .methods.registry import method_names
from .methods.synthesis import (
    fgsm,
    fool,
    invert,
    pgd,
    stylize,
    synthesize_texture,
    train_fast_style,
    transfer_style,
)
from .model import Model, Preprocess, capture, list_layers, load_model, select
from .scanning import scan_dataset

__version__ = "0.1.0"

__all__ = [
    "Atlas",
    "BadArgument",
    "BadImage",
    "BadLayer",
    "BadModel",
    "BadTarget",
    "ConvscopeError",
    "Explanation",
    "MethodFailed",
    "MissingDependency",
    "Model",
    "Prediction",
    "Preprocess",
    "capture",
    "explain",
    "fgsm",
    "find_neighbors",
    "fool",
    "invert",
    "list_layers",
    "list_samples",
    "load_cam_head",
    "load_folder",
    "load_image",
    "load_images",
    "load_model",
    "method_names",
    "open_dataset",
    "pgd",
    "predict",
    "project",
    "retrofit_cam",
    "save_cam_head",
    "scan_dataset",
    "select",
    "stylize",
    "synthesize_texture",
    "top_patches",
    "train_fast_style",
    "transfer_style",
    "visualize",
]
