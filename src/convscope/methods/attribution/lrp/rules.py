"""LRP rules for the layers that carry weights: convolutions and dense layers.

Each rule redistributes the relevance ``R_k`` of an output unit over its inputs ``j`` in proportion
to modified contributions ``z_jk`` (Montavon, Binder, Lapuschkin, Samek & Müller 2019, "Layer-Wise
Relevance Propagation: An Overview", Sec. 10.2.2, general rule)::

    R_j = sum_k  x_j rho(w_jk) / (sum_j x_j rho(w_jk) + rho(b_k) (+- eps))  R_k

* :class:`Epsilon` -- LRP-eps (Bach et al. 2015, "On Pixel-Wise Explanations ...", PLoS ONE, Eq. 58;
  Montavon et al. 2019 Sec. 10.2.1): rho = identity, ``eps`` added with the denominator's sign.
  eps -> 0 is LRP-0, which equals gradient x input on a ReLU network.
* :class:`Gamma` -- LRP-gamma (Montavon et al. 2019 Sec. 10.2.1): rho(w) = w + gamma w+, favouring
  positive contributions. Generalized to signed inputs as in zennit (Andéol et al. 2021): outputs
  z > 0 use (x+, w + gamma w+) and (x-, w + gamma w-), outputs z < 0 the mirrored pair.
* :class:`ZPlus` -- z+ (Montavon et al. 2017, "Explaining nonlinear classification decisions with
  deep Taylor decomposition", Pattern Recognition): only positive contributions x+ w+ (and x- w-).
* :class:`AlphaBeta` -- LRP-alpha-beta (Bach et al. 2015, Eq. 60): alpha times the share of the
  positive contributions minus beta times that of the negative ones, alpha - beta = 1.
* :class:`ZBox` -- z^B for the input layer (Montavon et al. 2017; 2019 Sec. 10.3.2): pixels bounded
  by ``low <= x <= high``; contributions x w - low w+ - high w-.
* :class:`Flat` -- (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors"): every input in
  the receptive field gets an equal share, whatever its value and weight.

Implementation (the "gradient trick" zennit uses): a rule is a few *terms*, each a forward pass
of the layer's own function (``F.conv2d`` with its stride, padding, groups; ``F.linear``) on a
modified input with modified parameters. The terms run during the forward pass with their own
small autograd graphs; in the backward pass one ``autograd.grad`` through them gives
``rho(W)^T s`` for ``s = R / denominator``, and the relevance is ``sum_terms input * gradient``.
Parameters are modified as new tensors, never in place: the user's modules are not touched.
Stabilizers follow zennit: ``z + eps * sign(z)`` with sign(0) = +1 (default ``eps`` = 1e-6). An
absolute 1e-6 swallows the signal of a layer whose outputs are themselves ~1e-6 (deep networks at
random init, badly scaled inputs): with ``LayerCall.relative`` the stabilizers are multiplied by the
largest |output| of the layer for each sample (:meth:`LayerCall.eps`), so that only their ratio
to the signal matters.

Shapes: a rule maps the output relevance (shape of the layer output) to the input relevance
(shape of the layer input), batch by batch; nothing mixes samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ....errors import BadArgument

LayerFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""The layer's own function with its call's other arguments bound: ``fn(x, weight, bias)``."""


def stabilize(z: Tensor, eps: float | Tensor) -> Tensor:
    """``z + eps * sign(z)``, sign(0) = +1: a denominator that is never zero."""
    step = torch.as_tensor(eps, dtype=z.dtype, device=z.device)
    return z + torch.where(z >= 0, step, -step)


def signal_scaled(value: float, z: Tensor) -> Tensor:
    """``value`` times the largest |z| of each sample, shaped (B, 1, ...) to broadcast against z."""
    scale = z.detach().abs().flatten(1).amax(1).clamp(min=torch.finfo(z.dtype).tiny)
    return value * scale.view(-1, *[1] * (z.ndim - 1))


def _pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


@dataclass
class LayerCall:
    """One call of a conv/dense layer in the forward pass, as a rule sees it.

    ``nonneg`` says the input has no negative entry (after a rectifier): rules then skip the
    terms for x- (they are zero), which halves their cost. ``low``/``high`` are the input bounds
    that :class:`ZBox` uses when none were given to it (the model's normalized pixel range).
    ``relative`` scales the stabilizers by the signal (:meth:`eps`).
    """

    fn: LayerFn
    x: Tensor
    weight: Tensor
    bias: Tensor | None
    name: str | None = None
    nonneg: bool = False
    low: Tensor | None = None
    high: Tensor | None = None
    relative: bool = False

    def eps(self, value: float, z: Tensor) -> float | Tensor:
        """The stabilizer for denominators ``z``: ``value``, or ``value`` times the largest |z| of
        each sample when the stabilizers are relative."""
        return signal_scaled(value, z) if self.relative else value

    def output(self) -> Tensor:
        """The layer's unmodified output."""
        return self.fn(self.x, self.weight, self.bias)


@dataclass
class Terms:
    """Modified forward passes of one layer, kept for one vector-Jacobian product each.

    Terms with the same ``key`` share one input leaf: their gradients add up before the
    multiplication by the input, as the rules' sums over terms require.
    """

    layer: LayerCall
    leaves: dict[str, Tensor] = field(default_factory=dict)
    outputs: list[Tensor] = field(default_factory=list)

    def run(self, key: str, inp: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Forward ``layer.fn(inp, weight, bias)`` recording a graph back to the ``key`` leaf."""
        leaf = self.leaves.get(key)
        if leaf is None:
            leaf = self.leaves[key] = inp.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.layer.fn(leaf, weight, bias)
        self.outputs.append(out)
        return out.detach()

    def relevance(self, grad_outputs: list[Tensor]) -> Tensor:
        """``sum_keys leaf * d(sum_t <out_t, grad_t>)/d leaf``: the input relevance."""
        leaves = list(self.leaves.values())
        grads = torch.autograd.grad(self.outputs, leaves, grad_outputs, allow_unused=True)
        total: Tensor | None = None
        for leaf, grad in zip(leaves, grads):
            if grad is not None:
                part = leaf.detach() * grad
                total = part if total is None else total + part
        assert total is not None, "a rule produced no term"
        return total


Backward = Callable[[Tensor], Tensor]
"""Output relevance -> input relevance of one layer call."""


class LayerRule:
    """How a conv/dense layer passes relevance back; subclasses implement :meth:`forward`."""

    name: ClassVar[str] = "rule"

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        """The layer's output and the function that maps its relevance back to the input."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if isinstance(v, (int, float)))
        return f"{type(self).__name__}({params})"


def _scaled(terms: Terms, scales: list[Tensor]) -> Backward:
    """Backward with grad_output_t = R * scales[t] (scales precomputed in the forward pass)."""

    def back(r: Tensor) -> Tensor:
        products: dict[int, Tensor] = {}  # terms often share a scale: one product each
        return terms.relevance([products.setdefault(id(s), r * s) if id(s) not in products
                                else products[id(s)] for s in scales])

    return back


class Epsilon(LayerRule):
    """LRP-eps: R_j = sum_k x_j w_jk / (z_k + eps sign z_k) R_k (bias absorbs its share)."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6) -> None:
        _check_nonneg("epsilon", epsilon)
        self.epsilon = epsilon

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        terms = Terms(layer)
        z = terms.run("x", layer.x, layer.weight, layer.bias)
        return z, _scaled(terms, [stabilize(z, layer.eps(self.epsilon, z)).reciprocal_()])


class Gamma(LayerRule):
    """LRP-gamma: weights w + gamma w+ (w + gamma w- for negative outputs), zennit's generalization."""

    name = "gamma"

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        _check_nonneg("gamma", gamma)
        _check_nonneg("stabilizer", stabilizer)
        self.gamma, self.stabilizer = gamma, stabilizer

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        w, b, g = layer.weight, layer.bias, self.gamma
        up_w, up_b = w + g * w.clamp(min=0), None if b is None else b + g * b.clamp(min=0)
        down_w, down_b = w + g * w.clamp(max=0), None if b is None else b + g * b.clamp(max=0)
        terms = Terms(layer)
        x_pos = layer.x if layer.nonneg else layer.x.clamp(min=0)
        up = terms.run("x+", x_pos, up_w, up_b)
        down = terms.run("x+", x_pos, down_w, down_b)
        if not layer.nonneg:  # negative inputs pair with the mirrored weights, without bias
            x_neg = layer.x.clamp(max=0)
            up = up + terms.run("x-", x_neg, down_w, None)
            down = down + terms.run("x-", x_neg, up_w, None)
        # w+ + w- = w, so up + down = (2 + gamma) z: the output without a third convolution.
        z = (up + down).div_(2 + g)
        # up = z + gamma * (positive parts) >= z, so where z > 0 the stabilizer's sign is +.
        eps = layer.eps(self.stabilizer, z)
        s_up = torch.where(z > 0, (up + eps).reciprocal_(), 0)
        s_down = torch.where(z < 0, (down - eps).reciprocal_(), 0)
        scales = [s_up, s_down] if layer.nonneg else [s_up, s_down, s_up, s_down]
        return z, _scaled(terms, scales)


class AlphaBeta(LayerRule):
    """LRP-alpha-beta: alpha x positive shares - beta x negative shares (alpha - beta = 1)."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        _check_nonneg("beta", beta)
        _check_nonneg("stabilizer", stabilizer)
        if abs(alpha - beta - 1) > 1e-9:
            raise BadArgument(f"alpha={alpha}, beta={beta}: LRP-alpha-beta needs alpha - beta = 1 "
                              "(e.g. alpha=2, beta=1 or alpha=1, beta=0) to conserve relevance")
        self.alpha, self.beta, self.stabilizer = alpha, beta, stabilizer

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        w, b = layer.weight, layer.bias
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        terms = Terms(layer)
        x_pos = layer.x if layer.nonneg else layer.x.clamp(min=0)
        x_neg = None if layer.nonneg else layer.x.clamp(max=0)
        pos = terms.run("x+", x_pos, w_pos, _pos(b))
        if x_neg is not None:
            pos = pos + terms.run("x-", x_neg, w_neg, None)
        # pos >= 0 and neg <= 0 by construction: the stabilizer's sign is known.
        scales = [(pos + layer.eps(self.stabilizer, pos)).reciprocal_().mul_(self.alpha)] * len(terms.outputs)
        if not self.beta:
            return layer.output(), _scaled(terms, scales)
        neg = terms.run("x+", x_pos, w_neg, _neg(b))
        if x_neg is not None:
            neg = neg + terms.run("x-", x_neg, w_pos, None)
        s_neg = (neg - layer.eps(self.stabilizer, neg)).reciprocal_().mul_(-self.beta)
        scales += [s_neg] * (len(terms.outputs) - len(scales))
        return pos + neg, _scaled(terms, scales)  # w+ + w- = w and b+ + b- = b: pos + neg = z


class ZPlus(AlphaBeta):
    """z+: only positive contributions (x+ w+ and x- w-): alpha-beta with alpha=1, beta=0."""

    name = "zplus"

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(1.0, 0.0, stabilizer)


class ZBox(LayerRule):
    """z^B for bounded inputs low <= x <= high: contributions x w - low w+ - high w-.

    ``low``/``high`` broadcast against the layer input (e.g. shape (1, C, 1, 1)); ``None`` takes
    the bounds the method derives from the model's normalization of pixel values [0, 1].
    """

    name = "zbox"

    def __init__(self, low: Tensor | float | None = None, high: Tensor | float | None = None,
                 stabilizer: float = 1e-6) -> None:
        _check_nonneg("stabilizer", stabilizer)
        self.low, self.high, self.stabilizer = low, high, stabilizer

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        low = _bound("low", self.low if self.low is not None else layer.low, layer.x)
        high = _bound("high", self.high if self.high is not None else layer.high, layer.x)
        w, b = layer.weight, layer.bias
        terms = Terms(layer)
        z = terms.run("x", layer.x, w, b)
        # Bias parts cancel: (w x + b) - (w+ low + b+) - (w- high + b-) has no bias left (zennit).
        den = z - terms.run("low", low, w.clamp(min=0), _pos(b)) - terms.run("high", high, w.clamp(max=0),
                                                                                _neg(b))
        s = stabilize(den, layer.eps(self.stabilizer, den)).reciprocal_()
        return z, _scaled(terms, [s, *[s.neg()] * 2])


class Flat(LayerRule):
    """Flat: equal shares for every input of a unit's receptive field (inputs and weights as ones)."""

    name = "flat"

    def __init__(self, stabilizer: float = 1e-6) -> None:
        _check_nonneg("stabilizer", stabilizer)
        self.stabilizer = stabilizer

    def forward(self, layer: LayerCall) -> tuple[Tensor, Backward]:
        z = layer.output()
        terms = Terms(layer)
        count = terms.run("ones", torch.ones_like(layer.x), torch.ones_like(layer.weight), None)
        return z, _scaled(terms, [(count + self.stabilizer).reciprocal_()])  # count > 0


def _bound(name: str, value: Tensor | float | None, x: Tensor) -> Tensor:
    if value is None:
        raise BadArgument(f"ZBox rule without {name} bound: pass ZBox(low=..., high=...) or use it on "
                          "the input layer, whose bounds come from the model's normalization")
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:  # a full tensor: convolutions of stride-0 views take a slow path
        return bound.expand_as(x).contiguous()
    except RuntimeError as err:
        raise BadArgument(f"ZBox {name} bound of shape {tuple(bound.shape)} does not broadcast to the "
                          f"layer input {tuple(x.shape)}; give ZBox(low=..., high=...) that fit") from err


def _check_nonneg(name: str, value: float) -> None:
    if not value >= 0:
        raise BadArgument(f"{name}={value!r}: must be a number >= 0")
