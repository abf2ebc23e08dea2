"""convscope: see inside a convolutional network and explain its decisions.

    import convscope
    model = convscope.load_model()                      # EfficientNet-Lite0, ImageNet
    x = model.preprocess(convscope.load_image("sample:cat"))
    result = convscope.explain(model, x, method="gradcam", target="Egyptian cat")
    result.save("cat_gradcam.png")

The jobs behind every command are plain functions of :mod:`convscope.tasks` (``report``,
``evaluate``, ``inversion`` ...); the most used are exported here. ``convscope.show_app(model)``
opens the web app in a notebook; it is imported on first use, so ``import convscope`` does not
import FastAPI.
"""

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
from .methods.dataset import project
from .methods.evaluation.metrics import metric_names
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
from .tasks.atlas import find_neighbors, top_patches
from .tasks.concepts import Concepts, concepts
from .tasks.concepts_dissect import DissectReport, dissect
from .tasks.concepts_tcav import TCAVReport, tcav
from .tasks.crp import ConceptRelevance, crp
from .tasks.evaluate import Evaluation, evaluate
from .tasks.explain import Explanation, explain
from .tasks.leaderboard import leaderboard
from .tasks.leaderboard_table import Leaderboard
from .tasks.predict import Prediction, predict
from .tasks.report import Report, report
from .tasks.retrofit import load_cam_head, retrofit_cam, save_cam_head
from .tasks.scan import scan_dataset

__version__ = "0.1.0"

__all__ = [
    "Atlas",
    "BadArgument",
    "BadImage",
    "BadLayer",
    "BadModel",
    "BadTarget",
    "ConceptRelevance",
    "Concepts",
    "ConvscopeError",
    "DissectReport",
    "Evaluation",
    "Explanation",
    "Leaderboard",
    "MethodFailed",
    "MissingDependency",
    "Model",
    "Prediction",
    "Preprocess",
    "Report",
    "TCAVReport",
    "capture",
    "concepts",
    "crp",
    "dissect",
    "evaluate",
    "explain",
    "fgsm",
    "find_neighbors",
    "fool",
    "invert",
    "leaderboard",
    "list_layers",
    "list_samples",
    "load_cam_head",
    "load_folder",
    "load_image",
    "load_images",
    "load_model",
    "method_names",
    "metric_names",
    "open_dataset",
    "pgd",
    "predict",
    "project",
    "report",
    "retrofit_cam",
    "save_cam_head",
    "scan_dataset",
    "select",
    "show_app",
    "stylize",
    "synthesize_texture",
    "tcav",
    "top_patches",
    "train_fast_style",
    "transfer_style",
    "visualize",
]


def __getattr__(name: str) -> object:
    """``show_app`` comes from the web package, imported only when it is first asked for."""
    if name == "show_app":
        from .web.notebook import show_app

        globals()["show_app"] = show_app
        return show_app
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"show_app"})
