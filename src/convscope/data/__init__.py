"""DATA: images in, (3, H, W) float tensors in [0, 1] out.

Loading of every source kind and format (``images``, ``arrays``), folders of images
(``folders``) and named sample photos (``samples``). Never imports ``convscope.methods`` or
``convscope.render``.
"""

from .arrays import from_array, from_tensor
from .folders import IMAGE_SUFFIXES, image_files, load_folder, load_labelled_folder
from .images import ImageSource, load_image, load_images
from .samples import SAMPLES, list_samples, load_sample

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLES",
    "ImageSource",
    "from_array",
    "from_tensor",
    "image_files",
    "list_samples",
    "load_folder",
    "load_image",
    "load_images",
    "load_labelled_folder",
    "load_sample",
]
