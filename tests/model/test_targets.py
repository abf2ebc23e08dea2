"""select(): every Target form gives one score per sample, errors name the problem."""

from __future__ import annotations

import pytest
import torch

from convscope.errors import BadTarget
from convscope.model import select, target_indices

LABELS = ["tench", "goldfish", "Egyptian cat"]
LOGITS = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 5.0]])


@pytest.mark.parametrize(("target", "expected"), [
    (1, [2.0, 0.0]),
    ("top1", [2.0, 5.0]),
    ("Egyptian cat", [1.0, 5.0]),
    ("egyptian CAT", [1.0, 5.0]),
    ("2", [1.0, 5.0]),
    ([0, "goldfish"], [0.0, 0.0]),
    (torch.tensor([2, 0]), [1.0, 3.0]),
    (torch.tensor(1), [2.0, 0.0]),
    (lambda z: z.sum(1), [3.0, 8.0]),
])
def test_select_forms(target, expected) -> None:
    assert select(LOGITS, target, LABELS).tolist() == expected


def test_select_is_differentiable() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(select(logits, 2).sum(), logits)
    assert grad.tolist() == [[0, 0, 1], [0, 0, 1]]


def test_callable_gives_no_indices() -> None:
    assert target_indices(LOGITS, lambda z: z[:, 0]) is None


@pytest.mark.parametrize(("target", "message"), [
    (7, "out of range"),
    (-1, "out of range"),
    ([1, 2, 0], "3 entries but the batch has 2"),
    ("egyptian kat", "did you mean 'Egyptian cat'"),
    ("zebra", "not a class label"),
    (1.5, "not understood"),
    (lambda z: z, "one score per sample"),
])
def test_bad_targets(target, message) -> None:
    with pytest.raises(BadTarget, match=message):
        select(LOGITS, target, LABELS)


def test_label_without_labels() -> None:
    with pytest.raises(BadTarget, match="no labels"):
        select(LOGITS, "cat", None)


def test_one_target_parser_for_the_cli_the_web_and_the_tasks() -> None:
    from convscope.model.targets import check_class, parse_target

    assert parse_target(" 285 ") == 285 and parse_target("top1") == "top1" and parse_target("cat") == "cat"
    with pytest.raises(BadTarget, match="5000 digits"):
        parse_target("9" * 5000)  # int() itself would raise a ValueError past 4300 digits
    labels = ["zero", "one", "two"]
    assert check_class("", labels) == "top1" and check_class("Two", labels) == 2
    assert check_class(1, labels) == 1
    for bad in ("3", -1, True, "9" * 50):
        with pytest.raises(BadTarget):
            check_class(bad, labels)
    with pytest.raises(BadTarget, match="class index or a label"):
        check_class(None, labels, top1=False)
