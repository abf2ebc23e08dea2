"""What a network's features can generate: adversarial examples, fooling images, feature
inversions, textures and styles (optimization-based), and fast style transfer.

Tensors in, tensors out. Imports are one sorted block (ruff); each module's names are listed in
its own ``__all__`` section below: add a line to your own section only.
"""

from .adversarial import Adversarial, fgsm, pgd
from .budget import on_grid, project_to_budget, quantize
from .fast_style import (
    FastStyleNet,
    PerceptualLoss,
    load_fast_style,
    save_fast_style,
    stylize,
    train_fast_style,
)
from .fooling import Fooling, fool
from .inversion import Inversion, invert
from .losses import (
    FeatureExtractor,
    StyleLayers,
    content_loss,
    default_style_layers,
    feature_distance,
    gram_matrix,
    gram_targets,
    imagenet_normalize,
    style_loss,
)
from .style import Stylized, transfer_style
from .texture import Texture, synthesize_texture

__all__ = [  # feature losses (losses.py)
    "FeatureExtractor",
    "StyleLayers",
    "content_loss",
    "default_style_layers",
    "feature_distance",
    "gram_matrix",
    "gram_targets",
    "imagenet_normalize",
    "style_loss",
]

__all__ += [  # optimization-based synthesis (adversarial, budget, fooling, inversion, texture, style)
    "Adversarial", "Fooling", "Inversion", "Stylized", "Texture", "fgsm", "fool", "invert", "on_grid",
    "pgd", "project_to_budget", "quantize", "synthesize_texture", "transfer_style",
]

# --- fast style transfer (fast_style.py, transformer.py, checkpoint.py) ---
__all__ += ["FastStyleNet", "PerceptualLoss", "load_fast_style", "save_fast_style", "stylize",
            "train_fast_style"]
