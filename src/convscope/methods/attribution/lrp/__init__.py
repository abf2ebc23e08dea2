"""Layer-wise relevance propagation: rules for conv/dense layers, composites, the ``lrp`` method."""

from .composites import CompositeName, RuleMap, RuleName, RuleOptions
from .method import LRP
from .rules import AlphaBeta, Epsilon, Flat, Gamma, LayerCall, LayerRule, ZBox, ZPlus

__all__ = [
    "LRP",
    "AlphaBeta",
    "CompositeName",
    "Epsilon",
    "Flat",
    "Gamma",
    "LayerCall",
    "LayerRule",
    "RuleMap",
    "RuleName",
    "RuleOptions",
    "ZBox",
    "ZPlus",
]
