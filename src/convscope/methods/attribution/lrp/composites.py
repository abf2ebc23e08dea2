"""Composites: which LRP rule each conv/dense layer of a network uses.

Montavon et al. 2019 ("Layer-Wise Relevance Propagation: An Overview", Sec. 10.3) recommend
different rules at different depths: LRP-0/eps near the output (dense layers), LRP-gamma or
z+/alpha-beta in the convolutional layers, and a rule that knows the input domain (z^B, flat)
at the pixels. The composites here are zennit's (``zennit.composites``) with its defaults:

================================  ===========  ==============  ============
composite                         first layer  conv layers     dense layers
================================  ===========  ==============  ============
``epsilon_gamma_box``             z^B          gamma (0.25)    eps (1e-6)
``epsilon_plus``                  (conv rule)  z+              eps
``epsilon_plus_flat``             flat         z+              eps
``epsilon_alpha2_beta1``          (conv rule)  alpha-beta 2/1  eps
``epsilon_alpha2_beta1_flat``     flat         alpha-beta 2/1  eps
``epsilon``                       (its kind)   eps             eps
================================  ===========  ==============  ============

The *first layer* is the first conv/dense call of the forward pass (the one that sees the pixels;
zennit takes the first convolution module in definition order, the same layer for a CNN). The
z^B bounds are the model's normalization of the pixel range [0, 1]. Alpha-beta composites use
the method's ``alpha``/``beta`` options (2 and 1 unless changed).

A custom mapping refines a composite: keys ``"first"``, ``"conv"``, ``"linear"`` replace that
part, any other key is a dotted layer name whose rule applies to that layer and every conv/dense
layer inside it (the longest matching name wins, before ``"first"``). Values are
:class:`~.rules.LayerRule` objects or rule names (``"epsilon"``, ``"gamma"``, ``"zplus"``,
``"alpha_beta"``, ``"zbox"``, ``"flat"``) built with the method's options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from torch import nn

from ....errors import BadArgument
from ....model.layers import get_layer
from .rules import AlphaBeta, Epsilon, Flat, Gamma, LayerRule, ZBox, ZPlus

CompositeName = Literal["epsilon_gamma_box", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                        "epsilon_alpha2_beta1_flat", "epsilon"]
RuleName = Literal["epsilon", "gamma", "zplus", "alpha_beta", "zbox", "flat"]
LayerKind = Literal["conv", "linear"]
KINDS = ("first", "conv", "linear")


@dataclass(frozen=True)
class RuleOptions:
    """The numbers rules are built with when named by string (zennit's defaults)."""

    epsilon: float = 1e-6
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def build(self, name: str) -> LayerRule:
        makers = {
            "epsilon": lambda: Epsilon(self.epsilon),
            "gamma": lambda: Gamma(self.gamma, self.stabilizer),
            "zplus": lambda: ZPlus(self.stabilizer),
            "alpha_beta": lambda: AlphaBeta(self.alpha, self.beta, self.stabilizer),
            "zbox": lambda: ZBox(stabilizer=self.stabilizer),
            "flat": lambda: Flat(self.stabilizer),
        }
        if name not in makers:
            raise BadArgument(f"LRP rule {name!r} is not known; choose from {', '.join(makers)} "
                              "or pass a LayerRule object")
        return makers[name]()


@dataclass(frozen=True)
class RuleMap:
    """Rules by layer: the first layer, layer names (with everything inside), then layer kinds."""

    conv: LayerRule
    linear: LayerRule
    first: LayerRule | None = None
    names: dict[str, LayerRule] = field(default_factory=dict)

    def rule_for(self, kind: LayerKind, name: str | None, first: bool) -> LayerRule:
        if name is not None:
            matches = [k for k in self.names if name == k or name.startswith(k + ".")]
            if matches:
                return self.names[max(matches, key=len)]
        if first and self.first is not None:
            return self.first
        return self.conv if kind == "conv" else self.linear


def composite_rules(name: str, options: RuleOptions) -> RuleMap:
    """The rules of a named composite (see the module docstring's table)."""
    if name not in get_args(CompositeName):
        raise BadArgument(f"LRP composite {name!r} is not known; choose from "
                          f"{', '.join(get_args(CompositeName))}, or refine one with rules={{...}}")
    dense = options.build("epsilon")
    conv = {"epsilon_gamma_box": "gamma", "epsilon": "epsilon"}.get(
        name, "zplus" if name.startswith("epsilon_plus") else "alpha_beta")
    first = "zbox" if name == "epsilon_gamma_box" else "flat" if name.endswith("_flat") else None
    return RuleMap(conv=options.build(conv), linear=dense,
                   first=options.build(first) if first else None)


def refine(rules: RuleMap, custom: Mapping[str, LayerRule | str], options: RuleOptions,
           net: nn.Module) -> RuleMap:
    """``rules`` with a user's mapping applied; layer names are checked against ``net``."""
    if not isinstance(custom, Mapping):
        raise BadArgument(f"rules={custom!r}: expected a mapping like {{'first': 'flat', 'conv': 'gamma'}}")
    parts: dict[str, LayerRule | None] = {"first": rules.first, "conv": rules.conv, "linear": rules.linear}
    names = dict(rules.names)
    for key, value in custom.items():
        rule = value if isinstance(value, LayerRule) else options.build(str(value))
        if key in KINDS:
            parts[key] = rule
        else:
            get_layer(net, key)  # BadLayer with the closest names
            names[key] = rule
    conv, linear = parts["conv"], parts["linear"]
    assert conv is not None and linear is not None
    return RuleMap(conv=conv, linear=linear, first=parts["first"], names=names)
