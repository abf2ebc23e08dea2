"""Tasks: the jobs a user asks for, as typed functions that return dataclasses.

Each module joins ``data`` (loading), ``model``, ``methods`` and ``render`` for one job, with no
argparse and no printing; long jobs report progress through an optional callback. The CLI, the
Python API (``convscope.explain`` ...) and the web app all call these, so every surface gives the
same answer.
"""

from .atlas import Neighbor, Patch, atlas_model, find_neighbors, top_patches
from .explain import Explanation, explain
from .inputs import Images, ImageSource, as_images, model_inputs
from .predict import Prediction, predict
from .retrofit import load_cam_head, retrofit_cam, save_cam_head
from .scan import scan_dataset

__all__ = [
    "Explanation", "ImageSource", "Images", "Neighbor", "Patch", "Prediction", "as_images",
    "atlas_model", "explain", "find_neighbors", "load_cam_head", "model_inputs", "predict",
    "retrofit_cam", "save_cam_head", "scan_dataset", "top_patches",
]
