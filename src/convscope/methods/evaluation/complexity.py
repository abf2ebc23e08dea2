"""How simple a map is: sparseness (Gini index) and complexity (entropy), from the map alone.

Both read the map's magnitude per pixel (channels summed in absolute value) at the input's
resolution, as the user sees it, so a 7x7 CAM and a 224x224 gradient are compared on the same grid.

Sparseness -- Chalasani et al. 2020, "Concise Explanations of Neural Networks using Adversarial
Training", Sec. 4 (the Gini index of Hurley & Rickard 2009): with the N magnitudes sorted
ascending, ``sum((2i - N - 1) a_i) / (N sum(a))``. 0 for a constant map, ``1 - 1/N`` (1 in the
limit) for a one-hot map; higher is sparser, better. An all-zero map scores 0. Quantus adds
1e-7 to every value first (a shift that moves its number by about 1e-7 / mean|a|).

Complexity -- Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based Model
Explanations", Sec. 3.2: the Shannon entropy (nats) of the fractional contributions
``|a_i| / sum|a|``. 0 for a one-hot map, ``log N`` for a constant one; lower is simpler, better.
An all-zero map scores 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .faithfulness import reduce_maps


def magnitudes(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """(B, N) float64 per-pixel magnitudes (channels' absolute values summed), resized to ``size``."""
    return reduce_maps(maps, "abs", size).flatten(1).double()


def sparseness(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """(B,) Gini index of each map's magnitudes (see the module doc)."""
    a = magnitudes(maps, size).sort(dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=a.dtype, device=a.device) - n - 1
    total = a.sum(1)
    return torch.where(total > 0, (a * weights).sum(1) / (n * total.clamp(min=1e-300)),
                       torch.zeros_like(total)).float()


def complexity(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """(B,) entropy of each map's fractional contributions (see the module doc)."""
    a = magnitudes(maps, size)
    p = a / a.sum(1, keepdim=True).clamp(min=1e-300)
    return -torch.special.xlogy(p, p).sum(1).float()
