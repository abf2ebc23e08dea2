"""Re-parameterized copies: parallel conv + BN branches merged into one conv, by the network's own code.

Structural re-parameterization (RepVGG, Ding et al. 2021, "RepVGG: Making VGG-style ConvNets Great
Again", Sec. 3.3; MobileOne, FastViT, GhostNet-V2, RepViT, LeViT's conv + BN pairs) trains a block as
parallel branches whose outputs are summed (a kxk conv + BN, a 1x1 conv + BN, a BN identity) and
merges them into one kxk conv for inference: the same function, written as one layer. Methods that
follow the structure of the graph do not see the two forms alike: LRP splits relevance at a sum in
proportion to its operands, so branches that nearly cancel get huge opposite shares that their
biases then absorb unevenly (LRP-epsilon on timm's ``repvgg_a0`` returned 1e24 times the logit),
while the merged conv conserves as any conv does. Merging for the duration of a call is a
canonizer in zennit's sense (``zennit.canonizers``), like the batch-norm folding of
:mod:`convscope.model.fold`.

Modules that can merge themselves say so by timm's protocol (``timm.models.reparameterize_model``):
``fuse()`` returns the merged module, ``reparameterize()`` / ``switch_to_deploy()`` merge in place.
They run on a full deep copy in eval mode (their code may write into the weights it merges, so the
copy shares no storage with the user's network), and the copy is kept only if it computes the same
output as the network (:func:`~convscope.model.fast.same_output`); otherwise, or if a merge fails,
there is no copy and the caller goes on with the network as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .fast import same_output
from .fold import inference_copy

MERGES = ("fuse", "reparameterize", "switch_to_deploy")
"""Methods by which a module merges its branches (timm's names; ``fuse`` returns the new module)."""


def _merger(module: nn.Module) -> str | None:
    return next((name for name in MERGES if callable(getattr(module, name, None))), None)


def can_merge(net: nn.Module) -> bool:
    """Whether some module of ``net`` offers to merge its branches."""
    return any(_merger(m) is not None for m in net.modules())


def _merge_children(parent: nn.Module) -> None:
    for name, child in list(parent.named_children()):
        how = _merger(child)
        if how == "fuse":
            fused = getattr(child, how)()
            if isinstance(fused, nn.Module):
                setattr(parent, name, fused)
                child = fused
        elif how is not None:
            getattr(child, how)()
        _merge_children(child)


def reparameterized(net: nn.Module, run: Callable[[nn.Module], object]) -> nn.Module | None:
    """A deep copy of ``net`` in eval mode with every mergeable module merged, or ``None``.

    ``run(module)`` computes an output of a network on the call's own input (a few rows are
    enough); the copy is returned only when its output equals the unmerged network's. ``None``
    also when nothing in ``net`` merges or a merge raises. The user's module is not touched.
    """
    if not can_merge(net):
        return None
    plain = inference_copy(net)
    twin = copy.deepcopy(plain)  # fresh storage: merges may write into the weights they read
    try:
        _merge_children(twin)
        for m in twin.modules():
            m.training = False
        with torch.no_grad():
            same = same_output(run(twin), run(plain))
    except Exception:  # a merge this network's state does not allow: use it unmerged
        return None
    return twin if same else None
