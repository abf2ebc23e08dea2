"""TCAV: Testing with Concept Activation Vectors (Kim et al. 2018).

For a concept (a set of example images), a layer ``l`` and a class ``k``:

- the CAV ``v`` is the normal of a linear classifier of layer ``l``'s activations, concept
  examples versus a random set (:mod:`.cav`);
- the conceptual sensitivity of an input ``x`` is the directional derivative
  ``S(x) = grad_{h_l} f_k(h_l(x)) . v`` of the class logit along the CAV (Eq. 1);
- the TCAV score is the fraction of the class's inputs with ``S(x) > 0`` (Eq. 2).

Significance (Sec. 3.3): the concept is fitted against K random sets (K runs), and a reference
random set against the same K sets (random versus random); a two-sided t-test compares the K
concept scores with the K random scores, Bonferroni-corrected over every concept and layer
tested in one call. A concept passes when its corrected p-value is below ``significance``; it
is *positive* for the class when its mean score is also above the random mean.

Cost: every image goes through the network once. The examples' activations come from one
forward pass per batch (stopped after the deepest layer); the class inputs' gradients at every
layer from one forward and one backward per batch. All CAVs of a layer are fitted together.

Shapes: images (N, C, H, W) model inputs; scores (concepts, layers, K).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor, nn

from ...errors import BadArgument
from ...model.capture import capture, forward_until
from ...model.guard import guarded
from ...model.targets import select
from .cav import fit_cavs

MIN_RANDOM_SETS = 3
"""A reference random set and two runs: the fewest a t-test can compare (the paper uses >= 10 runs)."""
MIN_EXAMPLES = 2
"""Per concept or random set: one example to fit and one to check the CAV on."""
Progress = Callable[[str, int, int], None]


@dataclass
class TCAVScores:
    """TCAV of several concepts at several layers for one class."""

    concepts: list[str]
    layers: list[str]
    target: int
    scores: Tensor
    """(concepts, layers, K) TCAV score of each concept against each random set."""
    random_scores: Tensor
    """(layers, K) the reference random set's scores against the same K sets."""
    accuracy: Tensor
    """(concepts, layers, K) held-out accuracy of each CAV."""
    random_accuracy: Tensor
    """(layers, K) held-out accuracy of the random-versus-random CAVs."""
    p_values: Tensor
    """(concepts, layers) two-sided t-test of ``scores`` against ``random_scores``, uncorrected."""
    corrected: Tensor
    """(concepts, layers) ``p_values`` times the number of tests (Bonferroni), at most 1."""
    significance: float
    cavs: dict[str, Tensor]
    """Per layer (concepts + 1, K, F) unit CAVs; the last row is random versus random."""
    inputs: int
    """How many class inputs the scores are fractions of."""

    @property
    def mean(self) -> Tensor:
        """(concepts, layers) mean score over the K runs."""
        return self.scores.mean(-1)

    @property
    def random_mean(self) -> Tensor:
        """(layers,) mean random-versus-random score."""
        return self.random_scores.mean(-1)

    @property
    def significant(self) -> Tensor:
        """(concepts, layers) bool: corrected p-value below ``significance``."""
        return self.corrected < self.significance

    @property
    def positive(self) -> Tensor:
        """(concepts, layers) bool: significant and above the random scores."""
        return self.significant & (self.mean > self.random_mean)


def layer_activations(model: nn.Module, images: Tensor, layers: Sequence[str],
                      batch_size: int = 64) -> dict[str, Tensor]:
    """Each layer's flattened activations (N, F) of ``images``: one forward pass per batch."""
    parts: dict[str, list[Tensor]] = {name: [] for name in layers}
    with guarded(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            acts = forward_until(model, images[start:start + batch_size], list(layers))
            for name in layers:
                parts[name].append(acts[name].flatten(1))
    return {name: torch.cat(p) for name, p in parts.items()}


def layer_gradients(model: nn.Module, images: Tensor, target: int, layers: Sequence[str],
                    batch_size: int = 64) -> dict[str, Tensor]:
    """d logit_target / d activation (N, F) at every layer: one forward and backward per batch."""
    parts: dict[str, list[Tensor]] = {name: [] for name in layers}
    with guarded(model):
        for start in range(0, len(images), batch_size):
            with capture(model, list(layers), grads=True) as record:
                scores = select(model(images[start:start + batch_size]), target)
                grads = record.gradients(scores)
            for name in layers:
                parts[name].append(grads[name].flatten(1))
    return {name: torch.cat(p) for name, p in parts.items()}


def check_sets(concepts: Mapping[str, Tensor], randoms: Sequence[Tensor]) -> None:
    """One line for what TCAV cannot test: too few random sets or examples, or no concept."""
    if not concepts:
        raise BadArgument("TCAV needs at least one concept: give concepts={'name': images}")
    if len(randoms) < MIN_RANDOM_SETS:
        raise BadArgument(f"TCAV got {len(randoms)} random set(s); give at least {MIN_RANDOM_SETS} (one "
                          "reference and two runs for the t-test; the paper uses 10 runs or more)")
    named = [*(f"concept {k!r}" for k in concepts), *(f"random set {i}" for i in range(len(randoms)))]
    for name, images in zip(named, [*concepts.values(), *randoms]):
        if len(images) < MIN_EXAMPLES:
            raise BadArgument(f"TCAV {name} has {len(images)} image(s); give at least {MIN_EXAMPLES} "
                              "(one to fit its CAV, one to check it), better 30 or more")


def tcav(model: nn.Module, concepts: Mapping[str, Tensor], randoms: Sequence[Tensor], inputs: Tensor,
         target: int, layers: Sequence[str], *, alpha: float = 0.01, test_fraction: float = 1 / 3,
         seed: int = 0, significance: float = 0.05, batch_size: int = 64,
         progress: Progress | None = None) -> TCAVScores:
    """TCAV scores of ``concepts`` for class ``target`` at ``layers`` (module docstring).

    Args:
        concepts: name -> (n, C, H, W) model inputs showing the concept.
        randoms: random sets of model inputs; the first is the reference for random versus random,
            the other K are the runs every concept is fitted against.
        inputs: (N, C, H, W) model inputs of the class (the TCAV score is a fraction of them).
        alpha: L2 weight of the CAVs' logistic regression; ``test_fraction`` of each set checks it.
        seed: seeds the fit/held-out split of every CAV.
    """
    check_sets(concepts, randoms)
    if len(inputs) == 0:
        raise BadArgument("TCAV needs at least one input of the class to score")
    names, layers = list(concepts), list(layers)
    sets = [*concepts.values(), *randoms]
    ends = torch.tensor([len(s) for s in sets]).cumsum(0).tolist()
    rows = [torch.arange(end - len(s), end) for s, end in zip(sets, ends)]
    report = progress or (lambda *_: None)
    report("activations", 0, 2)
    acts = layer_activations(model, torch.cat(sets), layers, batch_size)
    report("gradients", 1, 2)
    grads = layer_gradients(model, inputs, target, layers, batch_size)
    report("cavs", 2, 2)
    c, k = len(names), len(randoms) - 1
    pairs = [(i, c + 1 + j) for i in range(c) for j in range(k)] + [(c, c + 1 + j) for j in range(k)]
    scores = torch.zeros(c + 1, len(layers), k)
    accuracy = torch.zeros(c + 1, len(layers), k)
    cavs = {}
    fits = fit_cavs([acts[layer] for layer in layers], rows, pairs, alpha=alpha,
                    test_fraction=test_fraction, seed=seed)
    for li, (layer, fitted) in enumerate(zip(layers, fits)):
        sensitivity = grads[layer].double() @ fitted.vectors.double().T  # (N, P)
        scores[:, li] = (sensitivity > 0).float().mean(0).reshape(c + 1, k)
        accuracy[:, li] = fitted.accuracy.float().reshape(c + 1, k)
        cavs[layer] = fitted.vectors.reshape(c + 1, k, -1)
    p = torch.tensor([[two_sided_p(scores[i, li], scores[c, li]) for li in range(len(layers))]
                      for i in range(c)]).reshape(c, len(layers))
    return TCAVScores(names, layers, int(target), scores[:c], scores[c], accuracy[:c], accuracy[c],
                      p, (p * p.numel()).clamp(max=1.0), significance, cavs, len(inputs))


def two_sided_p(a: Tensor, b: Tensor) -> float:
    """Two-sided p-value of Student's t-test that ``a`` and ``b`` share a mean (equal variances,
    as Kim et al.); two constant samples differ surely (p = 0) or not at all (p = 1)."""
    if float(a.var()) == 0 and float(b.var()) == 0:
        return 1.0 if float(a.mean()) == float(b.mean()) else 0.0
    with warnings.catch_warnings():  # one constant sample: scipy warns of precision it does not lose
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a.double().numpy(), b.double().numpy()).pvalue)
    return p if math.isfinite(p) else 1.0
