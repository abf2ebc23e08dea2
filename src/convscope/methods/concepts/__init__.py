"""Concepts: which human concepts a layer's units or a decision stand for.

- :mod:`.cav`: concept activation vectors, linear classifiers of a layer's activations fitted
  for many concept/random pairs at once.
- :mod:`.tcav`: TCAV (Kim et al. 2018), the share of a class's inputs whose score rises along a
  CAV, with the random-versus-random t-test.
- :mod:`.dissect`: network dissection (Bau et al. 2017), each unit's IoU with concept masks.
- :mod:`.crp`: concept relevance propagation (Achtibat et al. 2023), the LRP relevance through
  chosen channels of a layer; :mod:`.relmax`: a channel's top images by relevance.
- :mod:`.discovery`, :mod:`.nmf`, :mod:`.importance`: concept discovery without labels (DFF,
  Collins et al. 2018; CRAFT, Fel et al. 2023): NMF of a layer's activations, each concept's
  maps and top units, and its importance for a class (Sobol total indices or the gradient).

Tensors in, numbers out (docs/architecture.md, section 1); folders and pictures live in
``tasks/concepts_*.py`` and ``render/``.
"""

from .crp import CRP, ConceptMaps

__all__ = ["CRP", "ConceptMaps"]
