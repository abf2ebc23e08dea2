"""convscope: see inside a convolutional network and explain its decisions.

    import convscope
    model = convscope.load_model()                      # EfficientNet-Lite0, ImageNet
    x = model.preprocess(convscope.load_image("sample:cat"))
    result = convscope.explain(model, x, method="gradcam", target="Egyptian cat")
    result.save("cat_gradcam.png")
"""

from .api import Prediction, predict
from .data import list_samples, load_folder, load_image, load_images
from .errors import (
    BadArgument,
    BadImage,
    BadLayer,
    BadModel,
    BadTarget,
    ConvscopeError,
    MissingDependency,
)
from .explanation import Explanation, explain
from .methods.registry import method_names
from .model import Model, Preprocess, capture, list_layers, load_model, select

__version__ = "0.1.0"

__all__ = [
    "BadArgument",
    "BadImage",
    "BadLayer",
    "BadModel",
    "BadTarget",
    "ConvscopeError",
    "Explanation",
    "MissingDependency",
    "Model",
    "Prediction",
    "Preprocess",
    "capture",
    "explain",
    "list_layers",
    "list_samples",
    "load_folder",
    "load_image",
    "load_images",
    "load_model",
    "method_names",
    "predict",
    "select",
]
