"""Layer-wise relevance propagation, the registered method ``lrp``.

Bach, Binder, Montavon, Klauschen, Müller & Samek 2015, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation" (PLoS ONE): the target score f(x) is
redistributed backwards, layer by layer, so that each layer's relevances sum to it
(conservation, Eq. 2: f(x) = ... = sum_d R_d^(l) = ... = sum_d R_d^(1)). Which rule a layer uses
follows Montavon et al. 2019 ("Layer-Wise Relevance Propagation: An Overview", Sec. 10.3) through a
composite (:mod:`.composites`); rules are in :mod:`.rules`, their routing in :mod:`.propagate`.

The relevance at the output is the target logit, placed at its class (one-hot times the logit;
for a callable target, ``logits * d target / d logits``). The network is canonized for the call,
on a deep copy (the user's model is never changed): blocks that merge their parallel conv + BN
branches into one conv do so (RepVGG, MobileOne, FastViT; :mod:`convscope.model.reparam`), since
relevance split between branches that nearly cancel is amplified without bound, and batch norms
that follow a convolution are folded into it (:func:`convscope.model.fold.fold_batchnorm`), so
that the rules see one affine layer, as LRP intends.

Conservation holds exactly (up to float error and the 1e-6 stabilizers) for networks without
biases built from conv/dense layers, elementwise activations (passed through, as zennit does:
ReLU, tanh, sigmoid, GELU, SiLU, ...), adds and pooling, with the epsilon, z+, gamma and z^B
rules; alpha-beta conserves where a unit has both positive and negative contributions. Biases
(also those a folded batch norm leaves) absorb their share, so on a real network the input
relevance sums to a fraction of the logit.

Three things are reported with a warning rather than silently returned:

* layers that break conservation (LayerNorm, attention, gating products, softmax inside the
  network): they keep their gradient, and the warning names them with the relevance they add or
  lose (see :mod:`.propagate`) when that exceeds :data:`GAP_TOLERANCE` of the target score;
* a map whose sum misses the target score by more than the score itself
  (:data:`TOTAL_TOLERANCE`), or is not finite, whatever the cause: biases that absorb amplified
  shares (summed branches that cancel, not merged), overflow; the warning names the conv/dense
  layers whose biases and stabilizers absorbed or added the most, with the amounts;
* an absolute stabilizer that is not small against a layer's outputs (deep networks at random
  init, whose activations shrink layer by layer): it absorbs the relevance, and the map tends to
  zero. ``relative_stabilizers=True`` multiplies every stabilizer by the largest |output| of its
  layer for each sample, so that only the ratio matters (zennit's are absolute, the default).

Shapes: (B, C, H, W) -> (B, C, H, W) relevance in model-input space, signed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ....errors import BadModel, warn
from ....model import Model, RuleBlock, backward_rule
from ....model.fold import fold_batchnorm
from ....model.reparam import reparameterized
from ....model.structured import pixel_bounds, run_net
from ....model.watch import Gap, gap_report
from ....types import Target
from ...registry import register
from ..base import Attribution
from .composites import CompositeName, RuleMap, RuleName, RuleOptions, composite_rules, refine
from .propagate import Propagation, RelevancePass
from .rules import LayerRule

GAP_TOLERANCE = 0.01
"""Relevance a watched layer may add or lose, relative to the target score, before a warning."""
TOTAL_TOLERANCE = 1.0
"""How far the map's sum may miss the target score, relative to it, before a warning. Biases
absorb their share by design (module notes), so a map summing to a fraction of the score is LRP's
answer; one off by more than the whole score (RepVGG's cancelling branches, 1e24 times it) is
dominated by what biases and stabilizers made up, not by the input."""


@register("lrp", family="decomposition", signed=True)
class LRP(Attribution):
    """Layer-wise relevance propagation (Bach et al. 2015) with zennit's composites of rules.

    Options: ``composite`` names the rules per layer (default ``"epsilon_gamma_box"``: z^B at the
    pixels, gamma in convolutions, epsilon in dense layers); ``rules`` refines it by layer name or
    kind, e.g. ``{"first": "flat", "_blocks.15": "epsilon", "linear": Epsilon(0.1)}``; ``epsilon``,
    ``gamma``, ``alpha``, ``beta`` and ``stabilizer`` set the numbers of rules named by string;
    ``relative_stabilizers`` scales every stabilizer by its layer's output (module notes).
    Warns, naming the layers, when a layer breaks conservation or a stabilizer swallows the signal.
    """

    needs_rules = True

    def __init__(
        self,
        model: Model,
        *,
        composite: CompositeName = "epsilon_gamma_box",
        rules: Mapping[str, LayerRule | RuleName] | None = None,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        alpha: float = 2.0,
        beta: float = 1.0,
        stabilizer: float = 1e-6,
        relative_stabilizers: bool = False,
    ) -> None:
        super().__init__(model)
        self.relative = bool(relative_stabilizers)
        self.options = options = RuleOptions(epsilon, gamma, alpha, beta, stabilizer)
        chosen = composite_rules(composite, options)
        self.rules: RuleMap = refine(chosen, rules, options, model) if rules else chosen
        self._folded: tuple[tuple, nn.Module] | None = None
        self.merged = False
        """Whether the last copy merged re-parameterizable branches (module notes)."""

    def folded(self, inputs: Tensor) -> nn.Module:
        """The network canonized: a deep copy, remade when the weights change.

        Modules that merge their parallel branches into one conv do so in the copy
        (:func:`~convscope.model.reparam.reparameterized`, checked on the first row of ``inputs``),
        then batch norms that follow a conv are folded into it. Copying costs time (hundreds of ms
        for EfficientNet-Lite0 on a CPU), so one copy is kept for as long as every parameter and
        buffer of the network is the same tensor with the same version (in-place updates,
        ``load_state_dict`` and optimizer steps bump it).
        """
        net = self.model.net
        key = (id(net), *((id(t), t._version, t.data_ptr(), t.device, t.dtype)
                          for t in (*net.parameters(), *net.buffers())))
        if self._folded is None or self._folded[0] != key:
            row = inputs[:1].detach()
            merged = reparameterized(net, lambda n: run_net(self.model, n, row))
            self.merged = merged is not None
            self._folded = (key, fold_batchnorm(net if merged is None else merged))
        return self._folded[1]

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Lowest and highest model input: pixel values 0 and 1 normalized (other inputs: their
        batch's range; see :func:`~convscope.model.structured.pixel_bounds`)."""
        if self.packing is not None:  # the first layer reads the first input (z^B is for it)
            first = self.packing.unpack(like)[0]
            return tuple(b.expand_as(first) for b in pixel_bounds(self.model, first))  # type: ignore[return-value]
        return pixel_bounds(self.model, like)

    @contextmanager
    def propagating(self, net: nn.Module, inputs: Tensor, *,
                    whole: bool = True) -> Iterator[tuple[RuleBlock, Propagation]]:
        """The block in which forward passes of ``net`` (the :meth:`folded` copy) on ``inputs``
        propagate relevance backwards under this method's rules; ``whole``: the forward runs to
        the output, so it must have seen a conv/dense layer."""
        low, high = self.bounds(inputs)
        prop = Propagation(self.rules, net, low, high, self.options.stabilizer, relative=self.relative)
        with backward_rule(RelevancePass(len(inputs)), overrides=prop.overrides(), net=net) as block:
            prop.where = lambda: block.module
            yield block, prop
        if whole and prop.layers == 0:
            raise BadModel("LRP saw no convolution or linear layer in the forward pass (a "
                           "TorchScript model runs below Python); pass an ordinary nn.Module")

    def start(self, logits: Tensor, target: Target) -> Tensor:
        """The relevance at the output: the target logit at its class (module notes)."""
        out = logits.detach().requires_grad_(True)
        (pick,) = torch.autograd.grad(self.scores(out, target).sum(), out)
        return pick * out.detach()

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        net = self.folded(inputs)
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            with self.propagating(net, x) as (block, prop):
                logits = run_net(self.model, net, x)
            self.logits = logits.detach()  # the folded copy's forward: explain() reads it
            start = self.start(logits, target)
            (relevance,) = torch.autograd.grad(logits, x, start)
        self._report(block.gaps, prop.swallowed, start.flatten(1).sum(1))
        self._report_total(block.gaps, prop.absorbed, relevance.flatten(1).sum(1), start.flatten(1).sum(1))
        return relevance

    def _report_total(self, gaps: list[Gap], absorbed: list[Gap], total: Tensor, score: Tensor) -> None:
        """Account for the map's sum: the target score minus it is what the routed calls kept
        (biases, constants, stabilizers: ``absorbed``) plus what the watched ones changed
        (``gaps``) plus what changed elsewhere. Warn when the sum misses the score by more than
        :data:`TOTAL_TOLERANCE` of it (or is not finite), naming the layers that kept the most,
        and when the rest exceeds :data:`GAP_TOLERANCE` of it: an operation without a rule that is
        not watched changed the relevance (a multiplication by a constant, a hand-written
        ``x @ W``), which is a break no bias explains."""
        scale = score.abs() + 1e-12
        missed = score - total
        miss = (missed.abs() / scale).nan_to_num(float("inf"))
        k = int(miss.argmax())
        if float(miss[k]) > TOTAL_TOLERANCE:
            layers = gap_report(absorbed, scale, "of the target score", 0.0)
            warn(f"LRP relevance is not conserved on {self.model.name!r}: the map sums to "
                 f"{float(total[k]):.3g} where the target score is {float(score[k]):.3g} (off "
                 f"by {float(miss[k]):.3g} times the score); the layers whose biases and "
                 "stabilizers absorb or add the most (relevance at their output minus at "
                 f"their input): {layers}")
        rest = missed.clone()
        for g in (*absorbed, *gaps):
            if g.gap.shape == rest.shape:
                rest = rest - g.gap.detach()
        ratio = (rest.abs() / scale).nan_to_num(float("inf"))
        k = int(ratio.argmax())
        if float(ratio[k]) > GAP_TOLERANCE and bool(torch.isfinite(total).all()):
            warn(f"LRP relevance is not conserved on {self.model.name!r}: operations that have "
                 "no LRP rule and are not watched (a multiplication by a constant, a "
                 f"hand-written x @ W) change its sum by {float(-rest[k]):+.3g} "
                 f"({100 * float(ratio[k]):.0f}% of the target score)")

    def _report(self, gaps: list[Gap], swallowed: list[tuple[str, float, float]], score: Tensor) -> None:
        """Warn about layers that break conservation and stabilizers that swallow the signal."""
        scale = score.abs() + 1e-12
        culprits = gap_report(gaps, scale, "of the target score", GAP_TOLERANCE)
        if culprits:
            warn(f"LRP relevance is not conserved on {self.model.name!r}: these layers change "
                 "its sum (relevance at their output minus at their inputs; they keep their "
                 f"gradient, having no LRP rule): {culprits}")
        if swallowed:
            name, largest, eps = min(swallowed, key=lambda item: item[1] / item[2])
            more = f" (and {len(swallowed) - 1} more layers)" if len(swallowed) > 1 else ""
            warn(f"LRP on {self.model.name!r}: the stabilizer {eps:g} is not small against the "
                 f"outputs of layer {name!r} (largest |output| {largest:.3g}){more}, so it "
                 "absorbs the relevance there and the map tends to zero; pass "
                 "relative_stabilizers=True (stabilizers scaled by each layer's outputs) or a "
                 "smaller epsilon and stabilizer")
