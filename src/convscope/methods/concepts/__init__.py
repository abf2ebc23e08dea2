"""Concepts: what a unit or a decision stands for (CRP and RelMax)."""

from .crp import CRP, ConceptMaps

__all__ = ["CRP", "ConceptMaps"]
