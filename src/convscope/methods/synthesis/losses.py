"""Feature losses shared by image synthesis: content, style (Gram matrices) and feature distance.

* Gatys, Ecker & Bethge 2015, "Texture Synthesis Using Convolutional Neural Networks" (Eq. 1-4)
  and 2016, "Image Style Transfer Using Convolutional Neural Networks" (Eq. 1, 3-5): the *style*
  of an image at layer ``l`` is the Gram matrix of its feature maps,
  ``G^l_ij = sum_k F^l_ik F^l_jk`` over the ``M_l = H*W`` positions (Eq. 3, 2016). We normalize it
  by ``N_l * M_l = C*H*W`` so values do not grow with the image size or channel count; Gatys' layer
  loss ``E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2`` (Eq. 4) is then ``C^2/4 * mse`` of our matrices.
  The content loss (2016, Eq. 1) is the squared error between feature maps, here a mean.
* Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them" (Eq. 1):
  the reconstruction loss ``||Phi(x) - Phi_0||^2 / ||Phi_0||^2``; :func:`feature_distance` is its
  square root, a relative Euclidean distance (0: identical features, 1: as far as zero features).

Every loss is per image, shape ``(B,)``, so one optimization can carry a batch of independent
problems. Targets (``(C, H, W)``, ``(C, C)`` or batched) broadcast over the batch.

:class:`FeatureExtractor` runs a network once on images in [0, 1] (applying the model's
normalization) and returns ``{layer: activation}``, hooking exactly the layers asked for and
stopping the forward after the deepest of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer
from ...model import Model, forward_until, guarded, layer_names, resolve_layer
from ...types import NormalizeFn

"""``normalize(images in [0, 1]) -> network input``."""


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix ``F F^T / (C*H*W)`` of feature maps (B, C, H, W) -> (B, C, C) (Gatys 2015, Eq. 1)."""
    if features.ndim != 4:
        raise BadArgument(f"gram_matrix needs (B, C, H, W) features, got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _per_image_mse(a: Tensor, b: Tensor) -> Tensor:
    b = b.to(a.dtype)
    if b.ndim == a.ndim - 1:
        b = b[None]
    if b.shape[1:] != a.shape[1:] or b.shape[0] not in (1, a.shape[0]):
        raise BadArgument(f"feature shapes differ: {tuple(a.shape)} vs target {tuple(b.shape)}; "
                          "the target must come from the same layer and image size")
    return (a - b).pow(2).flatten(1).mean(1)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between feature maps, per image (Gatys et al. 2016, Eq. 1), shape (B,).

    ``target`` is (C, H, W), (1, C, H, W) or (B, C, H, W): the content image's features.
    """
    return _per_image_mse(features, target)


def style_loss(features: Mapping[str, Tensor], targets: Mapping[str, Tensor],
               weights: Mapping[str, float] | None = None) -> Tensor:
    """``sum_l w_l * mse(G^l(x), A^l)`` per image (Gatys et al. 2016, Eq. 4-5), shape (B,).

    ``features``: this batch's activations by layer (B, C, H, W); ``targets``: the style's Gram
    matrices by layer, (C, C), (1, C, C) or (B, C, C) (see :func:`gram_targets`); ``weights``:
    per layer, default 1 each. Every layer in ``targets`` must be in ``features``.
    """
    if not targets:
        raise BadArgument("style_loss needs at least one layer's target Gram matrix")
    total: Tensor | None = None
    for layer, target in targets.items():
        if layer not in features:
            raise BadLayer(f"style layer {layer!r} has a target but no features were extracted for it")
        w = 1.0 if weights is None else float(weights.get(layer, 0.0))
        term = w * _per_image_mse(gram_matrix(features[layer]), target)
        total = term if total is None else total + term
    assert total is not None
    return total


def gram_targets(features: Mapping[str, Tensor], layers: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Detached Gram matrices (B, C, C) of the given (or all) layers: the targets of :func:`style_loss`."""
    names = list(features) if layers is None else list(layers)
    return {n: gram_matrix(features[n]).detach() for n in names}


def feature_distance(features: Tensor, target: Tensor, *, relative: bool = True) -> Tensor:
    """Euclidean distance ``||Phi(x) - Phi_0||`` per image, divided by ``||Phi_0||`` when ``relative``.

    Mahendran & Vedaldi 2015 (Eq. 1) normalize the squared loss by ``||Phi_0||^2``; this is its
    square root, so 0.1 means "features 10% away from the original's". Shape (B,).
    """
    target = target.to(features.dtype)
    target = target[None] if target.ndim == features.ndim - 1 else target
    if target.shape[1:] != features.shape[1:]:
        raise BadArgument(f"feature shapes differ: {tuple(features.shape)} vs {tuple(target.shape)}")
    dist = (features - target).flatten(1).norm(dim=1)
    if not relative:
        return dist
    return dist / target.flatten(1).norm(dim=1).clamp_min(1e-12)


class FeatureExtractor:
    """``extractor(images) -> {layer: (B, C, h, w) activation}`` for images (B, 3, H, W) in [0, 1].

    Runs ``model`` under :func:`~convscope.model.guarded` (eval mode, frozen parameters, both
    restored) with hooks on exactly ``layers``, stopping the forward after the deepest of them
    (:func:`~convscope.model.forward_until`). Gradients flow to the images. ``normalize`` maps
    [0, 1] images to network input: default the :class:`Model`'s own normalization, or identity
    for a plain ``nn.Module`` (pass e.g. ImageNet mean/std normalization explicitly).
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], *,
                 normalize: NormalizeFn | None = None) -> None:
        names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
        if not names:
            raise BadArgument("FeatureExtractor needs at least one layer")
        self.model, self.layers = model, tuple(names)
        self.resolved = [resolve_layer(model, n) for n in names]  # BadLayer early
        if normalize is not None:
            self.normalize: NormalizeFn = normalize
        elif isinstance(model, Model):
            self.normalize = model.normalize
        else:
            self.normalize = _identity

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadArgument(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        with guarded(self.model):
            got = forward_until(self.model, self.normalize(images), self.resolved)
        missing = [n for n, r in zip(self.layers, self.resolved) if r not in got]
        if missing:
            raise BadLayer(f"layer {missing[0]!r} was not reached by the forward pass")
        return {n: got[r] for n, r in zip(self.layers, self.resolved)}


def _identity(x: Tensor) -> Tensor:
    return x


def imagenet_normalize(images: Tensor) -> Tensor:
    """ImageNet mean/std normalization, for plain ``nn.Module`` feature networks (e.g. VGG)."""
    mean = torch.tensor((0.485, 0.456, 0.406), device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


@dataclass(frozen=True)
class StyleLayers:
    """Which layers carry content and style for a network (see :func:`default_style_layers`)."""

    content: str
    style: tuple[str, ...]


# EfficientNet-Lite0: the ReLU6 after the stem and after the expansion of blocks 1, 3, 5 and 9
# (resolutions 1/2, 1/2, 1/4, 1/8, 1/16 of the input), like VGG's relu1_1 ... relu5_1; content
# from the middle of the network (block 6 expansion, 1/16), like VGG's relu4_2.
LITE0_LAYERS = StyleLayers("_blocks.6._relu0", ("_relu_stem", "_blocks.1._relu0", "_blocks.3._relu0",
                                                "_blocks.5._relu0", "_blocks.9._relu0"))
# torchvision VGG16/19 ``features``: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 and relu4_2.
VGG19_LAYERS = StyleLayers("features.22", ("features.1", "features.6", "features.11", "features.20",
                                           "features.29"))
VGG16_LAYERS = StyleLayers("features.20", ("features.1", "features.6", "features.11", "features.18",
                                           "features.25"))


def default_style_layers(model: nn.Module) -> StyleLayers:
    """The content and style layers for EfficientNet-Lite0 or a torchvision VGG16/19.

    Other networks raise :class:`BadArgument` asking for explicit layers (``convscope layers``
    lists them).
    """
    names = set(layer_names(model))
    vgg = VGG19_LAYERS if "features.36" in names else VGG16_LAYERS  # VGG19 has 37 feature modules
    for choice in (LITE0_LAYERS, vgg):
        if {choice.content, *choice.style} <= names:
            return choice
    raise BadArgument("no default style/content layers for this model; give them explicitly "
                      "(run `convscope layers` to list the names)")
